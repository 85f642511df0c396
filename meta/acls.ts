/**
 * POSIX ACLs in meta's tables: each is its xattr row (system.posix_acl_access
 * or system.posix_acl_default) and a bit of its inode's `acl` column
 * (meta/schema.ts v12). The rules that keep an ACL and its inode's mode in
 * step are common/acl.ts's; these functions run inside the caller's write
 * transaction.
 */
import { ACL_ACCESS, ACL_DEFAULT, aclAfterChmod, aclBit, HAS_ACCESS_ACL, modeFromAcl, parseAcl, serializeAcl, type Acl } from '../common/acl'
import { fsError } from '../common/errors'
import { isDir } from '../common/modes'
import type { InodeRow } from './inodes'
import type { Conn } from './sqlite'

/** The inode's ACL of that name, or null. */
export async function readAcl(c: Conn, ino: number, name: string): Promise<Acl | null> {
  const row = await c.get<{ value: Buffer }>('SELECT value FROM xattrs WHERE ino = ? AND name = ?', [ino, name])
  return row ? parseAcl(row.value) : null
}

/** Stores (or with null removes) the inode's ACL of that name and sets its `acl` bit to match. */
export async function writeAcl(c: Conn, ino: number, name: string, acl: Acl | null): Promise<void> {
  const bit = aclBit(name)
  if (acl) {
    await c.run('INSERT INTO xattrs (ino, name, value) VALUES (?, ?, ?) ON CONFLICT (ino, name) DO UPDATE SET value = excluded.value', [ino, name, serializeAcl(acl)])
    await c.run('UPDATE inodes SET acl = acl | ? WHERE ino = ?', [bit, ino])
  } else {
    await c.run('DELETE FROM xattrs WHERE ino = ? AND name = ?', [ino, name])
    await c.run('UPDATE inodes SET acl = acl & ? WHERE ino = ?', [~bit & 0xff, ino])
  }
}

/**
 * setxattr of an ACL name (the kernel's set_acl): the value is checked as the
 * kernel checks one; an access ACL sets the mode's permission bits and is
 * kept only when it says more than them; a default ACL is for directories
 * (EACCES on anything else, as on a local disk). Returns the inode's new mode.
 */
export async function setAclXattr(c: Conn, row: InodeRow, name: string, value: Uint8Array): Promise<number> {
  const acl = parseAcl(value)
  if (name === ACL_DEFAULT) {
    if (!isDir(row.mode)) {
      if (acl) throw fsError('EACCES', 'a default ACL is for directories only')
      return row.mode
    }
    await writeAcl(c, row.ino, ACL_DEFAULT, acl)
    return row.mode
  }
  if (!acl) {
    await writeAcl(c, row.ino, ACL_ACCESS, null)
    return row.mode
  }
  const { mode, extended } = modeFromAcl(acl, row.mode)
  await writeAcl(c, row.ino, ACL_ACCESS, extended ? acl : null)
  if (mode !== row.mode) await c.run('UPDATE inodes SET mode = ? WHERE ino = ?', [mode, row.ino])
  return mode
}

/** After a chmod: the access ACL's owner, mask (or group) and other entries take the new mode's bits. */
export async function chmodAcl(c: Conn, row: InodeRow, mode: number): Promise<void> {
  if (!(row.acl & HAS_ACCESS_ACL)) return
  const acl = await readAcl(c, row.ino, ACL_ACCESS)
  if (acl) await writeAcl(c, row.ino, ACL_ACCESS, aclAfterChmod(acl, mode))
}
