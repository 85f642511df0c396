/**
 * Byte-range lock arithmetic (pure; meta/locks.ts keeps the table).
 *
 * POSIX record locks (fcntl F_SETLK, also OFD locks) and flock(2) locks
 * follow the same rules here, the way Linux keeps them (fs/locks.c):
 * - An owner is (session, owner): a mount's session and the kernel's lock
 *   owner id, which is per process for POSIX locks and per open file
 *   description for flock and OFD locks. Owner ids of two mounts may collide,
 *   so the session is part of it.
 * - Locks of one owner never conflict with each other. A new lock replaces
 *   the owner's locks in its range (a type change splits them), and touching
 *   or overlapping ranges of one type merge: after any sequence, an owner's
 *   ranges are disjoint, sorted, and no two of one type touch.
 * - Two owners conflict where their ranges overlap and either is a write lock.
 * - A flock lock is the range [0, LOCK_EOF] (common/protocol.ts); flock and POSIX locks live in
 *   separate tables of kinds and never conflict with each other (as on Linux).
 * Ranges are inclusive; LOCK_EOF stands for "to the end of the file, however
 * far it grows" (l_len 0).
 */

export type LockType = 'r' | 'w'

export interface LockRange {
  type: LockType
  start: number
  end: number
  /** Process that set it (reported by F_GETLK on its own mount). */
  pid: number
}

export interface HeldLock extends LockRange {
  session: string
  owner: string
}

export interface LockOwner {
  session: string
  owner: string
}

export function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return a.session === b.session && a.owner === b.owner
}

function overlaps(a: { start: number; end: number }, b: { start: number; end: number }): boolean {
  return a.start <= b.end && b.start <= a.end
}

/** The first lock of another owner that keeps `want` from being granted (none: grant it). */
export function conflictOf(held: readonly HeldLock[], want: LockOwner & { type: LockType; start: number; end: number }): HeldLock | undefined {
  return held.find((h) => !sameOwner(h, want) && overlaps(h, want) && (h.type === 'w' || want.type === 'w'))
}

/**
 * One owner's ranges after `change` ('u': unlock the range). `mine` must be
 * that owner's ranges (disjoint); the result is disjoint, sorted by start,
 * with touching ranges of one type merged.
 */
export function applyToOwner(mine: readonly LockRange[], change: { type: LockType | 'u'; start: number; end: number; pid: number }): LockRange[] {
  const { start, end } = change
  const kept: LockRange[] = []
  for (const r of mine) {
    if (!overlaps(r, change)) {
      kept.push(r)
      continue
    }
    // the parts of r outside the changed range stay as they were
    if (r.start < start) kept.push({ ...r, end: start - 1 })
    if (r.end > end) kept.push({ ...r, start: end + 1 })
  }
  if (change.type !== 'u') kept.push({ type: change.type, start, end, pid: change.pid })
  kept.sort((a, b) => a.start - b.start)
  const out: LockRange[] = []
  for (const r of kept) {
    const last = out[out.length - 1]
    if (last && last.type === r.type && r.start <= last.end + 1) {
      // merged ranges keep the pid of the newest lock (Linux does the same)
      const newest = r.pid === change.pid || last.pid === change.pid ? change.pid : last.pid
      out[out.length - 1] = { ...last, end: Math.max(last.end, r.end), pid: newest }
    } else out.push(r)
  }
  return out
}

/**
 * Whether `after` gave up anything of `before` (an unlock, a shrink, a write
 * lock turned read): waiters may now be granted, so meta tells the mounts.
 */
export function released(before: readonly LockRange[], after: readonly LockRange[]): boolean {
  return before.some((b) => !covered(after, b))
}

/** Every byte of `b` lies in ranges of `sorted` at least as strong as `b`. */
function covered(sorted: readonly LockRange[], b: LockRange): boolean {
  let at = b.start
  for (const a of sorted) {
    if (a.end < at) continue
    if (a.start > at) return false
    if (b.type === 'w' && a.type === 'r') return false
    if (a.end >= b.end) return true
    at = a.end + 1
  }
  return false
}
