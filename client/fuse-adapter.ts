/**
 * berth's FUSE binding -> Vfs. Only translation lives here: every request goes
 * through `op()`, which runs the VFS call, maps a failure to an errno (unknown
 * errors become EIO and are logged with their stack), counts it and answers
 * the kernel with the binding's reply for that op. Node ids are berth's inode
 * numbers (root = 1 = FUSE_ROOT_ID), so the kernel caches entries and
 * attributes per inode, and hard links share one kernel inode.
 */
import { isErrorCode, toErrno, ERRNO } from '../common/errors'
import { isDir } from '../common/modes'
import { LOCK_EOF, type Attr } from '../common/protocol'
import { logger } from '../common/log'
import { A, ATTR_FIELDS, F_LOCK, LOCK_OP, MOUNT_FLAGS, OP, OPEN_FLAGS, SET, loadBinding, type FuseBinding } from './fuse-binding'
import type { LockRequest } from './locks'
import { Passthrough } from './passthrough'
import { O_ACCMODE, type Caller, type SetattrChange, type Vfs } from './vfs'

const log = logger('client')

/** Ends each name of a listxattr reply. */
const NUL = Buffer.from([0])
/** What the kernel gets in st_blksize: coreutils size their I/O by it. */
const BLKSIZE = 1024 * 1024
const DIR_SIZE = 4096
/** Largest read/write request asked of the kernel (max_pages follows). */
export const MAX_WRITE = 1024 * 1024
/** Longest an open waits for the kernel to drop an inode's cached attributes. */
const ACK_WAIT_MS = 100
const RENAME_NOREPLACE = 1
const RENAME_EXCHANGE = 2

/** Hears every finished op (client/metrics.ts); `value` is the result (bytes for read/write). */
export type OpObserver = (name: string, seconds: number, errno: number, value: unknown) => void
let observer: OpObserver | undefined
export function observeOps(fn: OpObserver | undefined): void {
  observer = fn
}

/** BERTH_TRACE=1: every op and its time in ms on stderr (README, Troubleshooting). */
const TRACE = process.env.BERTH_TRACE === '1'

export function fillAttr(out: Float64Array, at: number, a: Attr): void {
  // directories report a block's worth, as local filesystems do, so tools
  // comparing trees (and ls -l) see familiar numbers
  const size = isDir(a.mode) ? DIR_SIZE : a.size
  out[at + A.INO] = a.ino
  out[at + A.MODE] = a.mode
  out[at + A.NLINK] = a.nlink
  out[at + A.UID] = a.uid
  out[at + A.GID] = a.gid
  out[at + A.RDEV] = a.rdev
  out[at + A.SIZE] = size
  // meta's count of stored bytes (holes left out); size / 512 where unknown (dirty, older meta)
  out[at + A.BLOCKS] = a.blocks ?? Math.ceil(size / 512)
  out[at + A.ATIME] = a.atime[0]
  out[at + A.ATIME_NS] = a.atime[1]
  out[at + A.MTIME] = a.mtime[0]
  out[at + A.MTIME_NS] = a.mtime[1]
  out[at + A.CTIME] = a.ctime[0]
  out[at + A.CTIME_NS] = a.ctime[1]
  out[at + A.BLKSIZE] = BLKSIZE
  out[at + A.ACL] = a.acl ?? 0
}

/**
 * Reused buffers for read replies (up to max_write each). Safe because the
 * binding writes a reply to the kernel before replyBuf returns.
 */
class BufferPool {
  private readonly free: Buffer[] = []

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(len: number): Buffer {
    if (len > this.size) return Buffer.allocUnsafe(len)
    return this.free.pop() ?? Buffer.allocUnsafe(this.size)
  }

  give(b: Buffer): void {
    if (b.length === this.size && this.free.length < this.keep) this.free.push(b)
  }
}

export interface MountOptions {
  allowOther: boolean
  readOnly: boolean
  /** How long the kernel trusts a name -> inode mapping. */
  entryTimeoutS: number
  /** How long the kernel trusts attributes (meta's invalidations are pushed into it). */
  attrTimeoutS: number
  /**
   * `-o local_locks`: the kernel keeps locks on this machine (no lock op
   * reaches the mount), so a read-only close need not send FLUSH
   * (FOPEN_NOFLUSH): it has no lock owner to tell and nothing to commit.
   */
  localLocks?: boolean
  /** `-o acl`: POSIX ACLs asked of the kernel. */
  acl?: boolean
  /**
   * Whole-file local copies and FUSE passthrough of read-only opens to them
   * (client/passthrough.ts): the copies' folder and their total size. Off
   * when absent, or when the kernel does not offer passthrough.
   */
  localCopies?: { dir: string; maxBytes: number }
}

