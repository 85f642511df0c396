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
import { mountCluster } from './helpers/mount'
import { bounded, MiB } from './helpers/proc'


t.test('out of space: ENOSPC, data intact, room again after delete', async (t) => {
  // Each node offers 20 MiB and keeps 8 MiB (two maximal blocks) in reserve,
  // so with R=2 about 12 MiB of file data fit.
  const c = await startCluster(t, { nodes: 2, replicas: 2, nodeArgs: ['--capacity', String(20 * MiB), '--max-block', String(4 * MiB)], metaArgs: ['--gc-grace-ms', '300'] })
  const m = await mountCluster(t, c, { args: ['--deadline-ms', '3000'] })

  // on failure, what the services said is the first thing to read
  t.teardown(() => {
    if (t.passing()) return
    for (const s of [c.meta, ...c.nodes, m.client]) t.comment(s.stderr().slice(-3000))
  })
  // statfs is the live nodes' capacity divided by R: 2 x 20 MiB / 2
  const empty = await fs.statfs(m.dir)
  t.equal(empty.blocks * empty.bsize, 20 * MiB, 'statfs size comes from the live data nodes')
  const kept = randomBytes(6 * MiB)
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
  // the freed blocks go after meta's GC grace; a write then succeeds
  const again = randomBytes(6 * MiB)
  let wrote = false
  for (let i = 0; i < 30 && !wrote; i++) {
    try {
      await fs.writeFile(join(m.dir, 'again.bin'), again)
      wrote = true
    } catch {
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  t.ok(wrote, 'after deleting, writes succeed again')
  t.ok((await fs.readFile(join(m.dir, 'again.bin'))).equals(again), 'and read back')
})
