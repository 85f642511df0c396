/**
 * fuse-native -> Vfs. Only translation lives here: every handler goes through
 * `op()`, which runs the VFS call, maps a failure to a negative errno
 * (unknown errors become EIO and are logged with their stack), counts it and
 * calls back. fuse-native's write buffer belongs to libfuse and is valid only
 * until the callback, so it is copied before anything async happens.
 */
import { dirname } from 'node:path'
import Fuse = require('fuse-native')
import type { FuseOps, FuseSignal, FuseStat } from 'fuse-native'
import { isErrorCode, toErrno, ERRNO } from '../common/errors'
import { isDir } from '../common/modes'
import type { Attr } from '../common/protocol'
import { logger } from '../common/log'
import type { Caller, Vfs } from './vfs'

const log = logger('client')

/** What the kernel gets in st_blksize: coreutils size their I/O by it. */
const BLKSIZE = 1024 * 1024
/** Unpatched fuse-native turns UTIME_NOW/UTIME_OMIT (tv_sec 0, nsec ~2^30) into this many ms. */
const UTIME_SENTINEL_MS = 1073
const UTIME_NOW = (1 << 30) - 1
const UTIME_OMIT = (1 << 30) - 2
const NO_ID = 0xffffffff
const DIR_SIZE = 4096


export function toFuseStat(a: Attr): FuseStat {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    // directories report a block's worth, as local filesystems do, so tools
    // comparing trees (and ls -l) see familiar numbers
    size: isDir(a.mode) ? DIR_SIZE : a.size,
    nlink: a.nlink,
    // fuse-native passes 32-bit inode numbers (docs/semantics.md#limits)
    ino: a.ino >>> 0,
    rdev: a.rdev,
    blksize: BLKSIZE,
    blocks: Math.ceil((isDir(a.mode) ? DIR_SIZE : a.size) / 512),
    atime: a.atime[0] * 1000 + Math.floor(a.atime[1] / 1e6),
    mtime: a.mtime[0] * 1000 + Math.floor(a.mtime[1] / 1e6),
    ctime: a.ctime[0] * 1000 + Math.floor(a.ctime[1] / 1e6),
  }
}

/** A time for utimens: exact, the caller's clock, or undefined = leave it (UTIME_OMIT). */
export type TimeArg = [number, number] | 'now' | undefined

function msToTime(ms: number): TimeArg {
  if (ms === UTIME_SENTINEL_MS) return 'now'
  const sec = Math.floor(ms / 1000)
  return [sec, Math.round((ms - sec * 1000) * 1e6)]
}

function timespecToTime(sec: number, nsec: number): TimeArg {
  if (nsec === UTIME_NOW) return 'now'
  if (nsec === UTIME_OMIT) return undefined
  return [sec, nsec]
}

/**
 * 2 when fuse-native carries berth's null-path and exact-utimens patch
 * (tools/patch-fuse-native.js); 0 for an unpatched build.
 */
function bindingPatchLevel(): number {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = require('node-gyp-build') as (dir: string) => { fuse_native_berth_patch_level?: () => number }
  const binding = load(dirname(require.resolve('fuse-native/package.json')))
  return typeof binding.fuse_native_berth_patch_level === 'function' ? binding.fuse_native_berth_patch_level() : 0
}

export const patchLevel = bindingPatchLevel()

/**
 * With the null-path patch, ops on an unlinked-but-open file arrive with path
 * "". Handle-based ops use the handle; a path-based op (chmod, chown, utimens
 * via f*() on such a file) has nothing to resolve and must not fall back to the
 * root: it fails with ENOENT, as libfuse answered before the patch.
 */
function named(path: string): string {
  if (path === '') throw Object.assign(new Error('no path: the file was unlinked'), { code: 'ENOENT' })
  return path
}

/** The caller of the current op, if the binding exposes it; else the mount's own ids. */
export type CallerOf = () => Caller

/** Hears every finished op (client/metrics.ts); `value` is the result (bytes for read/write). */
export type OpObserver = (name: string, seconds: number, errno: number, value: unknown) => void
let observer: OpObserver | undefined
export function observeOps(fn: OpObserver | undefined): void {
  observer = fn
}

/** BERTH_TRACE=1: every op and its time in ms on stderr (README, Troubleshooting). */
const TRACE = process.env.BERTH_TRACE === '1'

