/**
 * Directory-tree operations: lookup, attributes, create, remove, rename, links,
 * symlinks, listing. Each mutation is one write transaction; it records what
 * changed in `Changes` so the caller can publish an invalidation after commit.
 */
import { ACL_ACCESS, ACL_DEFAULT, HAS_ACCESS_ACL, HAS_DEFAULT_ACL, aclCreate } from '../common/acl'
import { fsError } from '../common/errors'
import { chmodAcl, readAcl, writeAcl } from './acls'
import { outcomeOf } from './requests'
import { kernelBytes, validateName, PATH_MAX } from '../common/names'
import { ROOT_INO, type Attr, type DirEntry, type MetaParsed, type MetaReplies, type Timespec } from '../common/protocol'
import { Changes, type MetaEnv } from './context'
import {
  INODE_COLS,
  addNlink, claimReservedIno, clipChunks, deleteEntry, entryIno, freeIfUnused, insertEntry, insertInode, isEmptyDir, relink,
  mustDir, mustEntry, mustInode, reserveInos, toAttr, touchCtime, touchDir, type InodeRow,
} from './inodes'
import { PERM_BITS, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, inheritedOwnership, isDir, isLnk, isReg } from '../common/modes'
import { commit, registerOpen } from './files'
import type { Conn } from './sqlite'
import { clockMs, nowTs } from './time'

type Req<Op extends keyof MetaReplies & string> = MetaParsed<Op>

export async function lookup(env: MetaEnv, b: Req<'lookup'>): Promise<MetaReplies['lookup']> {
  const name = validateName(b.name)
  const c = env.db.read
  await mustDir(c, b.parent)
  return { attr: toAttr(await mustEntry(c, b.parent, name)) }
}

export async function getattr(env: MetaEnv, b: Req<'getattr'>): Promise<MetaReplies['getattr']> {
  return { attr: toAttr(await mustInode(env.db.read, b.ino)) }
}

const resolveTime = (t: Timespec | 'now' | undefined, now: Timespec) => (t === 'now' ? now : t)

export async function setattr(env: MetaEnv, b: Req<'setattr'>, ch: Changes): Promise<MetaReplies['setattr']> {
  return env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    const now = nowTs(tx)
    const next: InodeRow = { ...row, ctime_s: now[0], ctime_ns: now[1] }
    if (b.mode !== undefined) {
      next.mode = (row.mode & S_IFMT) | (b.mode & PERM_BITS)
      await chmodAcl(tx, row, next.mode)
    }
    if (b.uid !== undefined) next.uid = b.uid
    if (b.gid !== undefined) next.gid = b.gid
    if (b.size !== undefined) {
      if (isDir(row.mode)) throw fsError('EISDIR', 'cannot truncate a directory')
      if (!isReg(row.mode)) throw fsError('EINVAL', 'only regular files have a size to set')
      if (b.size < row.size) {
        await clipChunks(tx, row.ino, b.size, env.chunkSize, clockMs(tx))
        next.alloc = (await tx.get<{ alloc: number }>('SELECT alloc FROM inodes WHERE ino = ?', [row.ino]))?.alloc ?? 0
      }
      if (b.size !== row.size) next.gen = row.gen + 1
      next.size = b.size
      next.mtime_s = now[0]
      next.mtime_ns = now[1]
    }
    const atime = resolveTime(b.atime, now)
    if (atime) [next.atime_s, next.atime_ns] = atime
    const mtime = resolveTime(b.mtime, now)
    if (mtime) [next.mtime_s, next.mtime_ns] = mtime
    await tx.run(
      `UPDATE inodes SET mode = ?, uid = ?, gid = ?, size = ?, gen = ?, atime_s = ?, atime_ns = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?`,
      [next.mode, next.uid, next.gid, next.size, next.gen, next.atime_s, next.atime_ns, next.mtime_s, next.mtime_ns, next.ctime_s, next.ctime_ns, row.ino],
    )
    ch.ino(row.ino)
    return { attr: toAttr(next) }
  })
}

/** A directory row after touchDir(now) and addNlink(delta): what a reply's `dirs` carries, without reading it again. */
function touched(row: InodeRow, now: Timespec, nlinkDelta = 0): Attr {
  return toAttr({ ...row, nlink: row.nlink + nlinkDelta, mtime_s: now[0], mtime_ns: now[1], ctime_s: now[0], ctime_ns: now[1] })
}

