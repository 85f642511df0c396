/**
 * Checks a mountpoint before anything connects or mounts, so a bad one fails
 * in milliseconds with the reason and the usual fix, instead of a fuse error
 * deep in the daemon's log. Order matters: a crashed mount answers ENOTCONN to
 * stat, so it is recognised (and detached) before "does it exist".
 */
import { readdirSync, statSync } from 'node:fs'
import { BerthError } from '../common/errors'
import { isAlive } from '../common/process-alive'
import { cleanStale, isMounted, readPid } from './mount-state'

export interface MountpointCheck {
  /** A crashed mount was found there and detached. */
  cleanedStale: boolean
}

export function checkMountpoint(mountpoint: string, opts: { nonempty: boolean; selfPid?: number }): MountpointCheck {
  const cleanedStale = cleanStale(mountpoint)
  const pid = readPid(mountpoint)
  if (isMounted(mountpoint)) {
    if (pid !== null && pid !== opts.selfPid && isAlive(pid)) {
      throw new BerthError('EBUSY', `${mountpoint} is already mounted by berth (pid ${pid})\n  hint: \`berth umount ${mountpoint}\` first`)
    }
    throw new BerthError('EBUSY', `something is already mounted at ${mountpoint}\n  hint: \`berth umount ${mountpoint}\` (or \`fusermount -u ${mountpoint}\`) first`)
  }
  let st
  try {
    st = statSync(mountpoint)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new BerthError('ENOENT', `mountpoint ${mountpoint} does not exist\n  hint: create it first: mkdir -p ${mountpoint}`)
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      throw new BerthError('EBUSY', `${mountpoint} is a crashed mount that could not be detached\n  hint: \`berth umount ${mountpoint}\` (or \`fusermount -uz ${mountpoint}\`)`)
    }
    throw new BerthError('EACCES', `cannot use mountpoint ${mountpoint}: ${(err as Error).message}`)
  }
  if (!st.isDirectory()) throw new BerthError('ENOTDIR', `mountpoint ${mountpoint} is not a directory\n  hint: mount on an empty directory: mkdir -p DIR`)
  if (!opts.nonempty) {
    let entries: string[]
    try {
      entries = readdirSync(mountpoint)
    } catch (err) {
      throw new BerthError('EACCES', `cannot read mountpoint ${mountpoint}: ${(err as Error).message}`)
    }
    if (entries.length > 0) {
      throw new BerthError('ENOTEMPTY', `mountpoint ${mountpoint} is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, e.g. ${entries[0]})\n` +
        '  hint: use an empty directory, or `-o nonempty` to mount over it (its files are hidden while mounted)')
    }
  }
  return { cleanedStale }
}
