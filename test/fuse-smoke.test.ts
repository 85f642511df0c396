// Smoke: the core round trip through a real mount (docs/semantics.md#reads, #writes).
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

t.test('write, read back, list, rename, unlink through the mount', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const m = await mountCluster(t, c)
  const data = randomBytes(9 * 1024 * 1024 + 123)
  await fs.writeFile(join(m.dir, 'a.bin'), data)
  t.same((await fs.stat(join(m.dir, 'a.bin'))).size, data.length)
  t.ok((await fs.readFile(join(m.dir, 'a.bin'))).equals(data), 'content round-trips')
  await fs.mkdir(join(m.dir, 'd'))
  await fs.rename(join(m.dir, 'a.bin'), join(m.dir, 'd', 'b.bin'))
  t.same((await fs.readdir(m.dir)).sort(), ['d'])
  t.same(await fs.readdir(join(m.dir, 'd')), ['b.bin'])
  t.ok((await fs.readFile(join(m.dir, 'd', 'b.bin'))).equals(data), 'content after rename')
  await fs.unlink(join(m.dir, 'd', 'b.bin'))
  await fs.rmdir(join(m.dir, 'd'))
  t.same(await fs.readdir(m.dir), [])
})
