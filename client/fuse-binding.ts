/**
 * The typed surface of berth's native FUSE binding (client/native/berth-fuse.c,
 * built by node-gyp at `npm install` into build/Release/berth_fuse.node).
 *
 * Contract: the addon calls `dispatch(op, slot, ...args)` on the JS thread for
 * every request; JS answers each slot exactly once, with one reply* call,
 * whenever it likes. Every reply is written to the kernel before the call
 * returns, so buffers passed in may be reused right after.
 */
import { addonPath } from '../common/native-addon'

/** Opcodes, as in berth-fuse.c's enum. */
export const OP = {
  LOOKUP: 1, GETATTR: 2, SETATTR: 3, READLINK: 4, MKNOD: 5, MKDIR: 6, UNLINK: 7,
  RMDIR: 8, SYMLINK: 9, RENAME: 10, LINK: 11, OPEN: 12, READ: 13, WRITE: 14, FLUSH: 15,
  RELEASE: 16, FSYNC: 17, OPENDIR: 18, READDIR: 19, RELEASEDIR: 20, STATFS: 21, SETXATTR: 22,
  GETXATTR: 23, LISTXATTR: 24, REMOVEXATTR: 25, CREATE: 26, FALLOCATE: 27, FORGET: 28,
  COPY_FILE_RANGE: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32, FLOCK: 33,
  /** (slot of a waiting SETLK or FLOCK): the kernel interrupted it (a signal); no slot of its own. */
  INTERRUPT: 34,
  /** (ino, fh, offset, whence): SEEK_DATA or SEEK_HOLE only; answered with replyLseek. */
  LSEEK: 35,
} as const

/** fcntl lock types (struct flock l_type on Linux). */
export const F_LOCK = { RDLCK: 0, WRLCK: 1, UNLCK: 2 } as const
/** flock(2) operations. */
export const LOCK_OP = { SH: 1, EX: 2, NB: 4, UN: 8 } as const

/** Layout of the Float64Array an attribute travels in. */
export const A = {
  INO: 0, MODE: 1, NLINK: 2, UID: 3, GID: 4, RDEV: 5, SIZE: 6, BLOCKS: 7, ATIME: 8, ATIME_NS: 9,
  MTIME: 10, MTIME_NS: 11, CTIME: 12, CTIME_NS: 13, BLKSIZE: 14,
  /** Which POSIX ACLs the inode has (Attr.acl): the binding answers "none" itself (berth-fuse.c acl_note). */
  ACL: 15,
} as const
export const ATTR_FIELDS = 16

/**
 * replyOpen/replyCreate flags (client/native/berth-fuse.c fill_open). NO_FLUSH
 * (FOPEN_NOFLUSH, Linux 5.15+; older kernels ignore it): close() of the handle
 * sends no FLUSH, for read-only opens, whose close has nothing to commit.
 */
export const OPEN_FLAGS = { DIRECT_IO: 1, KEEP_CACHE: 2, CACHE_DIR: 4, NO_FLUSH: 8 } as const

/**
 * mount()'s flags. LOCAL_LOCKS: decline POSIX_LOCKS and FLOCK_LOCKS, so the
 * kernel keeps locks itself. PASSTHROUGH: take FUSE_PASSTHROUGH if the kernel
 * offers it (client/passthrough.ts).
 */
export const MOUNT_FLAGS = { LOCAL_LOCKS: 1, ACL: 2, PASSTHROUGH: 4 } as const

/** setattr's to_set bits (fuse_lowlevel.h). */
export const SET = { MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8 } as const

export type Dispatch = (op: number, slot: number, ...args: Array<number | string | Buffer>) => void

export interface FuseBinding {
  /** Mounts and starts polling /dev/fuse; throws on failure. `options`: "-o" list without the "-o". */
  mount(mountpoint: string, options: string, maxWrite: number, dispatch: Dispatch, onExit: () => void, onAck: (ino: number) => void, flags: number): void
  /** Stops polling and unmounts if still mounted. Safe to call twice. */
  unmount(): void
  replyErr(slot: number, errno: number): void
  replyEntry(slot: number, attr: Float64Array, entryTimeout: number, attrTimeout: number): void
  /** false: the caller is gone (interrupted), no release will come for `fh`. */
  replyCreate(slot: number, attr: Float64Array, entryTimeout: number, attrTimeout: number, fh: number, flags: number): boolean
  replyAttr(slot: number, attr: Float64Array, timeout: number): void
  /** With `backingId` (from backingOpen) and the OPEN's `unique` (its third argument): opened in passthrough mode. */
  replyOpen(slot: number, fh: number, flags: number, backingId?: number, unique?: number): boolean
  replyBuf(slot: number, data: Buffer, length: number): void
  replyWrite(slot: number, count: number): void
  /** lseek's answer: the offset found. */
  replyLseek(slot: number, offset: number): void
  replyReadlink(slot: number, target: string): void
  /** F_GETLK's answer: `type` F_LOCK.*, `end` inclusive or -1 (to the end of the file). */
  replyLock(slot: number, type: number, start: number, end: number, pid: number): void
  /** [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax] */
  replyStatfs(slot: number, values: Float64Array): void
  replyXattr(slot: number, size: number): void
  /** Returns how many entries fit in `size` bytes. */
  replyDir(slot: number, size: number, plus: number, names: string[], attrs: Float64Array, offsets: Float64Array, entryTimeout: number, attrTimeout: number): number
  /** Queued to the binding's notifier thread (never blocks the JS thread); with `ack`, onAck(ino) follows when done. */
  notifyInvalInode(ino: number, ack: number): void
  notifyInvalEntry(parent: number, name: string): void
  /** Queued like notifyInvalInode: the kernel drops its pages of [off, off + len) (len 0: to the end) and its attributes. */
  notifyInvalRange(ino: number, off: number, len: number): void
  /** The kernel's bytes of a name as JS holds it (names that are not UTF-8 are escaped in JS: common/names.ts). */
  rawName(name: string): Buffer
  /** Whether the kernel took POSIX ACLs at INIT (asked with MOUNT_FLAGS.ACL): it enforces them and sends umasks. */
  aclGranted(): boolean
  /** The mount asked for passthrough (MOUNT_FLAGS.PASSTHROUGH) and the kernel offered it at INIT. */
  passthroughGranted(): boolean
  /** Registers an open local file as a backing file (FUSE_DEV_IOC_BACKING_OPEN, needs CAP_SYS_ADMIN): its id. Throws with the errno's code. */
  backingOpen(fd: number): number
  /** Drops a backing id; files opened on it keep their backing file. */
  backingClose(id: number): void
}

export function loadBinding(): FuseBinding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(addonPath('berth_fuse.node')) as FuseBinding
}
