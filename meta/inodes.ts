/**
 * Inode rows and the small steps every namespace operation is built from.
 * All functions take the connection of the caller's transaction; none of them
 * opens one. Link counts follow POSIX: a directory has 2 + its subdirectories,
 * a file one per directory entry; an inode with no links is freed once no
 * session holds it open (see freeIfUnused).
 */
import { fsError } from '../common/errors'
import type { Attr, Timespec } from '../common/protocol'
import { isDir, isReg } from '../common/modes'
import type { Conn } from './sqlite'


export interface InodeRow {
  ino: number
  mode: number
  nlink: number
  uid: number
  gid: number
  size: number
  rdev: number
  atime_s: number
  atime_ns: number
  mtime_s: number
  mtime_ns: number
  ctime_s: number
  ctime_ns: number
  gen: number
  target: string | null
  /** Bytes its chunks, slices and inline chunks hold (kept by triggers, meta/schema.ts v11). */
  alloc: number
  /** Which POSIX ACLs it has (common/acl.ts HAS_ACCESS_ACL | HAS_DEFAULT_ACL; meta/schema.ts v12). */
  acl: number
}

export const INODE_COLS = 'ino, mode, nlink, uid, gid, size, rdev, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, gen, target, alloc, acl'

export function toAttr(r: InodeRow): Attr {
  return {
    ino: r.ino,
    mode: r.mode,
    nlink: r.nlink,
    uid: r.uid,
    gid: r.gid,
    size: r.size,
    rdev: r.rdev,
    atime: [r.atime_s, r.atime_ns],
    mtime: [r.mtime_s, r.mtime_ns],
    ctime: [r.ctime_s, r.ctime_ns],
    gen: r.gen,
    ...(isReg(r.mode) ? { blocks: Math.ceil(r.alloc / 512) } : {}),
    ...(r.acl ? { acl: r.acl } : {}),
  }
}

export function getInode(c: Conn, ino: number): Promise<InodeRow | undefined> {
  return c.get<InodeRow>(`SELECT ${INODE_COLS} FROM inodes WHERE ino = ?`, [ino])
}

export async function mustInode(c: Conn, ino: number): Promise<InodeRow> {
  const row = await getInode(c, ino)
  if (!row) throw fsError('ENOENT', `no inode ${ino}`)
  return row
}

export async function mustDir(c: Conn, ino: number): Promise<InodeRow> {
  const row = await mustInode(c, ino)
  if (!isDir(row.mode)) throw fsError('ENOTDIR', `inode ${ino} is not a directory`)
  return row
}

export async function entryIno(c: Conn, parent: number, name: string): Promise<number | undefined> {
  return (await c.get<{ ino: number }>('SELECT ino FROM dentries WHERE parent = ? AND name = ?', [parent, name]))?.ino
}

const ENTRY_COLS = INODE_COLS.split(', ').map((col) => `i.${col}`).join(', ')

/** The inode `name` in `parent` names (one statement: every statement is a trip to SQLite's thread). */
export async function mustEntry(c: Conn, parent: number, name: string): Promise<InodeRow> {
  const row = await c.get<InodeRow>(`SELECT ${ENTRY_COLS} FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.name = ?`, [parent, name])
  if (!row) throw fsError('ENOENT', `no entry "${name}" in ${parent}`)
  return row
}

export interface NewInode {
  mode: number
  nlink: number
  uid: number
  gid: number
  rdev?: number
  size?: number
  target?: string | null
}