async function create(
  tx: Conn,
  parent: number,
  rawName: string,
  ch: Changes,
  make: (parentRow: InodeRow) => { mode: number; uid: number; gid: number; rdev?: number; size?: number; target?: string; nlink: number; umask?: number },
  reserved?: { ino: number; session: string },
): Promise<{ attr: Attr; dirs: Attr[] }> {
  const name = validateName(rawName)
  const p = await mustDir(tx, parent)
  if ((await entryIno(tx, parent, name)) !== undefined) throw fsError('EEXIST', `"${name}" exists`)
  const spec = make(p)
  const own = inheritedOwnership(p, spec.gid, spec.mode)
  const now = nowTs(tx)
  // the umask, or the directory's default ACL instead (common/acl.ts)
  const dflt = p.acl & HAS_DEFAULT_ACL ? await readAcl(tx, parent, ACL_DEFAULT) : null
  const acls = aclCreate(own.mode, spec.umask ?? 0, dflt, isDir(own.mode), isLnk(own.mode))
  const made = { ...spec, ...own, mode: acls.mode }
  if (reserved) await claimReservedIno(tx, reserved.session, reserved.ino)
  const ino = await insertInode(tx, made, now, reserved?.ino)
  if (acls.access) await writeAcl(tx, ino, ACL_ACCESS, acls.access)
  if (acls.dflt) await writeAcl(tx, ino, ACL_DEFAULT, acls.dflt)
  const aclBits = (acls.access ? HAS_ACCESS_ACL : 0) | (acls.dflt ? HAS_DEFAULT_ACL : 0)
  await insertEntry(tx, parent, name, ino)
  const subdir = isDir(spec.mode) ? 1 : 0
  await touchDir(tx, parent, now, subdir)
  ch.dir(parent)
  ch.ino(parent)
  // the row as insertInode wrote it, without reading it back
  const attr: Attr = {
    ino, mode: made.mode, nlink: made.nlink, uid: made.uid, gid: made.gid, size: made.size ?? 0, rdev: made.rdev ?? 0,
    atime: now, mtime: now, ctime: now, gen: 0,
    ...(isReg(made.mode) ? { blocks: 0 } : {}),
    ...(aclBits ? { acl: aclBits } : {}),
  }
  return { attr, dirs: [touched(p, now, subdir)] }
}

const MKNOD_TYPES = new Set([S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK])

export async function mknod(env: MetaEnv, b: Req<'mknod'>, ch: Changes): Promise<MetaReplies['mknod']> {
  const type = (b.mode & S_IFMT) || S_IFREG
  if (!MKNOD_TYPES.has(type)) throw fsError('EINVAL', 'mknod makes regular files, FIFOs, sockets and devices; use mkdir/symlink')
  const device = type === S_IFCHR || type === S_IFBLK
  if (b.ino !== undefined && b.session === undefined) throw fsError('EINVAL', 'mknod takes a reserved inode number with its session')
  const reserved = b.ino !== undefined && b.session !== undefined ? { ino: b.ino, session: b.session } : undefined
  return env.db.write(async (tx) => {
    const made = await create(tx, b.parent, b.name, ch, () => ({ mode: type | (b.mode & PERM_BITS), uid: b.uid, gid: b.gid, rdev: device ? b.rdev : 0, nlink: 1, umask: b.umask }), reserved)
    if (b.session !== undefined) await registerOpen(tx, b.session, made.attr.ino)
    return made
  })
}

export async function mkdir(env: MetaEnv, b: Req<'mkdir'>, ch: Changes): Promise<MetaReplies['mkdir']> {
  if ((b.ino === undefined) !== (b.session === undefined)) throw fsError('EINVAL', 'mkdir takes a reserved inode number with its session, or neither')
  const reserved = b.ino !== undefined && b.session !== undefined ? { ino: b.ino, session: b.session } : undefined
  return env.db.write((tx) => create(tx, b.parent, b.name, ch, () => ({ mode: S_IFDIR | (b.mode & PERM_BITS), uid: b.uid, gid: b.gid, nlink: 2, umask: b.umask }), reserved))
}

