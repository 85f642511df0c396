/**
 * The lock table: fcntl record locks, OFD locks and flock(2) locks shared by
 * every mount of the cluster (docs/semantics.md#locks; the range rules are in
 * meta/lock-ranges.ts).
 *
 * Meta never holds a request open while a lock is taken: `lock` grants or
 * refuses at once, and a mount whose F_SETLKW or blocking flock was refused
 * waits for an invalidation naming the inode in `locks` (published when a lock
 * is released or downgraded) and asks again. Rows are ordinary SQLite rows, so
 * they are replicated through the log (meta/log/) and survive a change of
 * leader; a session's rows go when it ends, expires or is restored
 * (dropSessionLocks, meta/sessions.ts).
 *
 *   owner holds nothing --lock granted--> holds ranges --lock 'u' / flush / release--> nothing
 *                        <-- session ends or expires (all its rows) --'
 */
import { fsError } from '../common/errors'
import { LOCK_EOF, type MetaParsed, type MetaReplies } from '../common/protocol'
import type { Changes, MetaEnv } from './context'
import { mustInode } from './inodes'
import { applyToOwner, conflictOf, released, sameOwner, type HeldLock, type LockRange } from './lock-ranges'
import { ensureSession } from './sessions'
import type { Conn } from './sqlite'

function heldOn(c: Conn, ino: number, kind: 'posix' | 'flock'): Promise<HeldLock[]> {
  return c.all<HeldLock>('SELECT session, owner, type, start, "end" AS "end", pid FROM locks WHERE ino = ? AND kind = ? ORDER BY start', [ino, kind])
}

async function replaceOwner(tx: Conn, b: MetaParsed<'lock'>, ranges: readonly LockRange[]): Promise<void> {
  await tx.run('DELETE FROM locks WHERE ino = ? AND kind = ? AND session = ? AND owner = ?', [b.ino, b.kind, b.session, b.owner])
  for (const r of ranges) {
    await tx.run('INSERT INTO locks (ino, kind, session, owner, type, start, "end", pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      b.ino,
      b.kind,
      b.session,
      b.owner,
      r.type,
      r.start,
      r.end,
      r.pid,
    ])
  }
}

function sameRanges(a: readonly LockRange[], b: readonly LockRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.type === b[i]!.type && r.start === b[i]!.start && r.end === b[i]!.end && r.pid === b[i]!.pid)
}

export async function lock(env: MetaEnv, b: MetaParsed<'lock'>, ch: Changes): Promise<MetaReplies['lock']> {
  if (b.start > b.end) throw fsError('EINVAL', `lock range ${b.start}..${b.end} ends before it starts`)
  if (b.kind === 'flock' && (b.start !== 0 || b.end !== LOCK_EOF)) throw fsError('EINVAL', 'a flock lock covers the whole file')
  return env.db.write(async (tx) => {
    const held = await heldOn(tx, b.ino, b.kind)
    const before: LockRange[] = held.filter((h) => sameOwner(h, b))
    if (b.type === 'u' && before.length === 0) return { granted: true } // nothing held: nothing to write
    const inode = b.type !== 'u' ? await mustInode(tx, b.ino) : undefined
    const content = inode ? { gen: inode.gen, size: inode.size } : {}
    // a mount that locks before its lease was registered: expiry then frees its locks
    if (b.type !== 'u') await ensureSession(tx, b.session)
    let mine = before
    // Linux converts a flock lock by dropping the old one first (not
    // atomically): two holders of a shared lock that both ask for an
    // exclusive one must not wait for each other forever
    if (b.kind === 'flock' && b.type !== 'u' && mine.length > 0 && mine[0]!.type !== b.type) mine = []
    if (b.type !== 'u' && conflictOf(held, { session: b.session, owner: b.owner, type: b.type, start: b.start, end: b.end })) {
      if (mine !== before) {
        await replaceOwner(tx, b, mine)
        ch.lock(b.ino)
      }
      return { granted: false }
    }
    const after = applyToOwner(mine, b)
    if (sameRanges(before, after)) return { granted: true, ...content }
    await replaceOwner(tx, b, after)
    if (released(before, after)) ch.lock(b.ino)
    return { granted: true, ...content }
  })
}

export async function getlk(env: MetaEnv, b: MetaParsed<'getlk'>): Promise<MetaReplies['getlk']> {
  if (b.start > b.end) throw fsError('EINVAL', `lock range ${b.start}..${b.end} ends before it starts`)
  const held = await heldOn(env.db.read, b.ino, 'posix')
  const c = conflictOf(held, { session: b.session, owner: b.owner, type: b.type, start: b.start, end: b.end })
  return { conflict: c ? { type: c.type, start: c.start, end: c.end, pid: c.pid, session: c.session } : null }
}
