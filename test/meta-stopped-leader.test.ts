/**
 * A meta leader that stops without going away (SIGSTOP; a frozen VM or host):
 * its TCP connection and NATS subscriptions stay, so NATS keeps handing it
 * requests, and nats-server's pings never close it while it is being sent
 * messages. The follower takes the lease after its TTL. Before the fix, the
 * stopped leader kept its place in the `meta` queue group and about half of
 * all requests waited out a 5 s attempt there, for as long as it stayed
 * stopped (4 operations in 50 s were seen by hand). Now each client asks the
 * leader by its own subject, learned from the leader probe, so one attempt per
 * client meets the stopped leader and the rest go to the new one.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const HA = ['--ha', '--lease-ttl-ms', '3000']
const who = { uid: 0, gid: 0 }

t.test('a stopped meta leader: after the follower takes over, no operation waits on the stopped one', { timeout: 240_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1, metaArgs: HA })
  const second = await c.startMeta({ db: join(c.dir, 'meta2.db') })
  const m = await mountCluster(t, c)
  const mc = await c.metaClient({ deadlineMs: 60_000 })
  const leaderId = (await mc.call('status', {})).metaId
  const leader = [c.meta, second].find((x) => x.ready.metaId === leaderId)!
  t.ok(leader, `${leaderId} leads`)
  writeFileSync(join(m.dir, 'before'), 'before')

  process.kill(leader.pid, 'SIGSTOP')
  let stopped = true
  t.teardown(() => {
    if (stopped) process.kill(leader.pid, 'SIGCONT')
    if (!t.passing()) t.comment(`other meta's log:\n${[c.meta, second].find((x) => x !== leader)!.stderr().slice(-4000)}\nclient's log:\n${m.client.stderr().slice(-4000)}`)
  })
  const stoppedAt = performance.now()
  // the mount: create, write and close a file, then stat it, 30 times; the
  // meta client: a mkdir and a status each round. Each operation's wait is kept.
  const mountWaits: number[] = []
  const clientWaits: number[] = []
  for (let i = 0; i < 30; i++) {
    let t0 = performance.now()
    writeFileSync(join(m.dir, `f${i}`), `content ${i}`)
    t.equal(readFileSync(join(m.dir, `f${i}`), 'utf8'), `content ${i}`)
    mountWaits.push(performance.now() - t0)
    t0 = performance.now()
    await mc.call('mkdir', { parent: ROOT_INO, name: `d${i}`, mode: 0o755, ...who })
    clientWaits.push(performance.now() - t0)
  }
  const firstDone = Math.round(mountWaits[0]! + clientWaits[0]!)
  const status = await mc.call('status', {})
  t.not(status.metaId, leaderId, `the follower (${status.metaId}) leads`)
  const slow = (ws: number[]) => ws.slice(1).filter((w) => w > 2000).length
  const fmt = (ws: number[]) => ws.map((w) => Math.round(w)).join(' ')
  t.comment(`stopped leader: first mount op ${Math.round(mountWaits[0]!)} ms, first client op ${Math.round(clientWaits[0]!)} ms after the stop (${firstDone} ms)`)
  t.comment(`mount waits (ms): ${fmt(mountWaits)}`)
  t.comment(`client waits (ms): ${fmt(clientWaits)}`)
  // the first operation of each waits for the takeover (lease TTL) and, at
  // most, one attempt timeout on the stopped leader; after it nothing does
  t.equal(slow(mountWaits), 0, 'after its first operation the mount waits on the stopped leader no more')
  t.equal(slow(clientWaits), 0, 'nor does the meta client')

  process.kill(leader.pid, 'SIGCONT')
  stopped = false
  // the old leader finds its lease gone and steps down; nothing it held is lost
  writeFileSync(join(m.dir, 'after'), 'after')
  for (let i = 0; i < 30; i++) t.equal(readFileSync(join(m.dir, `f${i}`), 'utf8'), `content ${i}`)
  t.equal(readFileSync(join(m.dir, 'before'), 'utf8'), 'before', 'the file written before the stop is there')
  t.equal((await mc.call('readdir', { ino: ROOT_INO })).entries.filter((e) => e.name.startsWith('d')).length, 30, 'every mkdir is there, once')
  t.comment(`whole run ${Math.round(performance.now() - stoppedAt)} ms`)
})
