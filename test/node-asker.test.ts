/**
 * Meta's asks of one data node (meta/node-commands.ts) against a real
 * nats-server: a node that is not subscribed (killed, or restarting) is given
 * up on after one heartbeat interval, not after the ask's whole timeout, and a
 * node that subscribes within that interval is still answered; a node that is
 * subscribed but silent (SIGSTOP), or a copy's target, is given up on once its
 * heartbeats stop.
 *
 * Why it matters: reconciliation and repair take turns under one lock
 * (meta/maintenance.ts). An inventory ask to a node killed mid-pass used to
 * retry "no responders" for its full 30 s and hold that lock, so the repair of
 * the dead node's own blocks waited 30 s (test/reconcile shows the whole path).
 */
import t from 'tap'
import { BerthError } from '../common/errors'
import { HEARTBEAT_MS } from '../common/protocol'
import { okReply, request, subjects } from '../common/wire'
import { nodeAsker } from '../meta/node-commands'
import { startCluster } from './helpers/cluster'

t.test('asks of a node that is gone', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const nc = await c.connect('meta')
  const ask = nodeAsker(nc, c.cluster)

  await t.test('an inventory ask (30 s timeout) to a node nobody serves fails after about one heartbeat interval', async (t) => {
    const t0 = Date.now()
    const err = await ask('nope', { op: 'inventory', after: '', limit: 10 }, 30_000).then(
      () => null,
      (e: unknown) => e,
    )
    const took = Date.now() - t0
    t.ok(err instanceof BerthError && err.code === 'ETIMEDOUT', `ETIMEDOUT: ${(err as Error | null)?.message}`)
    t.ok(took < 3 * HEARTBEAT_MS, `gave up after ${took} ms, not after the ask's 30 s`)
  })

  await t.test('a node that subscribes within that interval (a restart) is answered', async (t) => {
    const subj = subjects(c.cluster).nodeCmd('late')
    const node = await c.connect('node')
    setTimeout(() => {
      node.subscribe(subj, { max: 1, callback: (_e, msg) => msg.respond(okReply({ now: 42 })) })
    }, HEARTBEAT_MS / 4)
    t.match(await ask('late', { op: 'clock' }, 5000), { now: 42 }, 'the late subscriber answered')
  })

  await t.test('a node that is subscribed but silent (stopped) is given up on once its heartbeats stop, not after the timeout', async (t) => {
    const subj = subjects(c.cluster).nodeCmd('silent')
    const node = await c.connect('node')
    node.subscribe(subj, { callback: () => undefined }) // takes every ask, answers none: a SIGSTOPped node
    await node.flush()
    let dead = false
    const watched = nodeAsker(nc, c.cluster, (id) => id === 'silent' && dead)
    setTimeout(() => (dead = true), 300)
    const t0 = Date.now()
    const err = await watched('silent', { op: 'replicate', hash: 'a'.repeat(64), to: { id: 'x', url: 'http://127.0.0.1:1' } }, 60_000).then(
      () => null,
      (e: unknown) => e,
    )
    const took = Date.now() - t0
    t.ok(err instanceof BerthError && err.code === 'ETIMEDOUT' && /stopped heartbeating/.test(err.message), `ETIMEDOUT: ${(err as Error | null)?.message}`)
    t.ok(took < 5000, `given up after ${took} ms, not after the replicate's 60 s`)
    // a copy waits on its target too: the source's PUT to a stopped target waits out its own 60 s
    const source = await c.connect('node')
    source.subscribe(subjects(c.cluster).nodeCmd('source'), { callback: () => undefined }) // stuck in its PUT
    await source.flush()
    let targetDead = false
    const both = nodeAsker(nc, c.cluster, (id) => id === 'target' && targetDead)
    setTimeout(() => (targetDead = true), 300)
    await t.rejects(both('source', { op: 'replicate', hash: 'b'.repeat(64), to: { id: 'target', url: 'http://127.0.0.1:1' } }, 60_000), { code: 'ETIMEDOUT', message: /berth.node.source.cmd \(replicate\): node target stopped heartbeating/ })
    // a node already dead as the ask began (repair asks from the live set its pass began with): the first check ends it
    const t1 = Date.now()
    await t.rejects(watched('silent', { op: 'inventory', after: '', limit: 1 }, 30_000), { code: 'ETIMEDOUT', message: /stopped heartbeating/ })
    t.ok(Date.now() - t1 < 2000, `an ask of a node already dead ended after ${Date.now() - t1} ms`)
    // a node never heard from (a meta that just started) is not dead: its own timeout decides
    node.subscribe(subjects(c.cluster).nodeCmd('unheard'), { callback: () => undefined })
    await node.flush()
    const t2 = Date.now()
    await t.rejects(watched('unheard', { op: 'clock' }, 1500), { code: 'ETIMEDOUT', message: /no reply in 1500 ms/ })
    t.ok(Date.now() - t2 >= 1400, 'an ask of a node never heard from is not cut short by the watch')
  })

  await t.test('without noRespondersMs, "no responders" is retried up to the deadline', async (t) => {
    const t0 = Date.now()
    await t.rejects(request(nc, subjects(c.cluster).nodeCmd('nobody'), { op: 'clock' }, { timeoutMs: 200, deadlineMs: 3000 }), { code: 'ETIMEDOUT' })
    const took = Date.now() - t0
    t.ok(took > HEARTBEAT_MS, `retried for ${took} ms of its 3 s (meta requests rely on this across a meta restart)`)
  })
})
