import { fsError } from './errors'

/** Longest directory entry name, in bytes of UTF-8, as on Linux (NAME_MAX). */
export const NAME_MAX = 255
/** Longest symlink target, in bytes (PATH_MAX). */
export const PATH_MAX = 4096
/** Longest xattr name and value (Linux XATTR_NAME_MAX / XATTR_SIZE_MAX). */
export const XATTR_NAME_MAX = 255
export const XATTR_SIZE_MAX = 65536

/** Throws EINVAL / ENAMETOOLONG for names a directory entry may not have. */
export function validateName(name: unknown): string {
  if (typeof name !== 'string') throw fsError('EINVAL', 'name must be a string')
  if (name.length === 0) throw fsError('ENOENT', 'empty name')
  if (name === '.' || name === '..') throw fsError('EINVAL', `name may not be "${name}"`)
  if (name.includes('/')) throw fsError('EINVAL', 'name may not contain "/"')
  if (name.includes('\0')) throw fsError('EINVAL', 'name may not contain NUL')
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX) {
    throw fsError('ENAMETOOLONG', `name is longer than ${NAME_MAX} bytes`)
  }
  return name
}

/** A block is named by the lowercase hex SHA-256 of its bytes. */
export const BLOCK_HASH_RE = /^[0-9a-f]{64}$/

export function isBlockHash(value: unknown): value is string {
  return typeof value === 'string' && BLOCK_HASH_RE.test(value)
}
