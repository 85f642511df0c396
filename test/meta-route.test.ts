/**
 * common/meta-route.ts against a real nats-server, with stand-in metas on the
 * meta credential: a client asks the leader probe who serves and sends to that
 * meta's own subject; a probe nobody answers, a meta without `direct` (older
 * than the probe's field) and a nats.conf that refuses the probe (older than
 * the route) all leave it on the queue group, at no extra wait.
 */
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import t, { type Test } from 'tap'
import { launchNatsServer } from '../cli/nats-server'
import { MetaClient } from '../common/meta-client'
import { connectNats } from '../common/nats-connect'
import { serve, subjects } from '../common/wire'
import { startDockerConf, type Server } from './helpers/docker-nats'
import { testDir } from './helpers/test-dir'

const S = subjects('berth')

async function as(t: Test, s: Server, role: 'meta' | 'client'): Promise<NatsConnection> {
  const nc = await connectNats({ url: s.url, user: s.users[role].user, pass: s.users[role].pass, name: `route-${role}` })
  t.teardown(() => nc.close())
  return nc
}

interface StandIn {
  /** Keeps every subscription and answers nothing from now on, as a SIGSTOPped meta. */
  freeze(): void
}

/** A stand-in meta: answers the queue group and, unless `direct` is false, its own subject; the probe unless `probe` is false. */
async function standIn(t: Test, s: Server, metaId: string, o: { direct?: boolean; probe?: boolean } = {}): Promise<StandIn> {
  const nc = await as(t, s, 'meta')
  let frozen = false
  const never = new Promise<object>(() => undefined)
  const answer = (via: string) => () => (frozen ? never : { via, metaId })
  serve(nc, S.metaAll, { queue: 'meta' }, answer('queue'))
  if (o.direct !== false) serve(nc, S.metaAt(metaId, '*'), {}, answer('direct'))
  if (o.probe !== false) serve(nc, S.metaLeader, {}, () => (frozen ? never : { metaId, ...(o.direct === false ? {} : { direct: true }) }))
  await nc.flush()
  return { freeze: () => (frozen = true) }
}

type Answer = { via: string; metaId: string }
const status = async (mc: MetaClient): Promise<Answer> => (await mc.call('status', {})) as unknown as Answer

t.test('embedded config', async (t) => {
  const nats = await launchNatsServer({ dir: join(testDir(t), 'nats') })
  t.teardown(() => nats.stop())
  const s: Server = { url: nats.url, users: nats.users }

  t.test('the probe names a meta: requests go to its own subject', async (t) => {
    await standIn(t, s, 'm1', { probe: false })
    const mc = new MetaClient(await as(t, s, 'client'), { cluster: 'berth', timeoutMs: 500, deadlineMs: 10_000 })
    // nobody answers the probe yet: the queue group serves
    t.match(await status(mc), { via: 'queue', metaId: 'm1' }, 'before any probe answer: the queue group')
    t.equal(await mc.route.ask(300), false, 'a probe nobody answers leaves the route as it was')
    t.equal(mc.route.leader, null)
    await standIn(t, s, 'm2')
    t.equal(await mc.route.ask(2000), true, 'the probe names m2')
    t.equal(mc.route.leader, 'm2')
    for (let i = 0; i < 5; i++) t.match(await status(mc), { via: 'direct', metaId: 'm2' }, 'to m2 by its own subject')
  })

  t.test('a meta without `direct` in its probe answer: the queue group', async (t) => {
    await standIn(t, s, 'old', { direct: false })
    const mc = new MetaClient(await as(t, s, 'client'), { cluster: 'berth', timeoutMs: 500 })
    t.equal(await mc.route.ask(2000), false)
    t.equal(mc.route.leader, null, 'no direct route')
    t.match(await status(mc), { via: 'queue', metaId: 'old' })
  })
})

t.test('a stopped leader, still subscribed: one attempt meets it, then the new leader answers', async (t) => {
  const nats = await launchNatsServer({ dir: join(testDir(t), 'nats') })
  t.teardown(() => nats.stop())
  const s: Server = { url: nats.url, users: nats.users }
  const first = await standIn(t, s, 'first')
  const mc = new MetaClient(await as(t, s, 'client'), { cluster: 'berth', timeoutMs: 500, deadlineMs: 10_000 })
  t.equal(await mc.route.ask(2000), true)
  t.match(await status(mc), { via: 'direct', metaId: 'first' })
  first.freeze()
  const second = await standIn(t, s, 'second')
  // the queue group now holds both: about half of its requests would wait out an attempt
  const t0 = performance.now()
  t.match(await status(mc), { via: 'direct', metaId: 'second' }, 'the first call after the stop is answered by the new leader')
  const firstMs = performance.now() - t0
  t.ok(firstMs >= 450 && firstMs < 2000, `after one attempt on the stopped one (${Math.round(firstMs)} ms)`)
  const waits: number[] = []
  for (let i = 0; i < 20; i++) {
    const t1 = performance.now()
    t.match(await status(mc), { via: 'direct', metaId: 'second' })
    waits.push(performance.now() - t1)
  }
  t.equal(waits.filter((w) => w >= 450).length, 0, `none of the next 20 waits out an attempt (slowest ${Math.round(Math.max(...waits))} ms)`)

  // with the usual 5 s attempts, a call waiting on a stopped leader is sent again to
  // the new one once it has waited a second and the probe names another meta
  const mc5 = new MetaClient(await as(t, s, 'client'), { cluster: 'berth', timeoutMs: 5000, deadlineMs: 20_000 })
  t.equal(await mc5.route.ask(2000), true)
  t.equal(mc5.route.leader, 'second')
  second.freeze()
  await standIn(t, s, 'third')
  const t2 = performance.now()
  t.match(await status(mc5), { via: 'direct', metaId: 'third' }, 'a 5 s attempt on a stopped leader is sent again to the new one')
  const movedMs = performance.now() - t2
  t.ok(movedMs >= 950 && movedMs < 3000, `after it waited a second, not its whole 5 s (${Math.round(movedMs)} ms)`)
})

t.test('a nats.conf from before the route (the client may not probe): the queue group, at no extra wait', async (t) => {
  const old = (conf: string) => {
    const edited = conf.replace('"berth.metaat.*.*", "berth.metactl.leader", ', '').replace('"berth.meta.*", "berth.metaat.*.*", ', '"berth.meta.*", ')
    if (/allow:.*("berth\.metaat|"berth\.metactl\.leader")/.test(edited)) throw new Error('docker/nats.conf changed: update this edit')
    return edited
  }
  const s = await startDockerConf(t, old)
  await standIn(t, s, 'm1', { direct: false })
  const mc = new MetaClient(await as(t, s, 'client'), { cluster: 'berth', timeoutMs: 5000 })
  const t0 = performance.now()
  t.equal(await mc.route.ask(5000), false, 'the probe is refused')
  const askMs = performance.now() - t0
  t.ok(askMs < 1000, `at once, not after a probe timeout (${Math.round(askMs)} ms)`)
  t.equal(mc.route.leader, null)
  t.match(await status(mc), { via: 'queue', metaId: 'm1' }, 'the queue group serves')
  const t1 = performance.now()
  t.equal(await mc.route.ask(5000), false, 'and it is not asked again')
  t.ok(performance.now() - t1 < 50)
})
