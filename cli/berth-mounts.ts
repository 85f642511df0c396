/**
 * Which berth mount a local path is on, from /proc/self/mountinfo: operator
 * commands that take paths (`berth info`, `berth warmup`) turn them into paths
 * in the cluster's namespace, or read through the mount.
 */
import { readFileSync, realpathSync } from 'node:fs'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'

export interface MountedPath {
  /** Mount point of the berth mount the path is on. */
  mountpoint: string
  /** The path inside the cluster's namespace, `/` first. */
  inCluster: string
  /** The absolute local path (parent directories resolved, the last name kept). */
  local: string
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** Mount points of berth FUSE mounts (type fuse.berth, or source `berth`). */
export function berthMounts(): string[] {
  let text: string
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const out: string[] = []
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ')
    if (!left || !right) continue
    const mp = left.split(' ')[4]
    const [fstype, source] = right.split(' ')
    if (mp && (fstype === 'fuse.berth' || (fstype?.startsWith('fuse') && source === 'berth'))) out.push(unescape(mp))
  }
  return out
}

/**
 * The berth mount `path` is on, or null. The last name is not followed (a
 * symlink is described, not its target); the directories above it are.
 */
export function berthMountOf(path: string): MountedPath | null {
  const abs = resolve(path)
  let local: string
  try {
    local = abs === '/' ? '/' : join(realpathSync(dirname(abs)), basename(abs))
  } catch {
    return null
  }
  let best: string | null = null
  for (const mp of berthMounts()) {
    if ((local === mp || local.startsWith(mp === '/' ? '/' : mp + sep)) && (!best || mp.length > best.length)) best = mp
  }
  if (!best) return null
  const rel = relative(best, local)
  return { mountpoint: best, inCluster: '/' + rel.split(sep).filter(Boolean).join('/'), local }
}