/** A mounted session: requests go to `vfs`; `invalidate*` push cache drops into the kernel. */
export class FuseSession {
  private readonly b: FuseBinding
  private readonly scratch = new Float64Array(ATTR_FIELDS)
  private readonly reads = new BufferPool(MAX_WRITE, 16)
  private mounted = false
  /** Opens waiting for the kernel to drop an inode's attributes: ino -> resolvers. */
  private readonly acks = new Map<number, Array<() => void>>()
  /** Slot of a waiting setlk/flock -> how to end its wait (a signal interrupted it). */
  private readonly lockWaits = new Map<number, AbortController>()
  /** Opens answered in passthrough mode, once the kernel offered it at INIT. */
  private pt: Passthrough | undefined
  private ptChecked = false

  constructor(
    private readonly vfs: Vfs,
    private readonly o: MountOptions,
  ) {
    this.b = loadBinding()
  }

  /** Mounts `mountpoint`; `onGone` runs once if the kernel ends the session (umount, fusermount -u). */
  mount(mountpoint: string, onGone: () => void): void {
    const opts = ['default_permissions', 'fsname=berth', 'subtype=berth', `max_read=${MAX_WRITE}`]
    if (this.o.allowOther) opts.push('allow_other')
    if (this.o.readOnly) opts.push('ro')
    this.b.mount(
      mountpoint,
      opts.join(','),
      MAX_WRITE,
      (op, slot, ...args) => this.dispatch(op, slot, args),
      () => {
        this.mounted = false
        onGone()
      },
      (ino) => this.acked(ino),
      (this.o.localLocks ? MOUNT_FLAGS.LOCAL_LOCKS : 0) | (this.o.acl ? MOUNT_FLAGS.ACL : 0) | (this.o.localCopies ? MOUNT_FLAGS.PASSTHROUGH : 0),
    )
    this.mounted = true
    const lc = this.o.localCopies
    if (lc) this.pt = new Passthrough(this.b, this.vfs, lc.dir, lc.maxBytes, (ino) => this.invalidateInodeNow(ino))
  }

  /** The passthrough state, once INIT granted it (every request comes after INIT, so one look is enough). */
  private passthrough(): Passthrough | undefined {
    if (this.pt && !this.ptChecked) {
      this.ptChecked = true
      if (!this.b.passthroughGranted()) {
        this.pt.close()
        this.pt = undefined
      }
    }
    return this.pt
  }

  /** Another client changed these inodes (meta's invalidation): local copies follow. */
  remoteChange(inos: number[]): void {
    this.pt?.remoteChange(inos)
  }

  /** Unmounts (if still mounted) and frees the session. Safe to call twice. */
  unmount(): void {
    this.mounted = false
    this.b.unmount()
    this.pt?.close()
  }

  get isMounted(): boolean {
    return this.mounted
  }

  /** Before a flush or fsync: a passthrough writer's shared-mapping writes to the local copy reach the file. */
  private settled(fh: number): Promise<void> {
    return this.pt ? this.pt.settle(fh) : Promise.resolve()
  }

  /** The kernel forgets what it cached about `ino`: attributes and page cache. */
  invalidateInode(ino: number): void {
    if (this.mounted) this.b.notifyInvalInode(ino, 0)
  }

