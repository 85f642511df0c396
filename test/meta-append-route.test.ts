/**
 * The leader's appends go straight to the NATS server that leads the log's
 * JetStream stream (meta/log/append-route.ts), and follow that stream leader
 * when JetStream moves it. Three clustered nats-servers, one meta with --ha
 * (log R3). The stream leader is moved onto each server in turn; each time
 * `status` must name that server as where appends go, after a few mutations.
 * Then the server the appends go to is killed: mutations go on, and appends
 * follow the stream leader JetStream elects next. Every mutation meanwhile is
 * answered and lands exactly once.
 */
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { listDir } from './helpers/list-dir'
import { streamLeader, streamLeaderOn } from './helpers/stream-leader'

t.test('appends follow the log stream leader onto each server', { timeout: 240_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 0, natsServers: 3, metaArgs: ['--ha', '--log-replicas', '3', '--lease-ttl-ms', '3000'] })
  const mc = await c.metaClient({ deadlineMs: 60_000 })
  let made = 0
  /** One mutation (answered), then where the leader says its appends go. */
  const appendsTo = async (): Promise<string | undefined> => {
    await mc.call('mkdir', { parent: ROOT_INO, name: `d${made}`, mode: 0o755, uid: 0, gid: 0 })
    made++
    return (await mc.call('status', {})).replication?.appendsTo
  }

  const first = await streamLeader(c)
  t.ok(first, `the log has a stream leader (${first})`)
  t.ok(await eventually(async () => (await appendsTo()) === (await streamLeader(c)), 20_000, 200), 'appends go to the server JetStream chose')

  // the first server is where every process connects (noRandomize): appends to
  // another server are the case the route exists for, so visit all three
  for (const server of ['berth-nats-1', 'berth-nats-2', 'berth-nats-0']) {
    t.ok(await streamLeaderOn(c, server), `the log's stream leader moved to ${server}`)
    t.ok(await eventually(async () => (await appendsTo()) === server, 20_000, 200), `appends go to ${server}`)
  }

  // kill -9 of the server the appends go to (not the first, which the test's
  // client and the meta's own connection are on): the leader's link to it is
  // gone, appends go out on the own connection until JetStream elects another
  // stream leader and the route follows it
  t.ok(await streamLeaderOn(c, 'berth-nats-1'), "the log's stream leader moved to berth-nats-1")
  t.ok(await eventually(async () => (await appendsTo()) === 'berth-nats-1', 20_000, 200), 'appends go to berth-nats-1')
  const killedAt = performance.now()
  await c.natsCluster!.kill(1)
  await mc.call('mkdir', { parent: ROOT_INO, name: `d${made}`, mode: 0o755, uid: 0, gid: 0 })
  made++
  t.comment(`first mkdir answered ${Math.round(performance.now() - killedAt)} ms after kill -9 of the stream leader's server`)
  t.ok(await eventually(async () => {
    const to = await appendsTo()
    return to !== undefined && to !== 'berth-nats-1' && to === (await streamLeader(c))
  }, 30_000, 200), 'appends follow the new stream leader')
  await c.natsCluster!.restart(1)

  const names = (await listDir(mc, ROOT_INO)).map((e) => e.name)
  const dirs = names.filter((n) => /^d\d+$/.test(n))
  t.equal(dirs.length, made, `each of the ${made} answered mkdirs is there once`)
  t.same(new Set(dirs).size, dirs.length, 'no name twice')
})