/** Inode numbers for a session's mkdirs ahead (meta/inodes.ts reserveInos). */
export async function inos(env: MetaEnv, b: Req<'inos'>): Promise<MetaReplies['inos']> {
  return env.db.write((tx) => reserveInos(tx, b.session, b.count))
}

export async function symlink(env: MetaEnv, b: Req<'symlink'>, ch: Changes): Promise<MetaReplies['symlink']> {
  const bytes = kernelBytes(b.target)
  if (bytes >= PATH_MAX) throw fsError('ENAMETOOLONG', `symlink target over ${PATH_MAX - 1} bytes`)
  if (b.target.includes('\0')) throw fsError('EINVAL', 'symlink target may not contain NUL')
  return env.db.write((tx) =>
    create(tx, b.parent, b.name, ch, () => ({ mode: S_IFLNK | 0o777, uid: b.uid, gid: b.gid, size: bytes, target: b.target, nlink: 1 })),
  )
}

export async function readlink(env: MetaEnv, b: Req<'readlink'>): Promise<MetaReplies['readlink']> {
  const row = await mustInode(env.db.read, b.ino)
  if (!isLnk(row.mode) || row.target === null) throw fsError('EINVAL', `inode ${b.ino} is not a symlink`)
  return { target: row.target }
}

/** Removes one link to a non-directory; the inode goes when unused (freeIfUnused). */
async function dropLink(tx: Conn, row: InodeRow, now: Timespec, ch: Changes): Promise<void> {
  // the last link of an inode nobody holds open: it is deleted, not updated first
  if (!(await freeIfUnused(tx, row.ino, clockMs(tx), row.nlink - 1))) await relink(tx, row.ino, -1, now)
  ch.ino(row.ino)
}

/** Removes an (empty) directory inode whose entry was already deleted; the caller drops the parent's link. */
async function dropDir(tx: Conn, row: InodeRow, ch: Changes): Promise<void> {
  await tx.run('UPDATE inodes SET nlink = 0 WHERE ino = ?', [row.ino])
  await freeIfUnused(tx, row.ino, clockMs(tx), 0)
  ch.ino(row.ino)
  ch.dir(row.ino)
}

export async function unlink(env: MetaEnv, b: Req<'unlink'>, ch: Changes): Promise<MetaReplies['unlink']> {
  const name = validateName(b.name)
  return env.db.write(async (tx) => {
    const p = await mustDir(tx, b.parent)
    const row = await mustEntry(tx, b.parent, name)
    if (isDir(row.mode)) throw fsError('EISDIR', `"${name}" is a directory`)
    const now = nowTs(tx)
    await deleteEntry(tx, b.parent, name)
    await touchDir(tx, b.parent, now)
    await dropLink(tx, row, now, ch)
    ch.dir(b.parent)
    ch.ino(b.parent)
    ch.entry(b.parent, name)
    return { dirs: [touched(p, now)] }
  })
}

export async function rmdir(env: MetaEnv, b: Req<'rmdir'>, ch: Changes): Promise<MetaReplies['rmdir']> {
  const name = validateName(b.name)
  return env.db.write(async (tx) => {
    const p = await mustDir(tx, b.parent)
    const row = await mustEntry(tx, b.parent, name)
    if (!isDir(row.mode)) throw fsError('ENOTDIR', `"${name}" is not a directory`)
    if (row.ino === ROOT_INO) throw fsError('EBUSY', 'cannot remove the root')
    if (!(await isEmptyDir(tx, row.ino))) throw fsError('ENOTEMPTY', `"${name}" is not empty`)
    const now = nowTs(tx)
    await deleteEntry(tx, b.parent, name)
    await touchDir(tx, b.parent, now, -1)
    await dropDir(tx, row, ch)
    ch.dir(b.parent)
    ch.ino(b.parent)
    ch.entry(b.parent, name)
    return { dirs: [touched(p, now, -1)] }
  })
}

/**
 * Changes a mount answered ahead, in one request: each item runs as its own
 * unlink, rmdir, mkdir, mknod (a create), setattr (of a directory) or commit
 * (the close of a file it created ahead, which waits for its answer) inside a
 * savepoint, so a refused
 * one (ENOTEMPTY, ENOENT, EEXIST) rolls back only itself and answers with its
 * error; the others stand. What each committed item changed joins the
 * request's invalidation.
 */
