/**
 * FUSE passthrough of read-only opens to whole-file local copies
 * (client/local-copies.ts; docs/architecture.md "Local copies and
 * passthrough"). A re-read of a file whose content did not change is then
 * read by the kernel from the local disk, as a local file, without a request
 * to this process.
 *
 * The kernel's rule (fs/fuse/iomode.c): an inode is either in cached mode
 * (opens that use the FUSE page cache) or in passthrough mode (opens on one
 * backing file); an open of the other mode fails with EIO. So every open of
 * an inode is answered here, and the mode of an inode follows its open handles:
 *
 *            read-only open, copy complete and current, no cached handle
 *     IDLE ------------------------------------------------------------> PASSTHROUGH
 *      |  \                                                                |  ^
 *      |   any other open                    any open: passthrough too;    |  |
 *      v                                     a writable one also DIRECT_IO |  |
 *    CACHED  (back to IDLE when its last                                   +--+
 *             handle is released)             last handle released -> IDLE
 *
 * The counts here are never below the kernel's: the kernel counts an open when
 * it takes the reply (after this process counted it) and drops it before it
 * sends RELEASE (before this process drops it). So "no cached handle here"
 * means none in the kernel, and a passthrough inode here may be idle in the
 * kernel, which takes another passthrough open all the same.
 *
 * While an inode is in passthrough mode its readers read the copy, so the
 * copy must follow every change of the file:
 * - a WRITE through a writable handle (DIRECT_IO: it reaches this process) is
 *   written to the copy too before it is answered;
 * - a truncate, fallocate or copy_file_range into it: the copy is read again
 *   from this mount's view of the changed range;
 * - a writable handle's shared mmap writes the copy itself (the kernel maps
 *   the backing file): at its flush and fsync the copy is compared with this
 *   mount's view and what differs is written to the file;
 * - another client's commit (meta's invalidation) or a new content generation
 *   seen at an open: the whole copy is read again before the next open is
 *   answered.
 * A copy that followed changes is dropped when its last handle goes: its bytes
 * match the file, but the generation they match is known only after the commit.
 */
import { constants } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { O_ACCMODE } from './vfs'
import { LocalCopies, type LocalCopy } from './local-copies'
import { logger } from '../common/log'

const log = logger('passthrough')

/** open(2)'s O_DIRECT (its value differs between architectures). */
const O_DIRECT = constants.O_DIRECT ?? 0

/** How long an open waits for the last writes of a copy being filled (else: cached mode). */
const FILL_WAIT_MS = 2000

/** Bytes read per step when a copy is read again or compared. */
const STEP = 4 * 1024 * 1024

export interface BackingFiles {
  backingOpen(fd: number): number
  backingClose(id: number): void
  /** The kernel drops its cached pages of [off, off + len) of `ino` (len 0: to the end), in the background. */
  notifyInvalRange(ino: number, off: number, len: number): void
}

/**
 * A whole-file reader's FUSE pages are dropped behind it in steps of
 * DROP_STEP, DROP_LAG behind the READ just answered (well past the kernel's
 * readahead, so no page it will read is dropped). The kernel refuses
 * FOPEN_KEEP_CACHE with passthrough, so the first open in passthrough mode
 * drops every page of the inode itself, in the opener's open(2): 56-83 ms
 * for 1 GiB right after the first read (perf: invalidate_inode_pages2_range
 * under fuse_open), half of a re-read that then takes 60 ms. Dropped while
 * the copy is filled, on the binding's notifier thread, they are gone by then,
 * and the file is not held twice in memory (FUSE pages and the copy's).
 */
const DROP_STEP = 32 * 1024 * 1024
const DROP_LAG = 16 * 1024 * 1024

/** What passthrough needs of the mount's files (client/vfs.ts). */
export interface CopySource {
  contentOf(ino: number): { gen: number; size: number; dirty: boolean } | undefined
  refreshOpen(ino: number): Promise<boolean>
  readOpen(ino: number, target: Buffer, pos: number, len: number): Promise<number>
  readingWhole(fh: number): boolean
  write(fh: number, data: Buffer, pos: number): Promise<number>
}

type Mode = 'cached' | 'passthrough'

interface InodeModes {
  cached: number
  /** ... of them writable */
  writers: number
  passthrough: number
  backingId: number
  /** The copy followed a change made while in passthrough mode. */
  followed: boolean
  /** A whole-copy re-read under way: opens wait for it. */
  refreshing?: Promise<void>
  /** Rereads and comparisons of the copy, one at a time. */
  turn: Promise<void>
  /** The kernel's pages below this offset were dropped behind a reader filling the copy. */
  dropped?: number
}