/** `ino`: a number reserved and claimed already (claimReservedIno); otherwise the next of AUTOINCREMENT's. */
export async function insertInode(c: Conn, n: NewInode, now: Timespec, ino?: number): Promise<number> {
  const [s, ns] = now
  const r = await c.run(
    `INSERT INTO inodes (ino, mode, nlink, uid, gid, size, rdev, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, gen, target)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    [ino ?? null, n.mode, n.nlink, n.uid, n.gid, n.size ?? 0, n.rdev ?? 0, s, ns, s, ns, s, ns, n.target ?? null],
  )
  return r.lastID
}

/**
 * Reserves `count` inode numbers for `session` (replacing what it had left):
 * AUTOINCREMENT's counter moves past them, so no other inode gets them.
 */
export async function reserveInos(c: Conn, session: string, count: number): Promise<{ first: number; count: number }> {
  const seq = (await c.get<{ seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'inodes'"))?.seq
  if (seq === undefined) throw fsError('EIO', 'no inode counter (the namespace has no root?)')
  const first = seq + 1
  await c.run("UPDATE sqlite_sequence SET seq = ? WHERE name = 'inodes'", [seq + count])
  const r = await c.run('UPDATE sessions SET ino_next = ?, ino_last = ? WHERE id = ?', [first, seq + count, session])
  if (r.changes === 0) throw fsError('ESTALE', `no session ${session} (expired or ended)`)
  return { first, count }
}

/** Takes `ino` out of `session`'s reservation (it and every number below it): EINVAL when it is not there. */
export async function claimReservedIno(c: Conn, session: string, ino: number): Promise<void> {
  const r = await c.run('UPDATE sessions SET ino_next = ? + 1 WHERE id = ? AND ino_next <= ? AND ? <= ino_last', [ino, session, ino, ino])
  if (r.changes === 0) throw fsError('EINVAL', `inode number ${ino} is not reserved for session ${session} (or was used)`)
}

export async function insertEntry(c: Conn, parent: number, name: string, ino: number): Promise<void> {
  await c.run('INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)', [parent, name, ino])
}

export async function deleteEntry(c: Conn, parent: number, name: string): Promise<void> {
  await c.run('DELETE FROM dentries WHERE parent = ? AND name = ?', [parent, name])
}

/** A directory's entries changed: mtime and ctime move, and its link count by `nlinkDelta` (subdirectories). */
export async function touchDir(c: Conn, ino: number, now: Timespec, nlinkDelta = 0): Promise<void> {
  await c.run('UPDATE inodes SET nlink = nlink + ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?', [nlinkDelta, now[0], now[1], now[0], now[1], ino])
}

/** One link fewer (or more) and ctime now, in one statement. */
export async function relink(c: Conn, ino: number, delta: number, now: Timespec): Promise<void> {
  await c.run('UPDATE inodes SET nlink = nlink + ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?', [delta, now[0], now[1], ino])
}

export async function touchCtime(c: Conn, ino: number, now: Timespec): Promise<void> {
  await c.run('UPDATE inodes SET ctime_s = ?, ctime_ns = ? WHERE ino = ?', [now[0], now[1], ino])
}

export async function addNlink(c: Conn, ino: number, delta: number): Promise<void> {
  await c.run('UPDATE inodes SET nlink = nlink + ? WHERE ino = ?', [delta, ino])
}

export async function isEmptyDir(c: Conn, ino: number): Promise<boolean> {
  return (await c.get('SELECT 1 AS x FROM dentries WHERE parent = ? LIMIT 1', [ino])) === undefined
}

export async function refBlock(c: Conn, hash: string, size: number): Promise<void> {
  await c.run(
    `INSERT INTO blocks (hash, refs, size, zero_since) VALUES (?, 1, ?, NULL)
     ON CONFLICT (hash) DO UPDATE SET refs = refs + 1, size = max(size, excluded.size), zero_since = NULL`,
    [hash, size],
  )
}

/** A block whose count reaches zero is kept for the GC grace period, then deleted. */
export async function unrefBlock(c: Conn, hash: string, nowMs: number): Promise<void> {
  await c.run(
    `UPDATE blocks SET refs = refs - 1,
       zero_since = CASE WHEN refs - 1 <= 0 AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.hash = ?) THEN ? ELSE NULL END WHERE hash = ?`,
    [hash, nowMs, hash],
  )
}

/** Drops chunks wholly at or past `size` and clips the one that straddles it. */
export async function clipChunks(c: Conn, ino: number, size: number, chunkSize: number, nowMs: number): Promise<void> {
  const firstGone = Math.ceil(size / chunkSize)
  const gone = await c.all<{ hash: string }>('SELECT hash FROM chunks WHERE ino = ? AND idx >= ?', [ino, firstGone])
  for (const g of gone) await unrefBlock(c, g.hash, nowMs)
  if (gone.length) await c.run('DELETE FROM chunks WHERE ino = ? AND idx >= ?', [ino, firstGone])
  await c.run('DELETE FROM inline_chunks WHERE ino = ? AND idx >= ?', [ino, firstGone])
  const goneSlices = await c.all<{ hash: string }>('SELECT hash FROM slices WHERE ino = ? AND idx >= ?', [ino, firstGone])
  for (const g of goneSlices) await unrefBlock(c, g.hash, nowMs)
  if (goneSlices.length) await c.run('DELETE FROM slices WHERE ino = ? AND idx >= ?', [ino, firstGone])
  if (size % chunkSize !== 0) {
    const last = firstGone - 1
    const keep = size - last * chunkSize
    await c.run('UPDATE chunks SET len = min(len, ?) WHERE ino = ? AND idx = ?', [keep, ino, last])
    // slices wholly past the cut go, the one across it is shortened (blocks are never rewritten)
    const cut = await c.all<{ hash: string }>('SELECT hash FROM slices WHERE ino = ? AND idx = ? AND pos >= ?', [ino, last, keep])
    for (const g of cut) await unrefBlock(c, g.hash, nowMs)
    if (cut.length) await c.run('DELETE FROM slices WHERE ino = ? AND idx = ? AND pos >= ?', [ino, last, keep])
    await c.run('UPDATE slices SET len = ? - pos WHERE ino = ? AND idx = ? AND pos + len > ?', [keep, ino, last, keep])
    // substr() counts bytes on a BLOB
    await c.run('UPDATE inline_chunks SET data = substr(data, 1, ?) WHERE ino = ? AND idx = ? AND length(data) > ?', [keep, ino, last, keep])
  }
}

export async function openCount(c: Conn, ino: number): Promise<number> {
  return (await c.get<{ n: number }>('SELECT COALESCE(SUM(count), 0) AS n FROM open_files WHERE ino = ?', [ino]))?.n ?? 0
}

/**
 * Frees an inode that has no links left and no open handle in any session:
 * its chunks give up their block references, its xattrs go. Returns whether
 * it was freed.
 */
export async function freeIfUnused(c: Conn, ino: number, nowMs: number, knownNlink?: number): Promise<boolean> {
  // the caller that just changed the link count knows it
  const nlink = knownNlink ?? (await c.get<{ nlink: number }>('SELECT nlink FROM inodes WHERE ino = ?', [ino]))?.nlink
  if (nlink === undefined || nlink > 0) return false
  if ((await openCount(c, ino)) > 0) return false
  const chunks = await c.all<{ hash: string }>('SELECT hash FROM chunks WHERE ino = ?', [ino])
  for (const ch of chunks) await unrefBlock(c, ch.hash, nowMs)
  if (chunks.length) await c.run('DELETE FROM chunks WHERE ino = ?', [ino])
  const slices = await c.all<{ hash: string }>('SELECT hash FROM slices WHERE ino = ?', [ino])
  for (const sl of slices) await unrefBlock(c, sl.hash, nowMs)
  if (slices.length) await c.run('DELETE FROM slices WHERE ino = ?', [ino])
  // prepared, not one script: a script is compiled anew on every call
  await c.run('DELETE FROM inline_chunks WHERE ino = ?', [ino])
  await c.run('DELETE FROM xattrs WHERE ino = ?', [ino])
  await c.run('DELETE FROM inodes WHERE ino = ?', [ino])
  return true
}
