import { fsError } from './errors'

/** Longest directory entry name, in the kernel's bytes, as on Linux (NAME_MAX). */
export const NAME_MAX = 255
/** Longest symlink target, in bytes (PATH_MAX). */
export const PATH_MAX = 4096
/** Longest xattr name and value (Linux XATTR_NAME_MAX / XATTR_SIZE_MAX). */
export const XATTR_NAME_MAX = 255
export const XATTR_SIZE_MAX = 65536

/**
 * The escape the FUSE binding writes for a byte of a name that is not UTF-8
 * (client/native/berth-fuse.c, name_str): U+F700 then U+F700 + the byte, and
 * U+F700 doubled where it stands before something that would read as an
 * escape. Meta keeps names as text; the kernel's bytes come back unchanged.
 */
const ESC = 0xf700

/**
 * Bytes of a name (or symlink target, or xattr name) as the kernel has them:
 * its UTF-8 bytes, each escape pair counted as what it stands for (NAME_MAX,
 * PATH_MAX and a symlink's st_size are of those bytes).
 */
export function kernelBytes(name: string): number {
  let n = Buffer.byteLength(name, 'utf8')
  if (!name.includes('\uf700')) return n
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) !== ESC) continue
    const next = name.charCodeAt(i + 1)
    if (next === ESC) {
      n -= 3 // U+F700 U+F700: one U+F700 (3 bytes), written as 6
      i++
    } else if (next >= ESC + 0x80 && next <= ESC + 0xff) {
      n -= 5 // one raw byte, written as 6
      i++
    }
  }
  return n
}

/** Throws EINVAL / ENAMETOOLONG for names a directory entry may not have. */
export function validateName(name: unknown): string {
  if (typeof name !== 'string') throw fsError('EINVAL', 'name must be a string')
  if (name.length === 0) throw fsError('ENOENT', 'empty name')
  if (name === '.' || name === '..') throw fsError('EINVAL', `name may not be "${name}"`)
  if (name.includes('/')) throw fsError('EINVAL', 'name may not contain "/"')
  if (name.includes('\0')) throw fsError('EINVAL', 'name may not contain NUL')
  if (kernelBytes(name) > NAME_MAX) {
    throw fsError('ENAMETOOLONG', `name is longer than ${NAME_MAX} bytes`)
  }
  return name
}

/** A block is named by the lowercase hex SHA-256 of its bytes. */
export const BLOCK_HASH_RE = /^[0-9a-f]{64}$/

export function isBlockHash(value: unknown): value is string {
  return typeof value === 'string' && BLOCK_HASH_RE.test(value)
}
