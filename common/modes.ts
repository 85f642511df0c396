/** File type and permission bits of `st_mode`, as Linux defines them; shared by meta, client and tools. */
export const S_IFMT = 0o170000
export const S_IFDIR = 0o040000
export const S_IFREG = 0o100000
export const S_IFLNK = 0o120000
export const S_IFIFO = 0o010000
export const S_IFSOCK = 0o140000
export const S_IFCHR = 0o020000
export const S_IFBLK = 0o060000
export const S_ISGID = 0o2000
export const PERM_BITS = 0o7777

export const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR
export const isReg = (mode: number) => (mode & S_IFMT) === S_IFREG
export const isLnk = (mode: number) => (mode & S_IFMT) === S_IFLNK

/**
 * Group and mode of a new entry in a directory (BSD/Linux semantics): under a
 * setgid directory it takes the directory's group, and a new directory keeps
 * the setgid bit. Meta applies it; a mount predicting a mkdir or create ahead
 * of meta applies the same.
 */
export function inheritedOwnership(parent: { mode: number; gid: number }, gid: number, mode: number): { gid: number; mode: number } {
  if (!(parent.mode & S_ISGID)) return { gid, mode }
  return { gid: parent.gid, mode: isDir(mode) ? mode | S_ISGID : mode }
}