  /**
   * Like invalidateInode, resolved once the kernel has done it (bounded by
   * ACK_WAIT_MS: a notify stuck behind a busy inode must not hold an open).
   */
  private invalidateInodeNow(ino: number): Promise<void> {
    if (!this.mounted) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ACK_WAIT_MS)
      const list = this.acks.get(ino) ?? []
      list.push(() => {
        clearTimeout(timer)
        resolve()
      })
      this.acks.set(ino, list)
      this.b.notifyInvalInode(ino, 1)
    })
  }

  private acked(ino: number): void {
    const list = this.acks.get(ino)
    if (!list) return
    this.acks.delete(ino)
    for (const done of list) done()
  }

  /** The kernel forgets `name` in `parent` (its dentry). */
  invalidateEntry(parent: number, name: string): void {
    if (this.mounted) this.b.notifyInvalEntry(parent, name)
  }

  /** Whether the kernel enforces POSIX ACLs on this mount (it took them at INIT). */
  aclsOn(): boolean {
    return this.mounted && this.b.aclGranted()
  }

  private attr(a: Attr): Float64Array {
    fillAttr(this.scratch, 0, a)
    return this.scratch
  }

  /** Runs `fn`, answers with `reply` on success or the errno on failure; times it for the trace and metrics. */
  private op<T>(name: string, slot: number, fn: () => Promise<T>, reply: (value: T) => void): void {
    const timed = TRACE || observer !== undefined
    const started = timed ? process.hrtime.bigint() : 0n
    const finished = (errno: number, value: unknown) => {
      if (!timed) return
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      if (TRACE) process.stderr.write(`${name} ${(seconds * 1000).toFixed(2)}${errno ? ` ${errno}` : ''}\n`)
      observer?.(name, seconds, errno, value)
    }
    let p: Promise<T>
    try {
      p = fn()
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      (value) => {
        finished(0, value)
        reply(value)
      },
      (err: unknown) => {
        const errno = toErrno(err)
        finished(errno, undefined)
        const code = (err as { code?: unknown } | null)?.code
        if (!isErrorCode(code)) log.error(`${name} failed`, err)
        else if (code === 'EIO' || code === 'ETIMEDOUT') log.warn(`${name}: ${(err as Error).message}`)
        this.b.replyErr(slot, -errno)
      },
    ).catch((err: unknown) => log.error(`${name}: reply failed`, err))
  }

  private ok = (slot: number) => () => this.b.replyErr(slot, 0)
  private entry = (slot: number) => (a: Attr) => this.b.replyEntry(slot, this.attr(a), this.o.entryTimeoutS, this.o.attrTimeoutS)

  private dispatch(op: number, slot: number, args: Array<number | string | Buffer>): void {
    const n = (i: number) => args[i] as number
    const s = (i: number) => args[i] as string
    const fhOf = (i: number) => (n(i) >= 0 ? n(i) : undefined)
    const caller = (i: number): Caller => ({ uid: n(i), gid: n(i + 1) })
    // mknod, mkdir and create: the umask follows the caller's uid and gid (0 unless ACLs are on)
    const creator = (i: number): Caller => ({ uid: n(i), gid: n(i + 1), umask: n(i + 2) })
    const v = this.vfs
    switch (op) {
      case OP.LOOKUP:
        return this.op('lookup', slot, () => v.lookup(n(0), s(1)), this.entry(slot))
      case OP.FORGET:
        return // the kernel's lookup counts: nothing to free, the client cache is bounded on its own
      case OP.GETATTR:
        return this.op('getattr', slot, () => v.getattr(n(0), fhOf(1)), (a) => this.b.replyAttr(slot, this.attr(a), this.o.attrTimeoutS))
      case OP.SETATTR:
        return this.op('setattr', slot, async () => {
          const change = setattrChange(n(2), args as number[])
          const a = await v.setattr(n(0), change, fhOf(1))
          if (change.size !== undefined) await this.pt?.changed(n(0))
          return a
        }, (a) => this.b.replyAttr(slot, this.attr(a), this.o.attrTimeoutS))
      case OP.READLINK:
        return this.op('readlink', slot, () => v.readlink(n(0)), (t) => this.b.replyReadlink(slot, t))
      case OP.MKNOD:
        return this.op('mknod', slot, () => v.mknod(n(0), s(1), n(2), n(3), creator(4)), this.entry(slot))
      case OP.MKDIR:
        return this.op('mkdir', slot, () => v.mkdir(n(0), s(1), n(2), creator(3)), this.entry(slot))
      case OP.UNLINK:
        return this.op('unlink', slot, async () => {
          const pt = this.passthrough()
          const gone = pt ? v.cachedChild(n(0), s(1)) : undefined
          await v.unlink(n(0), s(1))
          // its last name: the local copy's disk space goes (with the last passthrough handle, if any)
          if (gone && gone.nlink <= 1) pt?.unlinked(gone.ino)
        }, this.ok(slot))
      case OP.RMDIR:
        return this.op('rmdir', slot, () => v.rmdir(n(0), s(1)), this.ok(slot))
      case OP.SYMLINK:
        return this.op('symlink', slot, () => v.symlink(s(0), n(1), s(2), caller(3)), this.entry(slot))
      case OP.RENAME:
        return this.op(
          'rename',
          slot,
          async () => {
            if ((n(4) & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) !== 0) throw Object.assign(new Error('RENAME_WHITEOUT is not supported'), { code: 'EINVAL' })
            const pt = this.passthrough()
            const moved = pt ? v.cachedChild(n(0), s(1)) : undefined
            const replaced = pt && !(n(4) & RENAME_EXCHANGE) ? v.cachedChild(n(2), s(3)) : undefined
            await v.rename(n(0), s(1), n(2), s(3), n(4))
            // a file renamed over lost its last name: as an unlink
            if (replaced && replaced.nlink <= 1 && replaced.ino !== moved?.ino) pt?.unlinked(replaced.ino)
          },
          this.ok(slot),
        )
      case OP.LINK:
        return this.op('link', slot, () => v.link(n(0), n(1), s(2)), this.entry(slot))
      case OP.OPEN:
        return this.op(
          'open',
          slot,
          async () => {
            const r = await v.open(n(0), n(1))
            // close-to-open: content changed since the kernel last saw it, so
            // its cached size and mtime go before the opener can fstat or read
            if (!r.keepCache) await this.invalidateInodeNow(n(0))
            const pt = this.passthrough()
            const through = pt ? await pt.open(n(0), r.fh, n(1)).catch(async (err: unknown) => {
              pt.released(r.fh)
              await v.release(r.fh).catch(() => undefined)
              throw err
            }) : undefined
            return { ...r, through }
          },
          (r) => {
            const noFlush = this.o.localLocks && (n(1) & O_ACCMODE) === 0
            // FOPEN_KEEP_CACHE is refused with FOPEN_PASSTHROUGH (fs/fuse/iomode.c): the page cache is not used
            const flags = r.through
              ? (r.through.directIo ? OPEN_FLAGS.DIRECT_IO : 0) | (noFlush ? OPEN_FLAGS.NO_FLUSH : 0)
              : (r.keepCache ? OPEN_FLAGS.KEEP_CACHE : 0) | (noFlush ? OPEN_FLAGS.NO_FLUSH : 0)
            const ok = r.through ? this.b.replyOpen(slot, r.fh, flags, r.through.backingId, n(2)) : this.b.replyOpen(slot, r.fh, flags)
            if (!ok) {
              this.pt?.released(r.fh)
              void v.release(r.fh).catch(() => undefined)
            }
          },
        )
      case OP.READ: {
        // a pooled buffer only when the bytes are not one cached block's (Vfs.readOut)
        let scratch: Buffer | undefined
        const take = () => (scratch ??= this.reads.take(n(2)))
        // the content before the read: its bytes fill the local copy only if it did not change meanwhile
        const was = this.pt?.fills(n(1)) ? this.pt.before(n(0)) : undefined
        return this.op('read', slot, () => v.readOut(n(1), n(2), n(3), take), (out) => {
          this.b.replyBuf(slot, out, out.length)
          const done = () => {
            v.readReplied(out)
            if (scratch) this.reads.give(scratch)
          }
          // a read-only reader's bytes also fill the file's local copy; the buffer waits for that write
          if (!(out.length > 0 && was && this.pt?.fill(n(0), n(1), was, n(3), out, done))) done()
        })
      }
      case OP.WRITE: {
        const data = args[2] as Buffer
        const apply = () => v.write(n(1), data, n(3))
        return this.op('write', slot, () => (this.pt ? this.pt.write(n(0), n(3), data, apply) : apply()), (count) => this.b.replyWrite(slot, count))
      }
      case OP.FLUSH:
        // (ino, fh, owner): the close commits first, then the closer's POSIX locks go
        return this.op('flush', slot, () => withFinally(this.settled(n(1)).then(() => v.flush(n(1))), () => v.locks.closed(n(0), s(2))), this.ok(slot))
      case OP.RELEASE: {
        // (ino, fh, flockOwner): OFD and flock locks taken through the handle
        // go with it, registered now: a lock request may be right behind
        this.pt?.released(n(1))
        const committed = v.release(n(1))
        const unlocked = v.locks.released(n(0), n(1), s(2), committed)
        return this.op('release', slot, () => withFinally(committed, () => unlocked), this.ok(slot))
      }
      case OP.GETLK:
        return this.getlk(slot, n(0), s(2), n(3), n(4), n(5))
      case OP.SETLK: {
        const type = n(3) === F_LOCK.RDLCK ? 'r' : n(3) === F_LOCK.WRLCK ? 'w' : 'u'
        return this.lock(slot, { ino: n(0), fh: n(1), kind: 'posix', owner: s(2), type, start: n(4), end: eof(n(5)), pid: n(6), wait: n(7) !== 0 })
      }
      case OP.FLOCK: {
        const o = n(3)
        const type = o & LOCK_OP.UN ? 'u' : o & LOCK_OP.EX ? 'w' : 'r'
        return this.lock(slot, { ino: n(0), fh: n(1), kind: 'flock', owner: s(2), type, start: 0, end: LOCK_EOF, pid: 0, wait: (o & LOCK_OP.NB) === 0 })
      }
      case OP.INTERRUPT:
        return this.lockWaits.get(n(0))?.abort()
      case OP.FSYNC:
        return this.op('fsync', slot, () => this.settled(n(1)).then(() => v.fsync(n(1))), this.ok(slot))
      case OP.FSYNCDIR:
        return this.op('fsyncdir', slot, () => v.fsyncdir(n(0)), this.ok(slot))
      // Only from a kernel without FUSE_NO_OPENDIR_SUPPORT (before 5.1): the
      // binding answers opendir with ENOSYS otherwise. Listings are found by
      // inode either way, and the kernel keeps them as it does without opendir.
      case OP.OPENDIR:
        return this.op('opendir', slot, async () => 0, () => this.b.replyOpen(slot, 0, OPEN_FLAGS.KEEP_CACHE | OPEN_FLAGS.CACHE_DIR))
      case OP.READDIR:
        return this.readdir(slot, n(0), n(2), n(3), n(4))
      case OP.RELEASEDIR:
        return this.op('releasedir', slot, async () => undefined, this.ok(slot))
      case OP.STATFS:
        return this.op('statfs', slot, () => v.statfs(), (st) =>
          this.b.replyStatfs(slot, Float64Array.of(st.bsize, st.bsize, st.blocks, st.bfree, st.bavail, st.files, st.ffree, st.ffree, st.namemax)),
        )
      case OP.SETXATTR:
        return this.op('setxattr', slot, () => v.setxattr(n(0), s(1), args[2] as Buffer, n(3)), this.ok(slot))
      case OP.GETXATTR:
        return this.op('getxattr', slot, () => v.getxattr(n(0), s(1)), (value) => this.xattrReply(slot, value, n(2)))
      case OP.LISTXATTR:
        return this.op('listxattr', slot, () => v.listxattr(n(0)), (names) =>
          this.xattrReply(slot, Buffer.concat(names.flatMap((x) => [this.b.rawName(x), NUL])), n(1)),
        )
      case OP.REMOVEXATTR:
        return this.op('removexattr', slot, () => v.removexattr(n(0), s(1)), this.ok(slot))
      case OP.CREATE:
        return this.op('create', slot, () => v.create(n(0), s(1), n(2), n(3), creator(4)), (r) => {
          this.pt?.created(r.attr.ino, r.fh)
          if (!this.b.replyCreate(slot, this.attr(r.attr), this.o.entryTimeoutS, this.o.attrTimeoutS, r.fh, 0)) {
            this.pt?.released(r.fh)
            void v.release(r.fh).catch(() => undefined)
          }
        })
      case OP.FALLOCATE:
        return this.op('fallocate', slot, async () => {
          await v.fallocate(n(1), n(2), n(3), n(4))
          await this.pt?.changed(n(0), n(3), n(4))
        }, this.ok(slot))
      case OP.COPY_FILE_RANGE:
        // (ino_in, fh_in, off_in, ino_out, fh_out, off_out, len, flags): answered with the bytes copied
        return this.op('copy_file_range', slot, async () => {
          const count = await v.copyFileRange(n(1), n(2), n(4), n(5), n(6), n(7))
          await this.pt?.changed(n(3), n(5), count)
          return count
        }, (count) => this.b.replyWrite(slot, count))
      case OP.LSEEK:
        return this.op('lseek', slot, async () => v.lseek(n(1), n(2), n(3)), (offset) => this.b.replyLseek(slot, offset))
      default:
        if (slot >= 0) this.b.replyErr(slot, ERRNO.ENOSYS)
    }
  }

  /** setlk/flock; a waiting one ends with EINTR when the kernel interrupts it (OP.INTERRUPT names its slot). */
  private lock(slot: number, req: LockRequest): void {
    const ctl = req.wait ? new AbortController() : undefined
    if (ctl) this.lockWaits.set(slot, ctl)
    this.op(
      req.kind === 'flock' ? 'flock' : 'setlk',
      slot,
      async () => {
        const content = await withFinally(this.vfs.locks.set(req, ctl?.signal), () => void this.lockWaits.delete(slot))
        // what the last holder committed is read through handles opened before
        // it: the kernel's pages go before the locker is answered
        if (content && (await this.vfs.lockGranted(req.ino, content))) await this.invalidateInodeNow(req.ino)
      },
      this.ok(slot),
    )
  }

  private getlk(slot: number, ino: number, owner: string, type: number, start: number, end: number): void {
    this.op(
      'getlk',
      slot,
      () => this.vfs.locks.test(ino, owner, type === F_LOCK.WRLCK ? 'w' : 'r', start, eof(end)),
      (c) => {
        if (!c) this.b.replyLock(slot, F_LOCK.UNLCK, start, end, 0)
        else this.b.replyLock(slot, c.type === 'w' ? F_LOCK.WRLCK : F_LOCK.RDLCK, c.start, c.end === LOCK_EOF ? -1 : c.end, c.pid)
      },
    )
  }

  /** getxattr/listxattr: size 0 asks for the size; a short buffer gets ERANGE, as on a local disk. */
  private xattrReply(slot: number, value: Buffer, size: number): void {
    if (size === 0) this.b.replyXattr(slot, value.length)
    else if (value.length > size) this.b.replyErr(slot, ERRNO.ERANGE)
    else this.b.replyBuf(slot, value, value.length)
  }

  private readdir(slot: number, ino: number, size: number, offset: number, plus: number): void {
    // a plain entry takes 24 + name bytes, a plus entry 152 + name: ask meta for about what fits
    const min = Math.max(1, Math.floor(size / (plus ? 160 : 32)))
    this.op(plus ? 'readdirplus' : 'readdir', slot, () => this.vfs.readdir(ino, offset, min), (entries) => {
      const attrs = new Float64Array(entries.length * ATTR_FIELDS)
      const offsets = new Float64Array(entries.length)
      entries.forEach((e, i) => {
        fillAttr(attrs, i * ATTR_FIELDS, e.attr)
        offsets[i] = e.next
      })
      this.b.replyDir(slot, size, plus, entries.map((e) => e.name), attrs, offsets, this.o.entryTimeoutS, this.o.attrTimeoutS)
    })
  }
}

