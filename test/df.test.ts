/**
 * df tells the truth: nodes sharing one disk count it once (they report the
 * same filesystem id in their heartbeats), "Used" includes the small files kept
 * inline in meta, and fsck's text and JSON agree on the directory count.
 */
import { spawnSync } from 'node:child_process'
import { promises as fs, statfsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import type { NodeInfo } from '../common/protocol'
import { rawCapacity } from '../meta/capacity'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const node = (id: string, capacity: number, used: number, fsId?: string, fsFree?: number): NodeInfo => ({
  id, url: `http://${id}:1`, capacity, used, blocks: 0, state: 'up', seen: 0, alive: true,
  ...(fsId !== undefined ? { fsId } : {}), ...(fsFree !== undefined ? { fsFree } : {}),
})

t.test('capacity counts each filesystem once', async (t) => {
  // three nodes on one 100-byte-free disk, each offering "disk free + own blocks"
  const one = rawCapacity([node('a', 110, 10, 'd1', 100), node('b', 105, 5, 'd1', 100), node('c', 100, 0, 'd1', 100)])
  t.same(one, { capacity: 115, free: 100, used: 15, filesystems: 1 }, 'one disk: its free space once, plus what the nodes hold')
  // explicit small --capacity on a big disk: what the nodes offer is the limit
  const capped = rawCapacity([node('a', 20, 0, 'd1', 1000), node('b', 20, 5, 'd1', 1000)])
  t.same(capped, { capacity: 40, free: 35, used: 5, filesystems: 1 }, 'offered capacity below the disk free space')
  const mixed = rawCapacity([node('a', 50, 0, 'd1', 50), node('b', 50, 0, 'd2', 50), node('old', 30, 10)])
  t.same(mixed, { capacity: 130, free: 120, used: 10, filesystems: 3 }, 'distinct disks and nodes without an id add up')
})

t.test('df on a mount: one disk shared by three nodes, inline bytes in Used', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2 })
  const meta = await c.metaClient()
  let nodes: NodeInfo[] = []
  for (let i = 0; i < 50; i++) {
    nodes = (await meta.call('status', {})).nodes
    if (nodes.length === 3 && nodes.every((n) => n.fsId)) break
    await new Promise((r) => setTimeout(r, 200))
  }
  t.equal(new Set(nodes.map((n) => n.fsId)).size, 1, `the three nodes report one filesystem id (${nodes[0]?.fsId})`)

  const m = await mountCluster(t, c)
  const disk = statfsSync(c.dir)
  const diskFree = disk.bavail * disk.bsize
  const before = await fs.statfs(m.dir)
  const size = before.blocks * before.bsize
  // one disk, two replicas: about its free space / 2 (not 3 x that / 2)
  t.ok(size > diskFree * 0.4 && size < diskFree * 0.6, `df size ${size} is about disk free ${diskFree} / 2`)

  const files = 64
  const body = Buffer.alloc(3000, 'x')
  for (let i = 0; i < files; i++) await fs.writeFile(join(m.dir, `small-${i}.txt`), body)
  await fs.mkdir(join(m.dir, 'd1'))
  await fs.mkdir(join(m.dir, 'd1', 'd2'))
  await new Promise((r) => setTimeout(r, 2500)) // meta caches the inline sum for 2 s
  const after = await fs.statfs(m.dir)
  const used = (after.blocks - after.bfree) * after.bsize
  const usedBefore = (before.blocks - before.bfree) * before.bsize
  const grew = used - usedBefore
  t.ok(grew >= files * body.length - 2 * 4096 && grew <= files * body.length + 4 * 4096, `Used grew by ${grew} bytes for ${files * body.length} bytes of small files`)

  const env = { ...process.env, ...c.env('client') }
  const text = spawnSync(process.execPath, [BERTH_BIN, 'fsck', '--nats', c.nats.url, '--no-progress'], { encoding: 'utf8', env, timeout: 60_000, cwd: c.dir })
  const json = spawnSync(process.execPath, [BERTH_BIN, 'fsck', '--nats', c.nats.url, '--json', '--no-progress'], { encoding: 'utf8', env, timeout: 60_000, cwd: c.dir })
  const dirs = (JSON.parse(json.stdout) as { dirs: number }).dirs
  t.equal(dirs, 3, 'fsck JSON counts the root and two directories')
  t.match(text.stdout, new RegExp(`in ${dirs} directories`), 'fsck text says the same number')
})