export async function ahead(env: MetaEnv, b: Req<'ahead'>, ch: Changes): Promise<MetaReplies['ahead']> {
  return env.db.write(async (tx) => {
    const results: MetaReplies['ahead']['results'] = []
    for (const item of b.items) {
      const mine = new Changes()
      await tx.run('SAVEPOINT item')
      try {
        results.push(await applyAhead(env, b.rid, item, mine))
        await tx.run('RELEASE item')
        ch.absorb(mine)
      } catch (err) {
        const refused = outcomeOf(err)
        if (!refused || refused.ok) throw err // internal failure: the whole request fails, a retry runs it again
        await tx.run('ROLLBACK TO item')
        await tx.run('RELEASE item')
        results.push({ error: { code: refused.code, message: refused.message } })
      }
    }
    return { results }
  })
}

function applyAhead(env: MetaEnv, rid: string | undefined, item: Req<'ahead'>['items'][number], ch: Changes): Promise<MetaReplies['ahead']['results'][number]> {
  switch (item.op) {
    case 'unlink':
      return unlink(env, { rid, parent: item.parent, name: item.name }, ch)
    case 'rmdir':
      return rmdir(env, { rid, parent: item.parent, name: item.name }, ch)
    case 'mkdir':
      return mkdir(env, { rid, ...item }, ch)
    case 'mknod':
      return mknod(env, { rid, ...item }, ch)
    case 'commit':
      return commit(env, { rid, ...item }, ch)
    case 'setattr':
      return setattr(env, { rid, ...item }, ch)
  }
}

export async function link(env: MetaEnv, b: Req<'link'>, ch: Changes): Promise<MetaReplies['link']> {
  const name = validateName(b.newName)
  return env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    if (isDir(row.mode)) throw fsError('EPERM', 'hard links to directories are not allowed')
    if (row.nlink <= 0) throw fsError('ENOENT', `inode ${b.ino} was removed`)
    const p = await mustDir(tx, b.newParent)
    if ((await entryIno(tx, b.newParent, name)) !== undefined) throw fsError('EEXIST', `"${name}" exists`)
    const now = nowTs(tx)
    await insertEntry(tx, b.newParent, name, row.ino)
    await relink(tx, row.ino, 1, now)
    await touchDir(tx, b.newParent, now)
    ch.ino(row.ino, b.newParent)
    ch.dir(b.newParent)
    return { attr: toAttr(await mustInode(tx, row.ino)), dirs: [touched(p, now)] }
  })
}

/** Whether directory `ino` is `ancestor` or lies below it. */
async function isWithin(tx: Conn, ino: number, ancestor: number): Promise<boolean> {
  let cur = ino
  for (let depth = 0; depth < 100_000; depth++) {
    if (cur === ancestor) return true
    if (cur === ROOT_INO) return false
    const up = await tx.get<{ parent: number }>('SELECT parent FROM dentries WHERE ino = ? LIMIT 1', [cur])
    if (!up) return false
    cur = up.parent
  }
  throw fsError('ELOOP', 'directory tree too deep')
}

export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2