/** Runs `fn`, reports success as `done(0, result)` or failure as a negative errno; times it for the trace and metrics. */
function op<T>(name: string, fn: () => Promise<T>, done: (errno: number, value?: T) => void): void {
  const timed = TRACE || observer !== undefined
  const started = timed ? process.hrtime.bigint() : 0n
  const finished = (errno: number, value: unknown) => {
    if (!timed) return
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    if (TRACE) process.stderr.write(`${name} ${(seconds * 1000).toFixed(2)}${errno ? ` ${errno}` : ''}\n`)
    observer?.(name, seconds, errno, value)
  }
  fn().then(
    (value) => {
      finished(0, value)
      done(0, value)
    },
    (err: unknown) => {
      finished(toErrno(err), undefined)
      const code = (err as { code?: unknown } | null)?.code
      if (!isErrorCode(code)) log.error(`${name} failed`, err)
      else if (code === 'EIO' || code === 'ETIMEDOUT') log.warn(`${name}: ${(err as Error).message}`)
      done(toErrno(err))
    },
  )
}

/**
 * Reused copies of FUSE write buffers. A sequential write is a stream of
 * max_write (128 KiB) requests; a fresh buffer for each made about a third of
 * the client's CPU garbage collection. Safe because Vfs.write copies the bytes
 * into its chunk buffers and keeps no reference once it resolves.
 */
class BufferPool {
  private readonly free: Buffer[] = []

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(len: number): Buffer {
    if (len > this.size) return Buffer.allocUnsafe(len)
    return (this.free.pop() ?? Buffer.allocUnsafe(this.size)).subarray(0, len)
  }

  give(b: Buffer): void {
    if (b.buffer.byteLength !== this.size || this.free.length >= this.keep) return
    this.free.push(Buffer.from(b.buffer, b.byteOffset, this.size))
  }
}

const writeBuffers = new BufferPool(128 * 1024, 32)

export function fuseOps(vfs: Vfs, callerOf: CallerOf): FuseOps {
  return {
    getattr: (path, cb) => op('getattr', async () => toFuseStat(await vfs.getattr(path)), cb),
    fgetattr: (path, fd, cb) => op('fgetattr', async () => toFuseStat(fd ? await vfs.fgetattr(fd) : await vfs.getattr(named(path))), cb),
    access: (path, _mode, cb) => op('access', async () => void (await vfs.getattr(named(path))), cb),
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
      const data = writeBuffers.take(len)
      buf.copy(data, 0, 0, len)
      op(
        'write',
        () => vfs.write(fd, data, pos),
        (err, n) => {
          writeBuffers.give(data)
          cb(err < 0 ? err : (n ?? 0))
        },
      )
    },
    flush: (_path, fd, cb) => op('flush', () => vfs.flush(fd), cb),
    fsync: (_path, _datasync, fd, cb) => op('fsync', () => vfs.fsync(fd), cb),
    release: (_path, fd, cb) => op('release', () => vfs.release(fd), cb),
    truncate: (path, size, cb) => op('truncate', () => vfs.truncate(named(path), size), cb),
    ftruncate: (path, fd, size, cb) => op('ftruncate', () => (fd ? vfs.ftruncate(fd, size) : vfs.truncate(named(path), size)), cb),
    readlink: (path, cb) => op('readlink', () => vfs.readlink(path), cb),
    chown: (path, uid, gid, cb) => op('chown', () => vfs.chown(named(path), uid === NO_ID ? undefined : uid, gid === NO_ID ? undefined : gid), cb),
    chmod: (path, mode, cb) => op('chmod', () => vfs.chmod(named(path), mode), cb),
    mknod: (path, mode, dev, cb) => op('mknod', async () => void (await vfs.mknod(path, mode, dev, callerOf())), cb),
    // only for an unpatched binding, which hands JS the atime twice in ms; the
    // patched one reaches utimensExact through BerthFuse._op_utimens
    utimens: (path, atime, mtime, cb) => op('utimens', () => vfs.utimens(named(path), msToTime(atime), msToTime(mtime)), cb),
    unlink: (path, cb) => op('unlink', () => vfs.unlink(path), cb),
    rename: (src, dest, cb) => op('rename', () => vfs.rename(src, dest), cb),
    link: (src, dest, cb) => op('link', async () => void (await vfs.link(src, dest)), cb),
    symlink: (target, path, cb) => op('symlink', async () => void (await vfs.symlink(target, path, callerOf())), cb),
    mkdir: (path, mode, cb) => op('mkdir', async () => void (await vfs.mkdir(path, mode, callerOf())), cb),
    rmdir: (path, cb) => op('rmdir', () => vfs.rmdir(path), cb),
    setxattr: (path, name, value, _position, flags, cb) => {
      const copy = Buffer.from(value)
      op('setxattr', () => vfs.setxattr(named(path), name, copy, flags), cb)
    },
    getxattr: (path, name, _position, cb) => op('getxattr', () => vfs.getxattr(named(path), name), cb),
    listxattr: (path, cb) => op('listxattr', () => vfs.listxattr(named(path)), cb),
    removexattr: (path, name, cb) => op('removexattr', () => vfs.removexattr(named(path), name), cb),
  }
}

