/**
 * POSIX ACLs (acl(5)) as Linux keeps them in the `system.posix_acl_access`
 * and `system.posix_acl_default` xattrs, and the rules a file system applies
 * with them: the kernel enforces an ACL in its permission checks
 * (FUSE_CAP_POSIX_ACL), while keeping the mode and the ACL in step on chmod,
 * on a set ACL and on a create under a default ACL is the file system's job.
 * Each rule follows fs/posix_acl.c (posix_acl_valid, posix_acl_equiv_mode,
 * __posix_acl_chmod, posix_acl_create_masq). Meta applies them; a mount
 * predicting a create ahead of meta applies the same (client/vfs.ts makeAhead,
 * only where the directory has no default ACL).
 *
 * The xattr value: a little-endian u32 version (2), then one entry of 8 bytes
 * per entry (u16 tag, u16 perm, u32 id; the id is 0xffffffff where the tag
 * has none), in the order posix_acl_valid requires.
 */
import { fsError } from './errors'

export const ACL_ACCESS = 'system.posix_acl_access'
export const ACL_DEFAULT = 'system.posix_acl_default'

/** Bits of an inode's `acl` (meta/schema.ts v12, Attr.acl): which of its two ACLs it has. */
export const HAS_ACCESS_ACL = 1
export const HAS_DEFAULT_ACL = 2

export const ACL_USER_OBJ = 0x01
export const ACL_USER = 0x02
export const ACL_GROUP_OBJ = 0x04
export const ACL_GROUP = 0x08
export const ACL_MASK = 0x10
export const ACL_OTHER = 0x20

const VERSION = 2
const HEADER = 4
const ENTRY = 8
const NO_ID = 0xffffffff
/** A mode's permission bits for the owner, the group and others. */
const S_IRWXUGO = 0o777

export interface AclEntry {
  tag: number
  perm: number
  /** The user or group of an ACL_USER or ACL_GROUP entry; NO_ID otherwise. */
  id: number
}

export type Acl = AclEntry[]

export function isAclName(name: string): boolean {
  return name === ACL_ACCESS || name === ACL_DEFAULT
}

/** The inode `acl` bit an ACL xattr name sets. */
export function aclBit(name: string): number {
  return name === ACL_DEFAULT ? HAS_DEFAULT_ACL : HAS_ACCESS_ACL
}

/** Where each tag may stand: posix_acl_valid's order. */
const RANK: ReadonlyMap<number, number> = new Map([
  [ACL_USER_OBJ, 0],
  [ACL_USER, 1],
  [ACL_GROUP_OBJ, 2],
  [ACL_GROUP, 3],
  [ACL_MASK, 4],
  [ACL_OTHER, 5],
])

/**
 * An xattr value as an ACL, checked as the kernel checks one (EINVAL
 * otherwise): version 2, whole entries, the three base entries once each,
 * named entries in increasing id order with no duplicates, a mask when there
 * is any named entry. An empty value or no entries is null (remove the ACL, as
 * the kernel reads it).
 */
export function parseAcl(value: Uint8Array): Acl | null {
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (b.length < HEADER || (b.length - HEADER) % ENTRY !== 0) throw fsError('EINVAL', `an ACL is a 4-byte header and 8-byte entries, not ${b.length} bytes`)
  if (b.readUInt32LE(0) !== VERSION) throw fsError('EINVAL', `ACL version ${b.readUInt32LE(0)}, not ${VERSION}`)
  const acl: Acl = []
  for (let at = HEADER; at < b.length; at += ENTRY) acl.push({ tag: b.readUInt16LE(at), perm: b.readUInt16LE(at + 2), id: b.readUInt32LE(at + 4) })
  if (acl.length === 0) return null
  let rank = -1
  let lastId = -1
  let named = false
  let mask = false
  for (const e of acl) {
    const r = RANK.get(e.tag)
    if (r === undefined) throw fsError('EINVAL', `unknown ACL tag 0x${e.tag.toString(16)}`)
    if (e.perm & ~7) throw fsError('EINVAL', `ACL permission ${e.perm} is more than rwx`)
    const isNamed = e.tag === ACL_USER || e.tag === ACL_GROUP
    if (r < rank || (r === rank && !isNamed)) throw fsError('EINVAL', 'ACL entries out of order or repeated')
    if (isNamed) {
      if (e.id === NO_ID) throw fsError('EINVAL', 'a named ACL entry without an id')
      if (r === rank && e.id <= lastId) throw fsError('EINVAL', 'named ACL entries out of order or repeated')
      lastId = e.id
      named = true
    } else {
      e.id = NO_ID
    }
    if (e.tag === ACL_MASK) mask = true
    rank = r
  }
  const has = (tag: number) => acl.some((e) => e.tag === tag)
  if (!has(ACL_USER_OBJ) || !has(ACL_GROUP_OBJ) || !has(ACL_OTHER)) throw fsError('EINVAL', 'an ACL needs its user::, group:: and other:: entries')
  if (named && !mask) throw fsError('EINVAL', 'an ACL with named entries needs a mask')
  return acl
}

