/**
 * Meta's asks of one data node (meta/node-commands.ts) against a real
 * nats-server: a node that is not subscribed (killed, or restarting) is given
 * up on after one heartbeat interval, not after the ask's whole timeout, and a
 * node that subscribes within that interval is still answered.
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

t.test('asks of a node that is not subscribed', async (t) => {
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

  await t.test('without noRespondersMs, "no responders" is retried up to the deadline', async (t) => {
    const t0 = Date.now()
    await t.rejects(request(nc, subjects(c.cluster).nodeCmd('nobody'), { op: 'clock' }, { timeoutMs: 200, deadlineMs: 3000 }), { code: 'ETIMEDOUT' })
    const took = Date.now() - t0
    t.ok(took > HEARTBEAT_MS, `retried for ${took} ms of its 3 s (meta requests rely on this across a meta restart)`)
  })
})