type UtimensExact = (path: string, atime: TimeArg, mtime: TimeArg, cb: (errno: number) => void) => void

export function utimensExact(vfs: Vfs): UtimensExact {
  return (path, atime, mtime, cb) => op('utimens', () => vfs.utimens(named(path), atime, mtime), cb)
}

export interface MountOptions {
  allowOther: boolean
  /** Mount over a non-empty directory (`-o nonempty`). */
  nonempty?: boolean
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
    private readonly handlers: FuseOps,
    private readonly extra: string[],
    opts: ConstructorParameters<typeof Fuse>[2],
  ) {
    super(mnt, handlers, opts)
  }

  /**
   * fuse-native's own version calls getattr(path) and drops the handle, so
   * fstat of an unlinked-but-open file (path "") would stat the root.
   */
  override _op_fgetattr(signal: (errno: number, stat?: Uint32Array) => void, path: string, fd: number): void {
    const fgetattr = this.handlers.fgetattr
    if (!fgetattr) return signal(-ERRNO.ENOSYS)
    fgetattr(path, fd, (err, stat) => (err || !stat ? signal(err || -ERRNO.EIO) : signal(0, statArray(stat))))
  }

  override _fuseOptions(): string {
    const base = super._fuseOptions()
    const list = base ? base.slice(2).split(',') : []
    return '-o' + [...list, ...this.extra].join(',')
  }
}

/** For a patched binding, whose utimens passes each time as (sec, nsec). */
class PatchedBerthFuse extends BerthFuse {
  constructor(
    mnt: string,
    ops: FuseOps,
    extra: string[],
    opts: ConstructorParameters<typeof Fuse>[2],
    private readonly utimens: UtimensExact,
  ) {
    super(mnt, ops, extra, opts)
  }

  /** Replaces fuse-native's own handler, which would read the pairs as ms. */
  _op_utimens(signal: (errno: number) => void, path: string, aSec: number, aNsec: number, mSec: number, mNsec: number): void {
    this.utimens(path, timespecToTime(aSec, aNsec), timespecToTime(mSec, mNsec), signal)
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
  // libfuse 2 refuses a non-empty mountpoint unless told; berth checks first (client/mountpoint-check.ts)
  if (o.nonempty) extra.push('nonempty')
  const opts = { timeout: o.opTimeoutMs, allowOther: o.allowOther, defaultPermissions: true, fsname: 'berth', subtype: 'berth' }
  if (patchLevel >= 2) return new PatchedBerthFuse(mountpoint, fuseOps(vfs, callerOf), extra, opts, utimensExact(vfs))
  log.warn('fuse-native lacks berth\'s null-path/utimens patch (run tools/patch-fuse-native.js): unlinked open files and utimens misbehave')
  return new BerthFuse(mountpoint, fuseOps(vfs, callerOf), extra, opts)
}

/** fuse-native's stat layout (index.js getStatArray, not exported): 64-bit values as low, high. */
function statArray(s: FuseStat): Uint32Array {
  const ints = new Uint32Array(18)
  const wide = (idx: number, n: number) => {
    ints[idx] = n % 4294967296
    ints[idx + 1] = Math.floor(n / 4294967296)
  }
  ints[0] = s.mode
  ints[1] = s.uid
  ints[2] = s.gid
  wide(3, s.size)
  ints[5] = 0
  ints[6] = s.nlink
  ints[7] = s.ino
  ints[8] = s.rdev
  ints[9] = s.blksize
  wide(10, s.blocks)
  wide(12, s.atime)
  wide(14, s.mtime)
  wide(16, s.ctime)
  return ints
}

export const EIO = -ERRNO.EIO
