/**
 * Making reads cold. Node has no posix_fadvise, so the only honest lever on
 * the kernel page cache is /proc/sys/vm/drop_caches (root only), after a sync so
 * dirty pages can be dropped. It also drops the page cache of FUSE mounts. The
 * berth client's own block cache is a separate LRU inside the client process;
 * `evictClientCache` pushes a file's blocks out of it by reading other data.
 */
import { execFile } from 'node:child_process'
import { open, unlink, writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { MiB, type Pattern } from './pattern'

const run = promisify(execFile)

export interface DropResult {
  dropped: boolean
  /** why the page cache could not be dropped, when it could not */
  reason?: string
}

export async function dropPageCache(): Promise<DropResult> {
  try {
    await run('sync')
    await writeFile('/proc/sys/vm/drop_caches', '1')
    return { dropped: true }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const reason = code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
      ? 'not permitted (run as root to drop the page cache)'
      : `failed: ${err instanceof Error ? err.message : String(err)}`
    return { dropped: false, reason }
  }
}

/**
 * Writes, fsyncs and reads back `mib` MiB of unrelated data in `dir`, then deletes
 * it, so an LRU block cache no larger than `mib` holds none of the measured file.
 */
export async function evictClientCache(path: string, mib: number, pattern: Pattern): Promise<void> {
  const buf = Buffer.allocUnsafe(MiB)
  const fh = await open(path, 'w')
  try {
    for (let i = 0; i < mib; i++) await fh.write(pattern.piece(i, buf), 0, MiB, null)
    await fh.sync()
  } finally {
    await fh.close()
  }
  const rh = await open(path, 'r')
  try {
    while ((await rh.read(buf, 0, MiB, null)).bytesRead > 0) { /* reading is the point */ }
  } finally {
    await rh.close()
  }
  await unlink(path)
}