export async function rename(env: MetaEnv, b: Req<'rename'>, ch: Changes): Promise<MetaReplies['rename']> {
  const name = validateName(b.name)
  const newName = validateName(b.newName)
  if (b.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw fsError('EINVAL', `unknown rename flags ${b.flags}`)
  if (b.flags === (RENAME_NOREPLACE | RENAME_EXCHANGE)) throw fsError('EINVAL', 'RENAME_NOREPLACE and RENAME_EXCHANGE exclude each other')
  return env.db.write(async (tx) => {
    await renameIn(tx, b, name, newName, ch)
    // after the change, as the client caches them (the paths above return early)
    const dirs = [toAttr(await mustInode(tx, b.parent))]
    if (b.newParent !== b.parent) dirs.push(toAttr(await mustInode(tx, b.newParent)))
    return { dirs }
  })
}

async function renameIn(tx: Conn, b: Req<'rename'>, name: string, newName: string, ch: Changes): Promise<void> {
  {
    await mustDir(tx, b.parent)
    await mustDir(tx, b.newParent)
    const src = await mustEntry(tx, b.parent, name)
    const dstIno = await entryIno(tx, b.newParent, newName)
    const dst = dstIno === undefined ? undefined : await mustInode(tx, dstIno)
    const now = nowTs(tx)
    const moved = b.parent !== b.newParent
    ch.dir(b.parent, b.newParent)
    ch.ino(b.parent, b.newParent, src.ino)
    ch.entry(b.parent, name)
    ch.entry(b.newParent, newName)

    if (b.flags & RENAME_NOREPLACE && dst) throw fsError('EEXIST', `"${newName}" exists`)
    if (b.flags & RENAME_EXCHANGE) {
      if (!dst) throw fsError('ENOENT', `no entry "${newName}" to exchange with`)
      if (dst.ino === src.ino) return
      if (isDir(src.mode) && (await isWithin(tx, b.newParent, src.ino))) throw fsError('EINVAL', 'cannot move a directory into itself')
      if (isDir(dst.mode) && (await isWithin(tx, b.parent, dst.ino))) throw fsError('EINVAL', 'cannot move a directory into itself')
      await tx.run('UPDATE dentries SET ino = ? WHERE parent = ? AND name = ?', [dst.ino, b.parent, name])
      await tx.run('UPDATE dentries SET ino = ? WHERE parent = ? AND name = ?', [src.ino, b.newParent, newName])
      if (moved) {
        const delta = (isDir(src.mode) ? 1 : 0) - (isDir(dst.mode) ? 1 : 0)
        if (delta) {
          await addNlink(tx, b.newParent, delta)
          await addNlink(tx, b.parent, -delta)
        }
      }
      await touchCtime(tx, src.ino, now)
      await touchCtime(tx, dst.ino, now)
      await touchDir(tx, b.parent, now)
      if (moved) await touchDir(tx, b.newParent, now)
      ch.ino(dst.ino)
      return
    }

    // POSIX: renaming onto another link of the same inode does nothing.
    if (dst && dst.ino === src.ino) return
    if (isDir(src.mode) && (await isWithin(tx, b.newParent, src.ino))) throw fsError('EINVAL', 'cannot move a directory into its own subtree')
    if (dst) {
      if (isDir(src.mode)) {
        if (!isDir(dst.mode)) throw fsError('ENOTDIR', `"${newName}" is not a directory`)
        if (!(await isEmptyDir(tx, dst.ino))) throw fsError('ENOTEMPTY', `"${newName}" is not empty`)
      } else if (isDir(dst.mode)) {
        throw fsError('EISDIR', `"${newName}" is a directory`)
      }
      await deleteEntry(tx, b.newParent, newName)
      if (isDir(dst.mode)) {
        await addNlink(tx, b.newParent, -1)
        await dropDir(tx, dst, ch)
      } else await dropLink(tx, dst, now, ch)
    }
    await deleteEntry(tx, b.parent, name)
    await insertEntry(tx, b.newParent, newName, src.ino)
    if (isDir(src.mode) && moved) {
      await addNlink(tx, b.parent, -1)
      await addNlink(tx, b.newParent, 1)
    }
    await touchCtime(tx, src.ino, now)
    await touchDir(tx, b.parent, now)
    if (moved) await touchDir(tx, b.newParent, now)
  }
}

export async function readdir(env: MetaEnv, b: Req<'readdir'>): Promise<MetaReplies['readdir']> {
  const c = env.db.read
  await mustDir(c, b.ino)
  const rows = await c.all<InodeRow & { name: string }>(
    `SELECT d.name AS name, ${INODE_COLS.split(', ').map((col) => `i.${col}`).join(', ')}
     FROM dentries d JOIN inodes i ON i.ino = d.ino
     WHERE d.parent = ? AND d.name > ? ORDER BY d.name LIMIT ?`,
    [b.ino, b.cursor ?? '', b.limit + 1],
  )
  const more = rows.length > b.limit
  const page = more ? rows.slice(0, b.limit) : rows
  const entries: DirEntry[] = page.map((r) => ({ name: r.name, attr: toAttr(r) }))
  return { entries, next: more ? page[page.length - 1]!.name : null }
}

