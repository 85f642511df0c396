/**
 * Where a running mount daemon leaves its pid, so `berth umount MOUNTPOINT`
 * can ask it to flush and unmount; and the stale-mountpoint check.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
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

export function lazyUnmount(mountpoint: string): boolean {
  const r = spawnSync('fusermount', ['-uz', mountpoint], { stdio: 'ignore' })
  return r.status === 0
}

/**
 * A client that died leaves its mount behind: stat fails with ENOTCONN.
 * Detach it so the mountpoint can be used again. Returns true if it cleaned.
 */
export function cleanStale(mountpoint: string): boolean {
  try {
    statSync(mountpoint)
    return false
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO') return lazyUnmount(mountpoint)
    return false
  }
}
