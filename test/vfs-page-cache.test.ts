/**
 * When a mount may let the kernel keep a file's page cache across an open
 * (FOPEN_KEEP_CACHE, docs/semantics.md#caching): only when the content meta
 * has is the content the kernel's pages were last known to hold. Two Vfs
 * over one real meta engine stand for two mounts A and B.
 */
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import type { Vfs } from '../client/vfs'
import { engineCluster } from './helpers/vfs-engine'

const ROOT = { uid: 0, gid: 0 }
const O_RDONLY = 0
const O_WRONLY = 1

async function writeClose(vfs: Vfs, ino: number, data: string, at = 0): Promise<void> {
  const { fh } = await vfs.open(ino, O_WRONLY)
  await vfs.write(fh, Buffer.from(data), at)
  await vfs.flush(fh)
  await vfs.release(fh)
}

/** Opens read-only and closes: whether the kernel may keep its pages. */
async function keeps(vfs: Vfs, ino: number): Promise<boolean> {
  const { fh, keepCache } = await vfs.open(ino, O_RDONLY)
  await vfs.flush(fh)
  await vfs.release(fh)
  return keepCache
}

t.test('the page cache is kept across opens exactly while nobody else committed', async (t) => {
  const { mount } = await engineCluster(t)
  const a = (await mount('A')).vfs
  const b = (await mount('B')).vfs

  // written and closed here: the kernel's pages are the committed content
  const { fh, attr } = await a.create(ROOT_INO, 'f', 0o644, O_WRONLY, ROOT)
  await a.write(fh, Buffer.from('made by A\n'), 0)
  await a.flush(fh)
  await a.release(fh)
  t.ok(await keeps(a, attr.ino), 'A reopens what it created and wrote: pages kept')

  await writeClose(a, attr.ino, 'again by A\n')
  t.ok(await keeps(a, attr.ino), 'and what it rewrote')

  await writeClose(b, attr.ino, 'B!')
  t.notOk(await keeps(a, attr.ino), 'B committed since: A drops its pages')
  t.ok(await keeps(a, attr.ino), 'then keeps the ones it read since')

  // A writes while B commits: A's commit is not the only one since A's pages
  const w = await a.open(attr.ino, O_WRONLY)
  await a.write(w.fh, Buffer.from('A'), 0)
  await writeClose(b, attr.ino, 'tail by B', 20)
  await a.flush(w.fh)
  await a.release(w.fh)
  t.notOk(await keeps(a, attr.ino), 'a commit of A with one of B in between: A drops its pages (B\'s bytes are not in them)')
})