export function serializeAcl(acl: Acl): Buffer {
  const b = Buffer.alloc(HEADER + ENTRY * acl.length)
  b.writeUInt32LE(VERSION, 0)
  acl.forEach((e, i) => {
    const at = HEADER + i * ENTRY
    b.writeUInt16LE(e.tag, at)
    b.writeUInt16LE(e.perm, at + 2)
    b.writeUInt32LE(e.tag === ACL_USER || e.tag === ACL_GROUP ? e.id : NO_ID, at + 4)
  })
  return b
}

/**
 * The mode an access ACL sets (owner from user::, group from mask:: or else
 * group::, others from other::; the rest of `mode` kept), and whether the
 * ACL says more than that mode (posix_acl_equiv_mode): if not, the file keeps
 * no ACL.
 */
export function modeFromAcl(acl: Acl, mode: number): { mode: number; extended: boolean } {
  const perm = (tag: number) => acl.find((e) => e.tag === tag)?.perm ?? 0
  const group = acl.some((e) => e.tag === ACL_MASK) ? perm(ACL_MASK) : perm(ACL_GROUP_OBJ)
  const bits = (perm(ACL_USER_OBJ) << 6) | (group << 3) | perm(ACL_OTHER)
  return { mode: (mode & ~S_IRWXUGO) | bits, extended: isExtended(acl) }
}

/** Whether an ACL says more than a mode can: a named entry or a mask (posix_acl_equiv_mode's "not equivalent"). */
function isExtended(acl: Acl): boolean {
  return acl.some((e) => e.tag === ACL_USER || e.tag === ACL_GROUP || e.tag === ACL_MASK)
}

/** An access ACL after chmod to `mode` (__posix_acl_chmod): the mask (or group:: without one) takes the group bits. */
export function aclAfterChmod(acl: Acl, mode: number): Acl {
  const mask = acl.some((e) => e.tag === ACL_MASK)
  return acl.map((e) => {
    if (e.tag === ACL_USER_OBJ) return { ...e, perm: (mode >> 6) & 7 }
    if (e.tag === ACL_OTHER) return { ...e, perm: mode & 7 }
    if (e.tag === (mask ? ACL_MASK : ACL_GROUP_OBJ)) return { ...e, perm: (mode >> 3) & 7 }
    return e
  })
}

/**
 * A new inode's mode and ACLs in a directory whose default ACL is `dflt`
 * (posix_acl_create): with none, the creator's umask applies; with one, the
 * umask does not, the default ACL masked by the requested mode becomes the
 * access ACL (none when the result says no more than the mode), and a new
 * directory inherits the default ACL itself. Symlinks take neither.
 */
export function aclCreate(mode: number, umask: number, dflt: Acl | null, dir: boolean, symlink = false): { mode: number; access: Acl | null; dflt: Acl | null } {
  if (symlink) return { mode, access: null, dflt: null }
  if (!dflt) return { mode: mode & ~(umask & S_IRWXUGO), access: null, dflt: null }
  const acl = dflt.map((e) => ({ ...e }))
  let m = mode & S_IRWXUGO
  let groupObj: AclEntry | undefined
  let mask: AclEntry | undefined
  for (const e of acl) {
    if (e.tag === ACL_USER_OBJ) {
      e.perm &= m >> 6
      m &= (e.perm << 6) | ~0o700
    } else if (e.tag === ACL_OTHER) {
      e.perm &= m & 7
      m &= e.perm | ~0o7
    } else if (e.tag === ACL_GROUP_OBJ) groupObj = e
    else if (e.tag === ACL_MASK) mask = e
  }
  const g = mask ?? groupObj
  if (g) {
    g.perm &= (m >> 3) & 7
    m &= (g.perm << 3) | ~0o70
  }
  return { mode: (mode & ~S_IRWXUGO) | (m & S_IRWXUGO), access: isExtended(acl) ? acl : null, dflt: dir ? dflt : null }
}
