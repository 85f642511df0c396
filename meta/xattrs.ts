/** Extended attributes: stored per inode, names and values bounded as on Linux. */
import { ACL_ACCESS, aclBit, isAclName } from '../common/acl'
import { fsError } from '../common/errors'
import { kernelBytes, XATTR_NAME_MAX, XATTR_SIZE_MAX } from '../common/names'
import type { MetaParsed, MetaReplies } from '../common/protocol'
import type { Changes, MetaEnv } from './context'
import { setAclXattr, writeAcl } from './acls'
import { mustInode, touchCtime } from './inodes'
import { nowTs } from './time'

export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2

function checkName(name: string): string {
  const bytes = kernelBytes(name)
  if (bytes === 0 || bytes > XATTR_NAME_MAX) throw fsError('ERANGE', `xattr name must be 1..${XATTR_NAME_MAX} bytes`)
  if (name.includes('\0')) throw fsError('EINVAL', 'xattr name may not contain NUL')
  return name
}

export async function getxattr(env: MetaEnv, b: MetaParsed<'getxattr'>): Promise<MetaReplies['getxattr']> {
  const name = checkName(b.name)
  await mustInode(env.db.read, b.ino)
  const row = await env.db.read.get<{ value: Buffer }>('SELECT value FROM xattrs WHERE ino = ? AND name = ?', [b.ino, name])
  if (!row) throw fsError('ENODATA', `no xattr "${name}"`)
  return { value: row.value }
}

export async function setxattr(env: MetaEnv, b: MetaParsed<'setxattr'>, ch: Changes): Promise<MetaReplies['setxattr']> {
  const name = checkName(b.name)
  if (b.value.length > XATTR_SIZE_MAX) throw fsError('E2BIG', `xattr value over ${XATTR_SIZE_MAX} bytes`)
  if (b.flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw fsError('EINVAL', `unknown xattr flags ${b.flags}`)
  await env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    if (isAclName(name)) {
      // the kernel's set_acl takes no flags: an ACL is set or replaced
      await setAclXattr(tx, row, name, b.value)
      await touchCtime(tx, b.ino, nowTs(tx))
      return
    }
    const exists = (await tx.get('SELECT 1 AS x FROM xattrs WHERE ino = ? AND name = ?', [b.ino, name])) !== undefined
    if (b.flags & XATTR_CREATE && exists) throw fsError('EEXIST', `xattr "${name}" exists`)
    if (b.flags & XATTR_REPLACE && !exists) throw fsError('ENODATA', `no xattr "${name}"`)
    await tx.run('INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?) ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value', [
      b.ino,
      name,
      Buffer.from(b.value),
    ])
    await touchCtime(tx, b.ino, nowTs(tx))
  })
  ch.ino(b.ino)
  return {}
}

export async function listxattr(env: MetaEnv, b: MetaParsed<'listxattr'>): Promise<MetaReplies['listxattr']> {
  await mustInode(env.db.read, b.ino)
  const rows = await env.db.read.all<{ name: string }>('SELECT name FROM xattrs WHERE ino = ? ORDER BY name', [b.ino])
  return { names: rows.map((r) => r.name) }
}

export async function removexattr(env: MetaEnv, b: MetaParsed<'removexattr'>, ch: Changes): Promise<MetaReplies['removexattr']> {
  const name = checkName(b.name)
  await env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    if (isAclName(name)) {
      // the mode stays as it is (the mask's bits are its group bits), as on a local disk
      if (!(row.acl & aclBit(name))) throw fsError('ENODATA', `no ${name === ACL_ACCESS ? 'access' : 'default'} ACL`)
      await writeAcl(tx, b.ino, name, null)
      await touchCtime(tx, b.ino, nowTs(tx))
      return
    }
    const r = await tx.run('DELETE FROM xattrs WHERE ino = ? AND name = ?', [b.ino, name])
    if (r.changes === 0) throw fsError('ENODATA', `no xattr "${name}"`)
    await touchCtime(tx, b.ino, nowTs(tx))
  })
  ch.ino(b.ino)
  return {}
}