/** The binding's -1 (l_len 0: to the end of the file) as LOCK_EOF. */
function eof(end: number): number {
  return end < 0 ? LOCK_EOF : end
}

/** `p`, then `after` whether `p` failed or not; `p`'s outcome wins, `after`'s failure otherwise. */
async function withFinally<T>(p: Promise<T>, after: () => Promise<unknown> | void): Promise<T> {
  try {
    return await p
  } finally {
    await after()
  }
}

/** setattr's arguments (ino, fh, to_set, mode, uid, gid, size, atime s/ns, mtime s/ns) as a change. */
function setattrChange(toSet: number, a: number[]): SetattrChange {
  const c: SetattrChange = {}
  if (toSet & SET.MODE) c.mode = a[3]
  if (toSet & SET.UID) c.uid = a[4]
  if (toSet & SET.GID) c.gid = a[5]
  if (toSet & SET.SIZE) c.size = a[6]
  if (toSet & SET.ATIME_NOW) c.atime = 'now'
  else if (toSet & SET.ATIME) c.atime = [a[7]!, a[8]!]
  if (toSet & SET.MTIME_NOW) c.mtime = 'now'
  else if (toSet & SET.MTIME) c.mtime = [a[9]!, a[10]!]
  return c
}

export const EIO = -ERRNO.EIO
