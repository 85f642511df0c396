/**
 * Acceptance of replicated meta through a real mount (issue 9): a 3-server
 * NATS cluster, three metas with --ha (log and lease replicated 3 ways), data
 * nodes, a FUSE mount. Consecutive `tar -x` runs onto the mount, and during
 * each one a kill -9: first the leader meta, then each other meta replica in
 * turn (each after the previous victim has been restarted and caught up), then
 * one of the three NATS servers (restarted afterwards). Every tar exits 0 and
 * `diff -r` against the source is clean; `berth fsck` is clean at the end.
 * Reports, per kill, the time to the first mutation served afterwards.
 * BERTH_HA_ENTRIES sets the tree size (default 300; the issue asks 5000).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { FsckReport } from '../cli/fsck-scan'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO } from '../common/protocol'
import type { ServiceHandle } from '../cli/spawn-service'
import { berthJson } from './helpers/berth-cli'
import { startCluster, type TestCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { streamLeaderOn } from './helpers/stream-leader'
import { makeTree } from './helpers/tree'

const ENTRIES = Number(process.env.BERTH_HA_ENTRIES ?? 300)
const HA = ['--ha', '--log-replicas', '3', '--lease-ttl-ms', '3000']

/** Every one of `n` replicas reports in and none lags more than a few entries behind the leader. */
async function caughtUp(mc: MetaClient, n: number): Promise<boolean> {
  const st = await mc.call('status', {})
  const replicas = st.replication?.replicas ?? []
  return replicas.length >= n && replicas.every((r) => r.lag <= 5)
}

t.test('kill -9 of each meta replica in turn, then of a NATS server, each during tar -x on a mount', { timeout: 900_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 2, natsServers: 3, metaArgs: HA })
  const dbs = [join(c.dir, 'meta.db'), join(c.dir, 'meta2.db'), join(c.dir, 'meta3.db')]
  const metas: ServiceHandle[] = [c.meta, await c.startMeta({ db: dbs[1] }), await c.startMeta({ db: dbs[2] })]
  const m = await mountCluster(t, c)
  t.teardown(() => {
    if (!t.passing()) t.comment(`client stderr:\n${m.client.stderr().slice(-6000)}`)
  })
  const mc = await c.metaClient({ deadlineMs: 60_000 })
  t.ok(await eventually(() => caughtUp(mc, 3), 60_000, 500), 'three replicas report in')

  const src = join(c.dir, 'src')
  mkdirSync(src)
  const made = makeTree(src, ENTRIES)
  const tarball = join(c.dir, 'src.tar')
  t.equal(spawnSync('tar', ['-cf', tarball, '-C', c.dir, 'src']).status, 0, `tarball of ${made} entries`)

  /** One extract into `name` with `fault` injected 1.5 s in (3 s for big trees); checks tar's exit and diff -r. */
  const extract = async (name: string, what: string, fault: () => Promise<void>) => {
    const into = join(m.dir, name)
    mkdirSync(into)
    const started = performance.now()
    const tar = spawn('tar', ['-xf', tarball, '-C', into], { stdio: ['ignore', 'ignore', 'pipe'] })
    let tarErr = ''
    tar.stderr.on('data', (d: Buffer) => (tarErr += d.toString()))
    const tarDone = new Promise<number>((ok) => tar.once('exit', (code) => ok(code ?? -1)))
    await new Promise((r) => setTimeout(r, ENTRIES > 1000 ? 3000 : 1500))
    const killedAt = performance.now()
    await fault()
    await mc.call('mkdir', { parent: ROOT_INO, name: `probe-${name}`, mode: 0o755, uid: 0, gid: 0 })
    const firstMs = Math.round(performance.now() - killedAt)
    const code = await tarDone
    t.equal(code, 0, `${name}: tar -x exits 0 ${tarErr ? `(stderr: ${tarErr.slice(0, 500)})` : ''}`)
    const diff = spawnSync('diff', ['-r', src, join(into, 'src')], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
    t.equal(diff.status, 0, `${name}: diff -r is clean${diff.stdout ? `:\n${diff.stdout.slice(0, 2000)}` : ''}`)
    t.comment(`${name}: kill -9 of ${what} ${Math.round(killedAt - started)} ms into tar -x; first mutation served ${firstMs} ms after it; tar took ${Math.round(performance.now() - started)} ms`)
  }

  // each meta replica in turn: the leader, then a follower, then the one not killed yet (whatever
  // its role by then); each victim restarts on its own database and catches up before the next round
  const killed = new Set<number>()
  for (let round = 0; round < metas.length; round++) {
    const leaderNow = (await mc.call('status', {})).metaId
    const isLeader = (i: number) => metas[i]!.ready.metaId === leaderNow
    const fresh = [...metas.keys()].filter((i) => !killed.has(i))
    const i = round === 0 ? fresh.find(isLeader)! : round === 1 ? (fresh.find((j) => !isLeader(j)) ?? fresh[0]!) : fresh[0]!
    killed.add(i)
    const role = isLeader(i) ? 'the leader' : 'a follower'
    await extract(`meta-${round}`, `meta ${i} (${role})`, () => metas[i]!.kill())
    const after = (await mc.call('status', {})).metaId
    if (role === 'the leader') t.not(after, leaderNow, `meta-${round}: a new leader serves`)
    else t.equal(after, leaderNow, `meta-${round}: the leader did not change`)
    metas[i] = await c.startMeta({ db: dbs[i] })
    t.ok(await eventually(() => caughtUp(mc, 3), 60_000, 500), `meta-${round}: the restarted replica caught up`)
  }

  // the first of the three NATS servers: every process lists them in one order
  // and connects to the first (common/nats-connect.ts, noRandomize), so the
  // mount, every meta and the leader all lose their connection at once; and it
  // is made the log's stream leader first, so JetStream must elect another
  // while the metas fail over (the slowest case: 10.6 s to the first mutation
  // while the log's API calls waited 5 s each, ~5 s since)
  const nats = c.natsCluster!
  const leadsLog = await streamLeaderOn(c, 'berth-nats-0')
  t.comment(`the log's stream leader ${leadsLog ? 'is' : 'could not be moved to'} NATS server 0`)
  await extract('nats', `NATS server 0${leadsLog ? ', the log\'s stream leader' : ''}`, () => nats.kill(0))
  await nats.restart(0)
  t.ok(await eventually(() => caughtUp(mc, 3), 60_000, 500), 'nats: every replica reports in after the server rejoined')

  const fsck = await berthJson<FsckReport>(t, c, ['fsck'])
  t.equal(fsck.code, 0, `fsck is clean (lost ${fsck.json.lost.length}, degraded ${fsck.json.degraded.length}, problems ${fsck.json.problems.length})`)
  const st = await mc.call('status', {})
  t.comment(`leader ${st.metaId}: log sequence ${st.replication?.applied}`)
})
