/**
 * A cluster that runs out of space: writes fail with ENOSPC within the
 * deadline (no hang), what was stored stays readable, every service keeps
 * running, and deleting files makes room for new writes (docs/semantics.md#writes).
 */
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { bounded, MiB } from './helpers/proc'


t.test('out of space: ENOSPC, data intact, room again after delete', async (t) => {
  // Each node offers 20 MiB and keeps 8 MiB (two maximal blocks) in reserve,
  // so with R=2 about 12 MiB of file data fit. kept.bin takes 10 of them, so
  // that deleting it later frees more than the reserve (see below).
  const c = await startCluster(t, { nodes: 2, replicas: 2, nodeArgs: ['--capacity', String(20 * MiB), '--max-block', String(4 * MiB)], metaArgs: ['--gc-grace-ms', '300'] })
  const m = await mountCluster(t, c, { args: ['--deadline-ms', '3000'] })
  const meta = await c.metaClient()

  // on failure, what the services said is the first thing to read
  t.teardown(() => {
    if (t.passing()) return
    for (const s of [c.meta, ...c.nodes, m.client]) t.comment(s.stderr().slice(-3000))
  })
  // statfs is the live nodes' capacity divided by R: 2 x 20 MiB / 2
  const empty = await fs.statfs(m.dir)
  t.equal(empty.blocks * empty.bsize, 20 * MiB, 'statfs size comes from the live data nodes')
  const kept = randomBytes(10 * MiB)
  await fs.writeFile(join(m.dir, 'kept.bin'), kept)

  const big = randomBytes(24 * MiB)
  const r = await bounded(fs.writeFile(join(m.dir, 'big.bin'), big), 60_000)
  t.notOk(r.ok, 'writing more than the cluster holds fails')
  t.equal(r.code, 'ENOSPC', `the error is ENOSPC, within the deadline (${r.ms} ms)`)

  t.ok((await fs.readFile(join(m.dir, 'kept.bin'))).equals(kept), 'a file stored before is intact')
  for (const s of [c.meta, ...c.nodes]) t.equal(s.child.exitCode, null, `pid ${s.pid} still running`)
  const statfs = await fs.statfs(m.dir)
  t.ok(statfs.bavail * statfs.bsize < 10 * MiB, `statfs shows little space left (${statfs.bavail * statfs.bsize} bytes)`)

  await fs.rm(join(m.dir, 'big.bin'), { force: true })
  await fs.rm(join(m.dir, 'kept.bin'))
  // The room comes back through several hops, none of them at once: meta's
  // block GC takes kept.bin's blocks after the grace (--gc-grace-ms 300; a
  // pass every 200 ms asks each holder for a delete token, drops the rows,
  // then has the holders trash their copies); each node sees it is above its
  // reserve again only on its 1 s refresh, subscribes to placement again and
  // heartbeats at once; meta's statfs and the client's view of the nodes come
  // from those heartbeats. About a second on an idle machine, many under CI's
  // load. So: wait until the cluster reports the room, then write once.
  //
  // Not a write retried until it passes (as this test did): big.bin's failed
  // write left its uploads on the nodes (never committed, big.bin has size 0;
  // 4-8 MiB per node), and so does every write that fails part way, until its
  // mount's session ends or the orphan age (hours) passes. A retry made while
  // the room was coming back (one node taking writes, the other not yet)
  // stored a block and then failed; those copies made the nodes full again
  // and every later retry failed at once, however long it went on. And with
  // kept.bin at 6 MiB the room was often just the 8 MiB reserve (big.bin left
  // 12 MiB), so again.bin's second block was taken only if it came before the
  // nodes' refresh after its first. At 10 MiB the nodes have 12-16 MiB free
  // once it is gone: again.bin's 6 MiB fit without dipping into the reserve.
  //
  // The wait: statfs through the mount shows at least kept.bin's size free
  // (under 10 MiB before the delete, 12-16 after) and meta has heartbeats of
  // both nodes saying they take writes again.
  const freedMs = 90_000
  let seen = 'nothing yet'
  const freed = await eventually(async () => {
    try {
      // status first: once meta has every node's "up" heartbeat, a statfs
      // answered through the mount after it means the client has had them too
      const nodes = (await meta.call('status', {})).nodes
      const st = await fs.statfs(m.dir)
      seen = `statfs bavail ${st.bavail * st.bsize} bytes; nodes ${nodes.map((n) => `${n.id} ${n.alive ? n.state : 'dead'} used ${n.used}`).join(', ')}`
      return st.bavail * st.bsize >= kept.length && nodes.length === 2 && nodes.every((n) => n.alive && n.state === 'up')
    } catch (err) {
      seen = `status or statfs failed: ${(err as Error).message}`
      return false
    }
  }, freedMs, 250)
  if (!t.ok(freed, `within ${freedMs / 1000} s of the delete, statfs shows kept.bin's ${kept.length} bytes free again and both nodes take writes ("up"); last seen: ${seen}`)) return
  const again = randomBytes(6 * MiB)
  const w = await bounded(fs.writeFile(join(m.dir, 'again.bin'), again), 60_000)
  t.ok(w.ok, `after deleting, writes succeed again (${w.ok ? `${w.ms} ms` : `${w.code}; ${seen}`})`)
  t.ok((await fs.readFile(join(m.dir, 'again.bin'))).equals(again), 'and read back')
})