export interface OpenAnswer {
  /** Open on this backing file (FOPEN_PASSTHROUGH). */
  backingId: number
  /** Reads and writes of this handle still come here (a writable handle on a passthrough inode). */
  directIo: boolean
}

export class Passthrough {
  private readonly handles = new Map<number, { ino: number; mode: Mode; writable: boolean; direct: boolean }>()
  private readonly inodes = new Map<number, InodeModes>()
  readonly copies: LocalCopies
  private on = true

  constructor(
    private readonly kernel: BackingFiles,
    private readonly files: CopySource,
    dir: string,
    maxBytes: number,
    /** Drops the kernel's attributes of an inode, resolved once done. */
    private readonly forgetAttrs: (ino: number) => Promise<void>,
  ) {
    this.copies = new LocalCopies(dir, maxBytes, (ino) => (this.inodes.get(ino)?.passthrough ?? 0) > 0)
  }

  private modes(ino: number): InodeModes {
    let m = this.inodes.get(ino)
    if (!m) {
      m = { cached: 0, writers: 0, passthrough: 0, backingId: 0, followed: false, turn: Promise.resolve() }
      this.inodes.set(ino, m)
    }
    return m
  }

  /** True while `ino` has handles in passthrough mode (its copy must follow changes). */
  following(ino: number): boolean {
    return (this.inodes.get(ino)?.passthrough ?? 0) > 0
  }

  /**
   * How an open of `ino` with `flags`, given handle `fh` by the Vfs, is
   * answered: undefined for cached mode (the reply as without passthrough).
   */
  async open(ino: number, fh: number, flags: number): Promise<OpenAnswer | undefined> {
    const writable = (flags & O_ACCMODE) !== 0
    // the modes are looked up again after every wait: the inode's entry goes
    // when its last handle is released, and a new one may take its place
    if (this.modes(ino).passthrough > 0) {
      await this.current(ino, this.modes(ino))
      const m = this.modes(ino)
      if (m.passthrough > 0) {
        this.count(fh, ino, 'passthrough', flags)
        return { backingId: m.backingId, directIo: writable }
      }
    }
    // O_DIRECT readers stay with the mount: the copy's file system would hold them to its own alignment
    if (!writable && (flags & O_DIRECT) === 0 && this.modes(ino).cached === 0 && this.on) {
      const copy = await this.usable(ino)
      const m = this.modes(ino)
      // other opens may have been answered meanwhile: one in passthrough mode makes this one so too
      if (m.passthrough > 0) return this.open(ino, fh, flags)
      if (copy && m.cached === 0) {
        const id = this.backing(copy)
        if (id > 0) {
          m.backingId = id
          this.count(fh, ino, 'passthrough', flags)
          return { backingId: id, directIo: false }
        }
      }
    }
    this.count(fh, ino, 'cached', flags)
    return undefined
  }

  /** This mount removed the last name of `ino`: its copy goes now, or with its last passthrough handle. */
  unlinked(ino: number): void {
    const m = this.inodes.get(ino)
    if (m && m.passthrough > 0) m.followed = true
    else this.copies.drop(ino)
  }

  /** A handle made by CREATE (always cached mode: a new file has no copy). */
  created(ino: number, fh: number): void {
    this.count(fh, ino, 'cached', O_ACCMODE)
  }

  /** The kernel released `fh` (or its open was never answered). */
  released(fh: number): void {
    const h = this.handles.get(fh)
    if (!h) return
    this.handles.delete(fh)
    const m = this.modes(h.ino)
    if (h.mode === 'cached') {
      m.cached--
      if (h.writable) m.writers--
      // the reader that filled the copy is done: the rest of its pages go too, unless the copy will not be used
      if (m.dropped !== undefined && m.cached === 0 && this.copies.get(h.ino)?.allIssued) this.kernel.notifyInvalRange(h.ino, m.dropped, 0)
      if (m.cached === 0) m.dropped = undefined
    } else if (--m.passthrough === 0) {
      this.kernel.backingClose(m.backingId)
      m.backingId = 0
      if (m.followed) this.copies.drop(h.ino)
      m.followed = false
    }
    if (m.cached === 0 && m.passthrough === 0) this.inodes.delete(h.ino)
  }

