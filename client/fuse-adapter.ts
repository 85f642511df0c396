/**
 * fuse-native -> Vfs. Only translation lives here: every handler goes through
 * `op()`, which runs the VFS call, maps a failure to a negative errno
 * (unknown errors become EIO and are logged with their stack), counts it and
 * calls back. fuse-native's write buffer belongs to libfuse and is valid only
 * until the callback, so it is copied before anything async happens.
 */
import Fuse = require('fuse-native')
import type { FuseOps, FuseStat } from 'fuse-native'
import { isErrorCode, toErrno, ERRNO } from '../common/errors'
import type { Attr } from '../common/protocol'
import { logger } from '../common/log'
import type { Caller, Vfs } from './vfs'

const log = logger('client')

/** What the kernel gets in st_blksize: coreutils size their I/O by it. */
const BLKSIZE = 1024 * 1024
/** fuse-native turns UTIME_NOW/UTIME_OMIT (tv_sec 0, nsec ~2^30) into this many ms. */
const UTIME_SENTINEL_MS = 1073
const NO_ID = 0xffffffff
const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const DIR_SIZE = 4096

export const opCounts = new Map<string, { calls: number; errors: number }>()

export function toFuseStat(a: Attr): FuseStat {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    // directories report a block's worth, as local filesystems do, so tools
    // comparing trees (and ls -l) see familiar numbers
    size: (a.mode & S_IFMT) === S_IFDIR ? DIR_SIZE : a.size,
    nlink: a.nlink,
    // fuse-native passes 32-bit inode numbers (docs/semantics.md#limits)
    ino: a.ino >>> 0,
    rdev: a.rdev,
    blksize: BLKSIZE,
    blocks: Math.ceil(((a.mode & S_IFMT) === S_IFDIR ? DIR_SIZE : a.size) / 512),
    atime: a.atime[0] * 1000 + Math.floor(a.atime[1] / 1e6),
    mtime: a.mtime[0] * 1000 + Math.floor(a.mtime[1] / 1e6),
    ctime: a.ctime[0] * 1000 + Math.floor(a.ctime[1] / 1e6),
  }
}

function msToTime(ms: number): [number, number] | 'now' {
  if (ms === UTIME_SENTINEL_MS) return 'now'
  const sec = Math.floor(ms / 1000)
  return [sec, Math.round((ms - sec * 1000) * 1e6)]
}

/** The caller of the current op, if the binding exposes it; else the mount's own ids. */
export type CallerOf = () => Caller

function count(name: string, failed: boolean): void {
  let c = opCounts.get(name)
  if (!c) opCounts.set(name, (c = { calls: 0, errors: 0 }))
  c.calls++
  if (failed) c.errors++
}

/** Hears every finished op (client/metrics.ts); `value` is the result (bytes for read/write). */
export type OpObserver = (name: string, seconds: number, errno: number, value: unknown) => void
let observer: OpObserver | undefined
export function observeOps(fn: OpObserver | undefined): void {
  observer = fn
}

/** Runs `fn`, reports success as `ok(result)` or failure as a negative errno. */
function op<T>(name: string, fn: () => Promise<T>, done: (errno: number, value?: T) => void): void {
  const started = observer ? process.hrtime.bigint() : 0n
  const took = () => Number(process.hrtime.bigint() - started) / 1e9
  fn().then(
    (value) => {
      count(name, false)
      observer?.(name, took(), 0, value)
      done(0, value)
    },
    (err: unknown) => {
      count(name, true)
      observer?.(name, took(), toErrno(err), undefined)
      const code = (err as { code?: unknown } | null)?.code
      if (!isErrorCode(code)) log.error(`${name} failed`, err)
      else if (code === 'EIO' || code === 'ETIMEDOUT') log.warn(`${name}: ${(err as Error).message}`)
      done(toErrno(err))
    },
  )
}

