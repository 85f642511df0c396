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

/** Is something mounted at `mountpoint`? */
export function isMounted(mountpoint: string): boolean {
  return mountDevice(mountpoint) !== null
}

/**
 * The device (major:minor, as /proc/self/mountinfo gives it) of the mount on
 * top at `mountpoint`, or null when nothing is mounted there. Read from the
 * mount table, never from the file system: a hung mount does not hang it.
 */
export function mountDevice(mountpoint: string): string | null {
  let found: string | null = null
  try {
    // the table escapes these four as octal
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

/** The errors a FUSE mount whose daemon is gone answers with. */
function failsAsDead(call: () => unknown): boolean {
  try {
    call()
    return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO'
  }
}

/**
 * Whether the FUSE mount at `mountpoint` lost its daemon: statfs is never
 * answered from the kernel's caches (stat is: with attribute timeouts of a
 * second, stat of a mount whose daemon was killed a moment ago still
 * succeeds), so a dead connection answers it ENOTCONN. It reaches a live
 * daemon, though, and one that is stopped would never answer.
 */
export function isDeadMount(mountpoint: string): boolean {
  return failsAsDead(() => statfsSync(mountpoint))
}

/**
 * A client that died leaves its mount behind: the kernel answers ENOTCONN.
 * Detach it so the mountpoint can be used again. Returns true if it cleaned.
 * statfs is asked only of a mount whose recorded daemon is gone.
 */
export function cleanStale(mountpoint: string): boolean {
  const pid = readPid(mountpoint)
  const daemonGone = pid !== null && !isAlive(pid) && isMounted(mountpoint)
  const dead = failsAsDead(() => statSync(mountpoint)) || (daemonGone && isDeadMount(mountpoint))
  return dead && lazyUnmount(mountpoint)
}