  /** The handle reads through this process and its reads may fill the copy: read-only, cached mode, not O_DIRECT (it asked for no caching). */
  fills(fh: number): boolean {
    const h = this.handles.get(fh)
    return this.on && h !== undefined && h.mode === 'cached' && !h.writable && !h.direct
  }

  /** The content a read is about to read: fill() takes its bytes only if that is still the content. */
  before(ino: number): { gen: number; size: number; dirty: boolean } | undefined {
    return this.files.contentOf(ino)
  }

  /**
   * Bytes a cached read-only handle `fh` of `ino` just answered: onto the copy of
   * this content. `was`: the content before the read began; a commit or
   * another client's content taken meanwhile (gen only grows) means the
   * bytes may be of either, so they fill nothing.
   */
  fill(ino: number, fh: number, was: { gen: number; size: number; dirty: boolean } | undefined, pos: number, data: Buffer, done: () => void): boolean {
    // only a handle reading the file whole from offset 0 (the Vfs's read
    // pattern, this read included): a database's or fio's scattered reads
    // would each cost a write to a copy they almost never complete
    if (!this.files.readingWhole(fh)) return false
    const c = this.files.contentOf(ino)
    const m = this.inodes.get(ino)
    if (!c || !was || was.dirty || was.gen !== c.gen || was.size !== c.size) return false
    if (c.dirty || !m || m.passthrough > 0 || m.writers > 0) return false
    const copy = this.copies.forFill(ino, { gen: c.gen, size: c.size })
    if (!copy || pos >= c.size) return false
    copy.put(pos, data, done)
    // behind one reader only: another reader further back may still read those pages
    if (m.cached === 1) {
      const from = m.dropped ?? 0
      const to = pos - DROP_LAG
      if (to - from >= DROP_STEP) {
        this.kernel.notifyInvalRange(ino, from, to - from)
        m.dropped = to
      }
    }
    return true
  }

  /**
   * A WRITE of `data` at `pos` to `ino`, around its application by `apply`.
   * The copy of a passthrough inode gets the bytes first: a comparison under
   * way (settle) reads the mount's view before the copy, so it never finds
   * the mount ahead of the copy and never writes old bytes over new ones.
   * A failed write puts the mount's bytes of that range back.
   */
  async write(ino: number, pos: number, data: Buffer, apply: () => Promise<number>): Promise<number> {
    const copy = this.following(ino) ? this.copies.get(ino) : undefined
    if (!copy) return apply()
    this.modes(ino).followed = true
    copy.putNow(pos, data)
    try {
      return await apply()
    } catch (err) {
      await this.reread(ino, copy, pos, data.length).catch(() => {
        copy.broken = true
      })
      throw err
    }
  }

  /** A truncate, fallocate or copy_file_range changed [pos, pos + len) of `ino` (len -1: to the end). */
  async changed(ino: number, pos = 0, len = -1): Promise<void> {
    if (!this.following(ino)) return
    const copy = this.copies.get(ino)
    const c = this.files.contentOf(ino)
    if (!copy || !c) return
    const m = this.modes(ino)
    m.followed = true
    await this.inTurn(m, async () => {
      const now = this.files.contentOf(ino) ?? c
      if (now.size !== copy.version.size) copy.truncateNow(now.size)
      await this.reread(ino, copy, pos, len < 0 ? now.size - pos : len)
    })
  }

  /** Runs `fn` after the inode's other rereads and comparisons. */
  private inTurn(m: InodeModes, fn: () => Promise<void>): Promise<void> {
    const run = m.turn.then(fn)
    m.turn = run.catch(() => undefined)
    return run
  }

  /**
   * Before a writable passthrough handle's flush or fsync: its shared mmap
   * wrote the copy, not this process. What differs from this mount's view is
   * written through the handle, so the flush commits it.
   */
  async settle(fh: number): Promise<void> {
    const h = this.handles.get(fh)
    if (!h || h.mode !== 'passthrough' || !h.writable) return
    const m = this.modes(h.ino)
    await m.refreshing
    await this.inTurn(m, async () => {
      const copy = this.copies.get(h.ino)
      const c = this.files.contentOf(h.ino)
      if (!copy || !c) return
      const mine = Buffer.allocUnsafe(STEP)
      const theirs = Buffer.allocUnsafe(STEP)
      for (let pos = 0; pos < c.size; pos += STEP) {
        const len = Math.min(STEP, c.size - pos)
        // the mount's view first, then the copy (see write())
        const b = await this.files.readOpen(h.ino, theirs, pos, len)
        const a = copy.readNow(mine, pos, b)
        if (a === b && mine.subarray(0, a).equals(theirs.subarray(0, b))) continue
        log.info(`inode ${h.ino}: the local copy was written through a shared mapping; ${a} bytes at ${pos} go to the file`)
        await this.files.write(fh, Buffer.from(mine.subarray(0, a)), pos)
      }
    })
  }

