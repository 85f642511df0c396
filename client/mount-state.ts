/**
 * Where a running mount daemon leaves its pid, so `berth umount MOUNTPOINT`
 * can ask it to flush and unmount; and the stale-mountpoint check.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs'
import { isAlive } from '../common/process-alive'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

function stateDir(): string {
  const base = process.env.XDG_RUNTIME_DIR || tmpdir()
  const dir = join(base, `berth-${process.getuid?.() ?? 0}`)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  return dir
}

export function pidFile(mountpoint: string): string {
  return join(stateDir(), `mount-${createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)}.pid`)
}

export function writePid(mountpoint: string): void {
  writeFileSync(pidFile(mountpoint), `${process.pid}\n`)
}

export function readPid(mountpoint: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile(mountpoint), 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

export function removePid(mountpoint: string): void {
  if (readPid(mountpoint) === process.pid) rmSync(pidFile(mountpoint), { force: true })
}

/** Is `mountpoint` listed in /proc/self/mounts? */
export function isMounted(mountpoint: string): boolean {
  try {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === mountpoint.replace(/ /g, '\\040'))
  } catch {
    return false
  }
}

/**
 * The device (major:minor, as /proc/self/mountinfo gives it) of the mount on
 * top at `mountpoint`, or null when nothing is mounted there. Read from the
 * mount table, never from the file system: a hung mount does not hang it.
 */
export function mountDevice(mountpoint: string): string | null {
  let found: string | null = null
  try {
    const escaped = mountpoint.replace(/\\/g, '\\134').replace(/ /g, '\\040').replace(/\t/g, '\\011').replace(/\n/g, '\\012')
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ')
      if (f[4] === escaped) found = f[2] ?? null // later lines are mounted on top
    }
  } catch {
    return null
  }
  return found
}

export function lazyUnmount(mountpoint: string): boolean {
  const r = spawnSync('fusermount', ['-uz', mountpoint], { stdio: 'ignore' })
  return r.status === 0
}

/**
 * Whether the FUSE mount at `mountpoint` lost its daemon: statfs is never
 * answered from the kernel's caches (stat is: with attribute timeouts of a
 * second, stat of a mount whose daemon was killed a moment ago still
 * succeeds), so a dead connection answers it ENOTCONN.
 */
export function isDeadMount(mountpoint: string): boolean {
  try {
    statfsSync(mountpoint)
    statSync(mountpoint)
    return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO'
  }
}

/**
 * A client that died leaves its mount behind: the kernel answers ENOTCONN.
 * Detach it so the mountpoint can be used again. Returns true if it cleaned.
 * Only a mount whose daemon is known to be gone is asked (statfs reaches the
 * daemon, and a stopped one would never answer), or one whose stat already fails.
 */
export function cleanStale(mountpoint: string): boolean {
  const pid = readPid(mountpoint)
  const daemonGone = isMounted(mountpoint) && pid !== null && !isAlive(pid)
  try {
    statSync(mountpoint)
    if (!daemonGone || !isDeadMount(mountpoint)) return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (!(code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO')) return false
  }
  return lazyUnmount(mountpoint)
}