export function fuseOps(vfs: Vfs, callerOf: CallerOf): FuseOps {
  return {
    getattr: (path, cb) => op('getattr', async () => toFuseStat(await vfs.getattr(path)), cb),
    fgetattr: (path, fd, cb) => op('fgetattr', async () => toFuseStat(fd ? await vfs.fgetattr(fd) : await vfs.getattr(path)), cb),
    access: (path, _mode, cb) => op('access', async () => void (await vfs.getattr(path)), cb),
    statfs: (_path, cb) =>
      op(
        'statfs',
        async () => {
          const s = await vfs.statfs()
          return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: s.namemax }
        },
        cb,
      ),
    readdir: (path, cb) =>
      op(
        'readdir',
        async () => {
          const entries = await vfs.readdir(path)
          return entries
        },
        (err, entries) => {
          if (err || !entries) return cb(err)
          cb(0, entries.map((e) => e.name), entries.map((e) => toFuseStat(e.attr)))
        },
      ),
    open: (path, flags, cb) => op('open', () => vfs.open(path, flags), cb),
    // fuse-native does not pass create's flags; O_ACCMODE = O_WRONLY|O_RDWR is assumed
    create: (path, mode, cb) => op('create', () => vfs.create(path, mode, 2, callerOf()), cb),
    read: (_path, fd, buf, len, pos, cb) => op('read', () => vfs.read(fd, buf, len, pos), (err, n) => cb(err < 0 ? err : (n ?? 0))),
    write: (_path, fd, buf, len, pos, cb) => {
      const data = Buffer.allocUnsafe(len)
      buf.copy(data, 0, 0, len)
      op('write', () => vfs.write(fd, data, pos), (err, n) => cb(err < 0 ? err : (n ?? 0)))
    },
    flush: (_path, fd, cb) => op('flush', () => vfs.flush(fd), cb),
    fsync: (_path, _datasync, fd, cb) => op('fsync', () => vfs.fsync(fd), cb),
    release: (_path, fd, cb) => op('release', () => vfs.release(fd), cb),
    truncate: (path, size, cb) => op('truncate', () => vfs.truncate(path, size), cb),
    ftruncate: (path, fd, size, cb) => op('ftruncate', () => (fd ? vfs.ftruncate(fd, size) : vfs.truncate(path, size)), cb),
    readlink: (path, cb) => op('readlink', () => vfs.readlink(path), cb),
    chown: (path, uid, gid, cb) => op('chown', () => vfs.chown(path, uid === NO_ID ? undefined : uid, gid === NO_ID ? undefined : gid), cb),
    chmod: (path, mode, cb) => op('chmod', () => vfs.chmod(path, mode), cb),
    mknod: (path, mode, dev, cb) => op('mknod', async () => void (await vfs.mknod(path, mode, dev, callerOf())), cb),
    // fuse-native hands JS the atime twice (docs/semantics.md#limits): both times get it
    utimens: (path, atime, mtime, cb) => op('utimens', () => vfs.utimens(path, msToTime(atime), msToTime(mtime)), cb),
    unlink: (path, cb) => op('unlink', () => vfs.unlink(path), cb),
    rename: (src, dest, cb) => op('rename', () => vfs.rename(src, dest), cb),
    link: (src, dest, cb) => op('link', async () => void (await vfs.link(src, dest)), cb),
    symlink: (target, path, cb) => op('symlink', async () => void (await vfs.symlink(target, path, callerOf())), cb),
    mkdir: (path, mode, cb) => op('mkdir', async () => void (await vfs.mkdir(path, mode, callerOf())), cb),
    rmdir: (path, cb) => op('rmdir', () => vfs.rmdir(path), cb),
    setxattr: (path, name, value, _position, flags, cb) => {
      const copy = Buffer.from(value)
      op('setxattr', () => vfs.setxattr(path, name, copy, flags), cb)
    },
    getxattr: (path, name, _position, cb) => op('getxattr', () => vfs.getxattr(path, name), cb),
    listxattr: (path, cb) => op('listxattr', () => vfs.listxattr(path), cb),
    removexattr: (path, name, cb) => op('removexattr', () => vfs.removexattr(path, name), cb),
  }
}

export interface MountOptions {
  allowOther: boolean
  readOnly: boolean
  /** fuse-native's per-op timeout; must exceed the cluster deadline. */
  opTimeoutMs: number
  /** How long the kernel trusts a name -> inode mapping. */
  entryTimeoutS: number
}

/**
 * fuse-native's own option list lacks big_writes, max_write, use_ino,
 * hard_remove and negative_timeout: they are appended here.
 */
class BerthFuse extends Fuse {
  constructor(
    mnt: string,
    ops: FuseOps,
    private readonly extra: string[],
    opts: ConstructorParameters<typeof Fuse>[2],
  ) {
    super(mnt, ops, opts)
  }

  override _fuseOptions(): string {
    const base = super._fuseOptions()
    const list = base ? base.slice(2).split(',') : []
    return '-o' + [...list, ...this.extra].join(',')
  }
}

export function createFuse(mountpoint: string, vfs: Vfs, callerOf: CallerOf, o: MountOptions): Fuse {
  const extra = ['big_writes', 'max_write=131072', 'max_read=131072', 'use_ino', 'hard_remove', 'negative_timeout=0', `entry_timeout=${o.entryTimeoutS}`,
    // High-level libfuse gives each path its own kernel inode, so hard links
    // are separate kernel inodes: any kernel attribute caching would let one
    // name show a stale size after a write through another. Attributes are
    // cached in this process instead (docs/semantics.md#caching).
    'attr_timeout=0']
  if (o.readOnly) extra.push('ro')
  return new BerthFuse(mountpoint, fuseOps(vfs, callerOf), extra, {
    timeout: o.opTimeoutMs,
    allowOther: o.allowOther,
    defaultPermissions: true,
    fsname: 'berth',
    subtype: 'berth',
  })
}

export const EIO = -ERRNO.EIO