  /** Another client changed these inodes: copies in passthrough mode are read again, the others dropped. */
  remoteChange(inos: number[]): void {
    for (const ino of inos) {
      const m = this.inodes.get(ino)
      if (!m || m.passthrough === 0) {
        this.copies.drop(ino)
        continue
      }
      const copy = this.copies.get(ino)
      if (!copy) continue
      const before = m.refreshing ?? Promise.resolve()
      m.refreshing = before.then(() => this.inTurn(m, () => this.refresh(ino, copy))).finally(() => {
        if (this.inodes.get(ino) === m && m.refreshing) m.refreshing = undefined
      })
    }
  }

  /** Stops passthrough (unmount): copies removed. */
  close(): void {
    this.copies.close()
  }

  // ---- inside ----

  private count(fh: number, ino: number, mode: Mode, flags: number): void {
    const writable = (flags & O_ACCMODE) !== 0
    const m = this.modes(ino)
    if (mode === 'cached') {
      m.cached++
      if (writable) m.writers++
    } else m.passthrough++
    this.handles.set(fh, { ino, mode, writable, direct: (flags & O_DIRECT) !== 0 })
  }

  /**
   * The complete copy of `ino`'s current content, if this mount has one and
   * holds nothing newer. A copy whose last bytes are still being written (a
   * re-read right after the first one) is waited for, at most FILL_WAIT_MS.
   */
  private async usable(ino: number): Promise<LocalCopy | undefined> {
    const current = (copy: LocalCopy | undefined): copy is LocalCopy => {
      const c = this.files.contentOf(ino)
      return c !== undefined && !c.dirty && copy !== undefined && copy.version.gen === c.gen && copy.version.size === c.size
    }
    const copy = this.copies.get(ino)
    if (!current(copy)) return undefined
    if (!copy.complete && copy.allIssued) {
      const stop = new AbortController()
      await Promise.race([copy.idle(), sleep(FILL_WAIT_MS, undefined, { signal: stop.signal, ref: false }).catch(() => undefined)])
      stop.abort()
    }
    return current(copy) && copy.complete && this.copies.get(ino) === copy ? copy : undefined
  }

  private backing(copy: LocalCopy): number {
    try {
      return this.kernel.backingOpen(copy.fd)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      this.on = false
      log.warn(`passthrough is off for this mount: the kernel refused a backing file (${code}: ${(err as Error).message}); reads go through the mount`)
      return 0
    }
  }

  /** Before an open of a passthrough inode: the copy is the content this mount now sees. */
  private async current(ino: number, m: InodeModes): Promise<void> {
    await m.refreshing
    const c = this.files.contentOf(ino)
    const copy = this.copies.get(ino)
    if (!c || !copy || c.dirty || m.followed) return
    if (copy.version.gen !== c.gen || copy.version.size !== c.size) await this.inTurn(m, () => this.refresh(ino, copy))
  }

  /** The whole copy read again from this mount's view (after another client's commit). */
  private async refresh(ino: number, copy: LocalCopy): Promise<void> {
    // the kernel may hold attributes of the old content (a lookup answered
    // meanwhile), and the next open here finds the file unchanged and keeps them
    if (await this.files.refreshOpen(ino)) await this.forgetAttrs(ino)
    const c = this.files.contentOf(ino)
    if (!c) return
    copy.truncateNow(c.size)
    await this.reread(ino, copy, 0, c.size)
    copy.version = { gen: c.gen, size: c.size }
  }

  private async reread(ino: number, copy: LocalCopy, pos: number, len: number): Promise<void> {
    const buf = Buffer.allocUnsafe(STEP)
    for (let at = pos; at < pos + len; at += STEP) {
      const n = await this.files.readOpen(ino, buf, at, Math.min(STEP, pos + len - at))
      if (n <= 0) break
      copy.putNow(at, buf.subarray(0, n))
    }
  }
}
