/**
 * One open inode inside this mount, shared by every handle on it, so every
 * read and stat through any handle sees every completed write.
 *
 * Design (docs/architecture.md#write-path)
 * - Each chunk is in one state of client/chunk-state.ts: clean/committed (the
 *   chunk map, `chunks`), or a `Slot`: loading, dirty, uploading, uploaded.
 * - One serialization point per inode, `lock`: write, read (its snapshot),
 *   truncate and flush run under it in arrival order, so they are
 *   linearizable and an O_APPEND write lands at the end as it is then.
 *   Reads hold it only while they copy local bytes and pick block refs;
 *   fetching blocks happens outside (blocks never change).
 * - Upload completions and write-back pressure (`uploadOneIdle`) change state
 *   without the lock, each in one synchronous step that first checks the
 *   chunk is still in the state it expects; ops under the lock re-read state
 *   after every await.
 * - An upload freezes the buffer it takes (no copy): its hash and length are
 *   fixed before the bytes leave. A write into a chunk that is uploading copies
 *   the frozen bytes into a new dirty buffer that supersedes the upload.
 * - Appends (docs/data-node.md#appends-slices-and-compaction): a write at or
 *   past the end of a committed block chunk buffers only the new bytes
 *   (dirty with `from` = the chunk's length); the flush uploads them as one
 *   slice and commits it conditionally on the chunk still ending where it did
 *   (EAGAIN: the chunk is rewritten whole). A chunk that fills up, reaches
 *   MAX_SLICES, or (at the last close) holds mostly slices is compacted: read,
 *   uploaded as one block and committed conditionally, once.
 * - Uploads never to be committed (superseded, truncated away, discarded)
 *   give back their pin, one per upload as meta counts them, once the upload
 *   has settled (none if the pin call itself failed): after the next flush,
 *   or at once when the file is discarded, and not while a chunk still holds
 *   the same hash; the write-back buffers and in-flight uploads are bounded by the
 *   Writeback shared by all files (backpressure: write() waits).
 */
import { chunkLen, clipRef, extentsOf, lastHash, withSlice } from '../common/chunk-extents'
import { MAX_FILE_SIZE, MAX_SLICES, type Attr, type ChunkRef, type Timespec } from '../common/protocol'
import { BerthError, codeOf, fsError } from '../common/errors'
import { logger } from '../common/log'
import { PERM_BITS, S_IFMT } from '../common/modes'
import { ChunkState, type Slot, type Upload } from './chunk-state'
import { Mutex } from './semaphore'
import { tookNoPin, type BlockPut, type MetaApi } from './stores'
import type { Writeback } from './writeback'

export { Writeback } from './writeback'

/** FUSE's max_write: writes this big come from copying a big file. */
const BIG_WRITE = 128 * 1024
/** Smallest chunk buffer; buffers grow by doubling from here. */
const MIN_BUFFER = 64 * 1024
/** Chunk refs per commit call. */
const COMMIT_PAGE = 1000
/**
 * At the last close, a chunk with at least this many slices, whose slices hold
 * at least as many bytes as its base, is compacted: each compaction at close at
 * least doubles what the chunk held at the one before, so repeated
 * open-append-close costs a geometric series, not a chunk per close.
 */
const COMPACT_AT_CLOSE = 16
/** Block fetches in flight for one chunk load (read-modify-write, compaction). */
const LOAD_CONCURRENCY = 16

const log = logger('client')

function bufferSize(need: number, chunkSize: number): number {
  let size = Math.min(MIN_BUFFER, chunkSize)
  while (size < need) size *= 2
  return Math.min(size, chunkSize)
}

/** `o` without its undefined fields (messages carry no explicit undefined). */
export function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The later of two times (`b` may be absent). */
function later(a: Timespec, b: Timespec | undefined): Timespec {
  return b && (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1])) ? b : a
}

export function nowTimespec(): Timespec {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}

function bytesOf(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}

/** A block range a read copies after it has left the lock. */
interface Fetch {
  /** One block (an extent of the chunk). */
  ref: ChunkRef
  /** Offset in that block. */
  inBlock: number
  step: number
  done: number
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** utimensat's times as a commit carries them ('now': meta's clock). */
export interface CommitTimes {
  atime?: Timespec | 'now'
  mtime?: Timespec | 'now'
}

/** Attribute changes of a fresh file, sent with its first commit (OpenFile.defer). */
export interface PendingAttrs {
  /** Permission bits (and setuid/setgid/sticky), without the file type. */
  mode?: number
  uid?: number
  gid?: number
  times?: CommitTimes
}

export class OpenFile {
  attr: Attr
  size: number
  /**
   * Created by this mount and not committed since: meta holds it empty, so
   * nobody can read anything of it yet, and its chmod/chown/utimens can wait
   * for the first commit (close or fsync) with the data. tar x changes every
   * file it creates so; one commit instead of three trips (docs/semantics.md).
   */
  fresh = false
  private pending: PendingAttrs | undefined
  /** When a deferred change was made (the ctime shown until the commit). */
  private changedAt: Timespec | undefined
  /** Clean and committed chunks: the chunk map as meta has it. */
  readonly chunks = new Map<number, ChunkRef>()
  /**
   * The content generation at which `chunks` is exactly meta's map, when
   * that is known: set from a fetch no invalidation crossed (trustMap), and
   * carried along by this mount's own changes only when meta's reply shows
   * nothing else changed the map in between (gen moved by exactly our
   * steps). Anything else makes it unknown. Meta's map at a given gen never
   * changes, so a closed file whose mapGen is its gen can be reopened from
   * this map while meta's gen is still the same (client/closed-files.ts).
   */
  private mapGen: number | undefined
  /** Every chunk not clean: loading, dirty, uploading or uploaded. */
  readonly slots = new Map<number, Slot>()
  readonly uploads = new Set<Promise<void>>()
  handles = 0
  /** Size or times changed locally and not committed yet. */
  sizeDirty = false
  mtime: Timespec | undefined
  readonly lock = new Mutex()
  private uploadError: unknown
  /**
   * One entry per upload no chunk will commit: meta counts a session's pins
   * per upload, so each such upload's pin is released once, after the next
   * flush. An entry whose hash a chunk holds again waits until it does not
   * (defence: that chunk's own pin is never the one dropped).
   */
  private unneeded: string[] = []
  /** The last handle is gone (discard): no flush will release what settles later. */
  private discarded = false
  /** Indexes of committed chunks that have slices (compaction candidates at the last close). */
  private readonly sliced = new Set<number>()

  constructor(
    attr: Attr,
    private readonly wb: Writeback,
  ) {
    this.attr = attr
    this.size = attr.size
  }

  get chunkSize(): number {
    return this.wb.opts.chunkSize
  }

  get isDirty(): boolean {
    return this.sizeDirty || this.slots.size > 0 || this.uploads.size > 0 || this.pending !== undefined
  }

  /** Attribute changes waiting for the first commit. */
  get hasPending(): boolean {
    return this.pending !== undefined
  }

  /**
   * Under the lock: keeps `change` for the first commit if this file is still
   * fresh (false otherwise: the caller sends it to meta now). A later change
   * of the same attribute replaces the earlier one, as it would in meta.
   */
  defer(change: PendingAttrs): Promise<boolean> {
    return this.lock.run(async () => {
      if (!this.fresh) return false
      const p: PendingAttrs = { ...this.pending }
      if (change.mode !== undefined) p.mode = change.mode & PERM_BITS
      if (change.uid !== undefined) p.uid = change.uid
      if (change.gid !== undefined) p.gid = change.gid
      if (change.times) {
        p.times = { ...p.times, ...change.times }
        // an explicit mtime replaces the last write's; a later write replaces it again (write)
        if (change.times.mtime !== undefined) this.mtime = change.times.mtime === 'now' ? nowTimespec() : change.times.mtime
      }
      this.pending = p
      this.changedAt = nowTimespec()
      return true
    })
  }

  /** The state of chunk `idx` (tests and metrics). */
  stateOf(idx: number): string {
    return this.slots.get(idx)?.state ?? ChunkState.clean
  }

  /** Attributes as this mount sees them: local size and mtime while dirty. */
  view(): Attr {
    if (!this.isDirty && this.size === this.attr.size) return this.attr
    const mtime = this.mtime ?? this.attr.mtime
    // a write changes ctime too; a status change after it (chmod, chown) is later still
    const ctime = later(later(mtime, this.attr.ctime), this.changedAt)
    const p = this.pending
    const atime = p?.times?.atime === undefined ? this.attr.atime : p.times.atime === 'now' ? ctime : p.times.atime
    return {
      ...this.attr,
      size: this.size,
      // what meta counted is not what the dirty map holds: size / 512 until the commit (as a local
      // file system counts delayed allocations)
      blocks: undefined,
      mtime,
      ctime,
      atime,
      mode: p?.mode === undefined ? this.attr.mode : (this.attr.mode & S_IFMT) | p.mode,
      uid: p?.uid ?? this.attr.uid,
      gid: p?.gid ?? this.attr.gid,
    }
  }

  /**
   * Replaces the committed state with a fresh one from meta (close-to-open),
   * unless dirty or older than what this file already holds: the caller
   * fetched it before awaiting, and a commit of ours may have landed since
   * (taking it would roll back our own committed writes).
   */
  refresh(attr: Attr, chunks: ChunkRef[]): void {
    if (this.isDirty || attr.gen < this.attr.gen) return
    this.mapGen = undefined
    this.attr = attr
    this.size = attr.size
    this.chunks.clear()
    this.sliced.clear()
    for (const c of chunks) this.setChunk(c)
  }

  /**
   * `chunks` is meta's map at `gen`: it came from one fetch that no
   * invalidation of this inode crossed, or this file is new (meta holds it
   * empty at its first gen).
   */
  trustMap(gen: number): void {
    if (gen === this.attr.gen) this.mapGen = gen
  }

  /**
   * After a change of ours that meta applied as `steps` gen bumps: the map
   * stays exact only if meta's gen went from `before` to exactly
   * `before + steps` (nothing else changed it between), and was exact before.
   */
  private advanceMapGen(before: number, steps: number, after: number): void {
    this.mapGen = this.mapGen === before && after === before + steps ? after : undefined
  }

  /**
   * The committed map and the gen it is exact for, if this file is clean and
   * that is known: what a later open may start from without asking meta.
   */
  exactMap(): { gen: number; size: number; chunks: ChunkRef[] } | undefined {
    if (this.isDirty || this.mapGen !== this.attr.gen || this.size !== this.attr.size) return undefined
    return { gen: this.attr.gen, size: this.size, chunks: [...this.chunks.values()] }
  }

  /** Meta's map may have moved without this mount hearing of it (another client's change, lost invalidations). */
  doubtMap(): void {
    this.mapGen = undefined
  }

  /** A committed chunk ref (hole refs drop the entry). */
  private setChunk(ref: ChunkRef): void {
    if (ref.hash || ref.data) this.chunks.set(ref.idx, ref)
    else this.chunks.delete(ref.idx)
    if (ref.slices?.length) this.sliced.add(ref.idx)
    else this.sliced.delete(ref.idx)
  }

  /**
   * Close-to-open revalidation under the lock, so no commit of ours lands
   * between fetching meta's state and taking it: `fetch` returns meta's
   * current attributes and chunk map, or nothing when they have not changed.
   */
  revalidate(fetch: () => Promise<{ attr: Attr; chunks: ChunkRef[] } | undefined>): Promise<void> {
    return this.lock.run(async () => {
      if (this.isDirty) return
      const fresh = await fetch()
      if (fresh) this.refresh(fresh.attr, fresh.chunks)
    })
  }

  // ---- reads ----

  /** `random`: the caller is not reading sequentially (fetch only the bytes asked for). */
  async read(target: Buffer, pos: number, len: number, random = false): Promise<number> {
    const { n, fetches } = await this.lock.run(async () => this.snapshotRead(target, pos, len))
    await this.fetchInto(target, fetches, random)
    return n
  }

  /**
   * The bytes of [pos, pos + len) (fewer at the end of the file), for a reply
   * that is written out before anything else runs. When one cached block holds
   * them all (a sequential reader inside a clean chunk, the common case) they
   * are a view into that block: no zero-fill and no copy of up to 1 MiB per
   * request. Blocks are never written once cached (every write to a chunk
   * copies into a buffer of its own), so the view stays exact. Such a view is
   * borrowed from the block cache: hand it to BlockCache.release() once replied, or its
   * buffer is never reused (client/chunk-buffers.ts). Otherwise `scratch()`
   * gives a buffer that read() fills.
   */
  async readOut(pos: number, len: number, random: boolean, scratch: () => Buffer): Promise<Buffer> {
    const plan = await this.lock.run(async () => {
      const one = random ? null : this.inOneBlock(pos, len)
      if (one) return { one }
      const target = scratch()
      return { target, ...this.snapshotRead(target, pos, len) }
    })
    if (plan.one) {
      const { ref, inBlock, step } = plan.one
      // borrowed: the caller releases the view once it has been replied (Vfs.readReplied)
      const block = await this.wb.cache.read(ref)
      if (inBlock + step <= Math.min(ref.len, block.length)) return block.subarray(inBlock, inBlock + step)
      this.wb.cache.release(block)
      // a block shorter than its ref says: the copying path pads it with zeros
      const target = scratch()
      return target.subarray(0, await this.read(target, pos, len, random))
    }
    await this.fetchInto(plan.target, plan.fetches, random)
    return plan.target.subarray(0, plan.n)
  }

  /**
   * Under the lock: the one block extent holding all of [pos, pos + len) cut
   * at the end of the file, when the chunk is clean (no local bytes) and the
   * range is not empty; else null.
   */
  private inOneBlock(pos: number, len: number): Fetch | null {
    if (pos >= this.size || len <= 0) return null
    const n = Math.min(len, this.size - pos)
    const idx = Math.floor(pos / this.chunkSize)
    const inChunk = pos - idx * this.chunkSize
    if (inChunk + n > this.chunkSize) return null
    const slot = this.slots.get(idx)
    if (slot && slot.state !== ChunkState.uploaded) return null
    const ref = slot ? slot.ref : this.chunks.get(idx)
    if (!ref?.hash || ref.data) return null
    for (const e of extentsOf(ref)) {
      if (inChunk >= e.pos && inChunk + n <= e.pos + e.ref.len) return { ref: e.ref, inBlock: inChunk - e.pos, step: n, done: 0 }
    }
    return null
  }

  /** Fetches planned by snapshotRead into `target` (zeros past a block's end). */
  private async fetchInto(target: Buffer, fetches: Fetch[], random: boolean): Promise<void> {
    // the blocks of a fragmented chunk are fetched side by side
    await Promise.all(
      fetches.map(async (f) => {
        let copied = 0
        if (!random) {
          const block = await this.wb.cache.read(f.ref)
          const valid = Math.min(f.ref.len, block.length)
          copied = f.inBlock < valid ? block.copy(target, f.done, f.inBlock, Math.min(valid, f.inBlock + f.step)) : 0
          this.wb.cache.release(block)
        } else if (f.inBlock < f.ref.len) {
          const part = await this.wb.cache.readRange(f.ref, f.inBlock, Math.min(f.step, f.ref.len - f.inBlock))
          copied = part.copy(target, f.done)
          this.wb.cache.release(part)
        }
        if (copied < f.step) target.fill(0, f.done + copied, f.done + f.step)
      }),
    )
  }

  /** Under the lock: copies local bytes now, lists the block ranges to fetch. */
  private snapshotRead(target: Buffer, pos: number, len: number): { n: number; fetches: Fetch[] } {
    const fetches: Fetch[] = []
    if (pos >= this.size) return { n: 0, fetches }
    const n = Math.min(len, this.size - pos)
    const cs = this.chunkSize
    for (let done = 0; done < n; ) {
      const off = pos + done
      const idx = Math.floor(off / cs)
      const inChunk = off - idx * cs
      const step = Math.min(cs - inChunk, n - done)
      const slot = this.slots.get(idx)
      let local: Buffer | undefined
      let from = 0
      let ref: ChunkRef | undefined
      if (slot?.state === ChunkState.dirty) {
        local = slot.buf.subarray(0, slot.len)
        from = slot.from
        ref = slot.base
      } else if (slot?.state === ChunkState.uploading) {
        local = slot.upload.buf.subarray(0, slot.upload.from + slot.upload.body.length)
        from = slot.upload.from
        ref = slot.upload.base
      } else {
        ref = slot?.state === ChunkState.uploaded ? slot.ref : this.chunks.get(idx)
        from = this.chunkSize
      }
      target.fill(0, done, done + step)
      // bytes below `from` come from the chunk ref, the rest from the local buffer
      if (ref && inChunk < from) this.planRef(ref, inChunk, Math.min(inChunk + step, from), done, target, fetches)
      if (local && inChunk + step > from) {
        const lo = Math.max(inChunk, from)
        const hi = Math.min(inChunk + step, local.length)
        if (lo < hi) local.copy(target, done + lo - inChunk, lo, hi)
      }
      done += step
    }
    return { n, fetches }
  }

  /** Chunk bytes [lo, hi) of `ref` go to `target` at `at`: inline bytes now, blocks as fetches. */
  private planRef(ref: ChunkRef, lo: number, hi: number, at: number, target: Buffer, fetches: Fetch[]): void {
    if (ref.data) {
      const data = bytesOf(ref.data).subarray(0, ref.len)
      if (lo < data.length) data.copy(target, at, lo, Math.min(hi, data.length))
      return
    }
    for (const e of extentsOf(ref)) {
      const a = Math.max(lo, e.pos)
      const b = Math.min(hi, e.pos + e.ref.len)
      if (a < b) fetches.push({ ref: e.ref, inBlock: a - e.pos, step: b - a, done: at + a - lo })
    }
  }

  // ---- copy_file_range inside the cluster (client/copy-range.ts) ----

  /** Runs `fn` holding this file's lock; a copy between two files takes both, lower inode first. */
  locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(fn)
  }

  /** With the lock held (`locked`): commits everything pending, so meta's chunk map is this mount's. */
  async flushHeld(meta: MetaApi, session: string): Promise<boolean> {
    return this.flushLocked(meta, session, false)
  }

  /**
   * SEEK_DATA (`hole` false) or SEEK_HOLE from `offset` (under the size). A
   * chunk's data is its stored bytes, from its start (a block always begins
   * at the chunk's start, zeros included); past them to the chunk's end, and
   * past the end of the file, is a hole. A chunk with any local state counts
   * as data whole. Null: no data from `offset` on.
   */
  seek(offset: number, hole: boolean): number | null {
    const cs = this.chunkSize
    const last = Math.floor((this.size - 1) / cs)
    const from = Math.floor(offset / cs)
    if (hole) {
      // each chunk passed over is data, so in the map: at most its size of steps
      for (let idx = from; idx <= last; idx++) {
        const end = this.storedEnd(idx)
        if (end < cs) return Math.min(Math.max(offset, idx * cs + end), this.size)
      }
      return this.size
    }
    if (offset < from * cs + this.storedEnd(from)) return offset
    let next = Infinity
    for (const idx of this.chunks.keys()) if (idx > from && idx < next) next = idx
    for (const idx of this.slots.keys()) if (idx > from && idx < next) next = idx
    return next <= last ? next * cs : null
  }

  /**
   * With the lock held, after a flush: the committed ref of chunk `idx`
   * (undefined: a hole). A chunk that is not clean (a write came after the
   * flush) throws: the caller must not clone what this mount has not committed.
   */
  committedChunk(idx: number): ChunkRef | undefined {
    if (this.slots.has(idx)) throw new Error(`chunk ${idx} of inode ${this.attr.ino} is ${this.stateOf(idx)}, not committed`)
    return this.chunks.get(idx)
  }

  /** Where chunk `idx`'s data ends within it: its stored bytes (0: a hole); a chunk with local state counts whole. */
  private storedEnd(idx: number): number {
    if (this.slots.has(idx)) return this.chunkSize
    const ref = this.chunks.get(idx)
    return ref ? chunkLen(ref) : 0
  }

  /** Bytes of [from, to) that are data (as seek() counts them): the rest is holes. */
  dataIn(from: number, to: number): number {
    const cs = this.chunkSize
    let n = 0
    for (const idx of new Set([...this.chunks.keys(), ...this.slots.keys()])) {
      const lo = Math.max(from, idx * cs)
      const hi = Math.min(to, idx * cs + this.storedEnd(idx))
      if (hi > lo) n += hi - lo
    }
    return n
  }

  /**
   * With the lock held, after a flush: chunks `from` .. `from + count - 1`
   * become holes (fallocate PUNCH_HOLE over whole chunks), in commits of at
   * most COMMIT_PAGE refs that keep the size. False, and nothing done, when
   * one of them has local state (a write came after the flush): the caller
   * writes zeros instead.
   */
  async punchHeld(meta: MetaApi, session: string, from: number, count: number): Promise<boolean> {
    // by the map's entries, not the range's chunks: a punch over a petabyte of holes costs nothing
    const inRange = (idx: number) => idx >= from && idx < from + count
    if ([...this.slots.keys()].some(inRange)) return false
    const idxs = [...this.chunks.keys()].filter(inRange).sort((a, b) => a - b)
    const genBefore = this.attr.gen
    let attr: Attr | undefined
    let pages = 0
    for (let i = 0; i < idxs.length; i += COMMIT_PAGE) {
      const chunks = idxs.slice(i, i + COMMIT_PAGE).map((idx): ChunkRef => ({ idx, hash: null, len: 0, nodes: [] }))
      pages++
      attr = (await meta.call('commit', { ino: this.attr.ino, session, size: this.size, chunks, mtime: nowTimespec() })).attr
      for (const c of chunks) this.setChunk(c)
    }
    if (attr) {
      this.advanceMapGen(genBefore, pages, attr.gen)
      this.attr = attr
      this.size = attr.size
    }
    return true
  }

  /**
   * With the lock held: meta made chunks `to`, `to + 1`, ... name what `refs`
   * name (clonechunks), and `attr` is this file after it. The local map takes
   * the same refs, so reads here see the copy without asking meta.
   */
  applyClone(to: number, refs: Array<ChunkRef | undefined>, attr: Attr): void {
    refs.forEach((ref, i) => {
      const idx = to + i
      this.setChunk(ref ? { ...ref, idx } : { idx, hash: null, len: 0, nodes: [] })
    })
    for (const idx of [...this.chunks.keys()]) if (idx * this.chunkSize >= attr.size) this.setChunk({ idx, hash: null, len: 0, nodes: [] })
    this.mapGen = undefined
    this.attr = attr
    this.size = attr.size
  }

  /** Chunk bytes [lo, hi) of `ref` into `into` at the same offsets (read-modify-write, compaction). */
  private async readInto(ref: ChunkRef, lo: number, hi: number, into: Buffer): Promise<void> {
    const fetches: Fetch[] = []
    this.planRef(ref, lo, hi, lo, into, fetches)
    await eachLimit(fetches, LOAD_CONCURRENCY, async (f) => {
      const block = await this.wb.cache.read(f.ref)
      const valid = Math.min(f.ref.len, block.length)
      if (f.inBlock < valid) block.copy(into, f.done, f.inBlock, Math.min(valid, f.inBlock + f.step))
      this.wb.cache.release(block)
    })
  }

  /** Starts fetching the chunks after `pos` (sequential readers). */
  readahead(pos: number, chunks: number): void {
    const first = Math.floor(pos / this.chunkSize)
    const last = Math.floor(Math.max(0, this.size - 1) / this.chunkSize)
    for (let idx = first; idx <= Math.min(last, first + chunks); idx++) {
      const slot = this.slots.get(idx)
      const ref = slot ? (slot.state === ChunkState.uploaded ? slot.ref : undefined) : this.chunks.get(idx)
      if (ref?.hash) for (const e of extentsOf(ref)) this.wb.cache.prefetch(e.ref)
    }
  }

  // ---- writes ----

  /** `append`: write at the end of the file as it is when this write's turn comes (O_APPEND). */
  async write(data: Buffer, pos: number, append = false): Promise<number> {
    let count = data.length
    await this.lock.run(async () => {
      const at = append ? this.size : pos
      // as the kernel does at a local file system's largest size: a write
      // that starts there fails, one that crosses it stops at it
      if (count > 0 && at >= MAX_FILE_SIZE) throw fsError('EFBIG', `a write at ${at} is past the largest file (${MAX_FILE_SIZE} bytes)`)
      count = Math.min(count, MAX_FILE_SIZE - at)
      const cs = this.chunkSize
      for (let done = 0; done < count; ) {
        const off = at + done
        const idx = Math.floor(off / cs)
        const inChunk = off - idx * cs
        const step = Math.min(cs - inChunk, count - done)
        // a write of max_write size or past the first chunk means a big file:
        // take the whole chunk at once rather than grow it by copying
        const big = idx > 0 || step >= BIG_WRITE
        const from = done
        await this.intoDirty(idx, inChunk === 0 && step === cs, big, inChunk, (slot) => {
          this.reserve(slot, inChunk + step)
          data.copy(slot.buf, inChunk, from, from + step)
          slot.len = Math.max(slot.len, inChunk + step)
        })
        done += step
        this.size = Math.max(this.size, off + step)
        this.sizeDirty = true
        this.mtime = nowTimespec()
        // this write's time replaces a deferred utimens's mtime (not its atime)
        if (this.pending?.times?.mtime !== undefined) this.pending = { ...this.pending, times: { ...this.pending.times, mtime: undefined } }
        if (inChunk + step === cs) {
          await this.wholeIfDue(idx)
          await this.startUpload(idx)
        }
      }
    })
    await this.wb.relieve()
    return count
  }

  /**
   * Under the lock: makes chunk `idx` dirty for a write starting at `at` in
   * it and runs `fill` on it in the same synchronous step as the last check of
   * its state. (Returning the slot instead would not do: the caller's await
   * resumes a turn later, when an upload may have frozen that buffer.)
   */
  private async intoDirty(idx: number, whole: boolean, big: boolean, at: number, fill: (slot: Slot & { state: 'dirty' }) => void): Promise<void> {
    for (;;) {
      const slot = this.slots.get(idx)
      if (slot?.state === ChunkState.dirty) {
        if (whole && slot.from > 0) {
          // the write replaces every byte: the base's are not needed
          slot.from = 0
          slot.base = undefined
        }
        if (at >= slot.from) return fill(slot)
        await this.loadBase(idx, slot)
        continue
      }
      if (slot?.state === ChunkState.loading) throw new Error(`chunk ${idx} is loading outside its write`)
      if (slot?.state === ChunkState.uploading) {
        // copy on write: the upload keeps its frozen bytes, the chunk moves on
        const up = slot.upload
        this.supersede(up)
        const end = up.from + up.body.length
        if (whole) this.setDirty(idx, this.wb.buffers.take(true), 0, 0, undefined)
        else this.setDirty(idx, this.copyOf(up.buf.subarray(0, end), big), end, up.from, up.base)
        continue
      }
      const view = slot?.state === ChunkState.uploaded ? slot.ref : this.chunks.get(idx)
      const viewLen = view ? chunkLen(view) : 0
      const valid = view ? Math.min(viewLen, Math.max(0, this.size - idx * this.chunkSize)) : 0
      if (whole || !view || valid === 0 || (!view.hash && !view.data)) {
        if (slot?.state === ChunkState.uploaded && slot.commit.hash) this.unneeded.push(slot.commit.hash)
        this.setDirty(idx, whole || big ? this.wb.buffers.take(whole) : Buffer.alloc(MIN_BUFFER), 0, 0, undefined)
        continue
      }
      // an append to a committed block chunk: it stays as the base, only new bytes are buffered
      const appendable = view.hash !== null && valid === viewLen
      if (appendable && !slot && at >= valid) {
        this.setDirty(idx, big ? this.wb.buffers.take() : Buffer.alloc(bufferSize(valid, this.chunkSize)), valid, valid, view)
        continue
      }
      // read-modify-write (blocks are immutable), of the whole chunk, or only of
      // an uploaded slice when the write lands past the base it extends
      let from = 0
      let base: ChunkRef | undefined
      if (appendable && slot?.state === ChunkState.uploaded && slot.commit.append && slot.base && at >= slot.commit.expect!.len) {
        from = slot.commit.expect!.len
        base = slot.base
      }
      this.slots.set(idx, { state: ChunkState.loading })
      const buf = big ? this.wb.buffers.take() : Buffer.alloc(bufferSize(valid, this.chunkSize))
      try {
        await this.readInto(view, from, valid, buf)
      } catch (err) {
        if (slot) this.slots.set(idx, slot)
        else this.slots.delete(idx)
        throw err
      }
      if (slot?.state === ChunkState.uploaded && slot.commit.hash) this.unneeded.push(slot.commit.hash)
      this.setDirty(idx, buf, valid, from, base)
    }
  }

  /** A write below an appending buffer's `from`: bring the base's bytes in, the buffer then holds the whole chunk. */
  private async loadBase(idx: number, slot: Slot & { state: 'dirty' }): Promise<void> {
    this.slots.set(idx, { state: ChunkState.loading })
    try {
      if (slot.base) await this.readInto(slot.base, 0, slot.from, slot.buf)
    } catch (err) {
      this.slots.set(idx, slot)
      throw err
    }
    slot.from = 0
    slot.base = undefined
    this.slots.set(idx, slot)
  }

  /**
   * Under the lock: an appending chunk that is now full (or whose base has
   * MAX_SLICES slices) is uploaded whole instead of as a slice that
   * compaction would rewrite at once: its base is read in first.
   */
  private async wholeIfDue(idx: number): Promise<void> {
    const slot = this.slots.get(idx)
    if (slot?.state !== ChunkState.dirty || slot.from === 0) return
    if (slot.len >= this.chunkSize || (slot.base?.slices?.length ?? 0) >= MAX_SLICES) await this.loadBase(idx, slot)
  }

  /** A new dirty buffer holding `bytes` (sized for more writes). */
  private copyOf(bytes: Buffer, big: boolean): Buffer {
    const buf = big ? this.wb.buffers.take() : Buffer.alloc(bufferSize(bytes.length, this.chunkSize))
    bytes.copy(buf)
    return buf
  }

  private setDirty(idx: number, buf: Buffer, len: number, from: number, base: ChunkRef | undefined): void {
    this.slots.set(idx, { state: ChunkState.dirty, buf, len, from, base })
    this.wb.dirtyBytes += buf.length
    this.wb.track(this)
  }

  /** Grows a dirty buffer to hold `end` bytes (doubling, capped at the chunk size). */
  private reserve(slot: Slot & { state: 'dirty' }, end: number): void {
    if (end <= slot.buf.length) return
    const grown = Buffer.alloc(bufferSize(end, this.chunkSize))
    slot.buf.copy(grown, 0, 0, slot.len)
    this.wb.dirtyBytes += grown.length - slot.buf.length
    slot.buf = grown
  }

  /**
   * The upload's result will not be committed: its pin goes once it has
   * settled (uploaded or uploadFailed), not before: its pin call may still
   * be on its way, or may fail and take no pin at all.
   */
  private supersede(up: Upload): void {
    up.superseded = true
  }

  /** A given-up upload has settled: its pin goes with the next flush, or now if no flush will come. */
  private givenUp(hash: string): void {
    this.unneeded.push(hash)
    if (this.discarded) this.releaseUnneeded()
  }

  // ---- uploads ----

  /** Writeback pressure: uploads one dirty chunk; false if none. */
  async uploadOneIdle(): Promise<boolean> {
    for (const [idx, slot] of this.slots) if (slot.state === ChunkState.dirty) return this.startUpload(idx)
    return false
  }

  /**
   * Waits for an upload slot (backpressure), then freezes chunk `idx` if it is
   * still dirty and uploads it in the background: the whole buffer, or for an
   * appending one only its bytes from `from` on (a slice). False if it was not dirty.
   */
  private async startUpload(idx: number): Promise<boolean> {
    if (this.slots.get(idx)?.state !== ChunkState.dirty) return false
    await this.wb.slots.acquire()
    const slot = this.slots.get(idx)
    if (slot?.state !== ChunkState.dirty) {
      this.wb.slots.release()
      return false
    }
    if (slot.from > 0 && slot.len <= slot.from) {
      // nothing past the base (cut by a truncate): the chunk is its base again
      this.wb.slots.release()
      this.slots.delete(idx)
      this.wb.dirtyBytes -= slot.buf.length
      return false
    }
    const body = slot.buf.subarray(slot.from, slot.len)
    const up: Upload = { idx, hash: this.wb.blocks.nameOf(body), body, buf: slot.buf, from: slot.from, base: slot.base, superseded: false }
    this.slots.set(idx, { state: ChunkState.uploading, upload: up })
    const job = this.wb.blocks.put(body, up.hash).then(
      (put) => this.uploaded(up, { hash: put.hash, len: body.length, nodes: put.nodes, sums: put.sums }),
      (err: unknown) => this.uploadFailed(up, err),
    )
    const tracked = job.finally(() => {
      this.wb.slots.release()
      this.uploads.delete(tracked)
    })
    this.uploads.add(tracked)
    return true
  }

  /** uploading -> uploaded, unless the chunk moved on meanwhile. */
  private uploaded(up: Upload, block: { hash: string; len: number; nodes: string[]; sums: Uint8Array }): void {
    this.wb.dirtyBytes -= up.buf.length
    const slot = this.slots.get(up.idx)
    if (up.superseded || slot?.state !== ChunkState.uploading || slot.upload !== up) {
      this.givenUp(up.hash)
      return
    }
    if (up.from > 0 && up.base) {
      const commit: ChunkRef = { idx: up.idx, ...block, expect: { len: up.from, last: lastHash(up.base)! }, append: true }
      this.slots.set(up.idx, { state: ChunkState.uploaded, ref: withSlice(up.base, block), commit, base: up.base })
    } else {
      const ref: ChunkRef = { idx: up.idx, ...block }
      this.slots.set(up.idx, { state: ChunkState.uploaded, ref, commit: ref, base: undefined })
    }
    // a full chunk is handed to the cache as is; a partial one is copied so the
    // 4 MiB buffer behind it is not pinned for a few bytes
    this.wb.cache.add(block.hash, up.body.length === up.buf.length ? up.body : Buffer.from(up.body))
  }

  /**
   * uploading -> dirty again with the same bytes; the next flush reports the
   * error and retries. The failed upload's pin (if its pin call took one)
   * goes like any given-up upload's (givenUp).
   */
  private uploadFailed(up: Upload, err: unknown): void {
    // one whose pin was never taken has nothing to release
    if (!tookNoPin(err)) this.givenUp(up.hash)
    const slot = this.slots.get(up.idx)
    if (up.superseded || slot?.state !== ChunkState.uploading || slot.upload !== up) {
      this.wb.dirtyBytes -= up.buf.length
      return
    }
    this.slots.set(up.idx, { state: ChunkState.dirty, buf: up.buf, len: up.from + up.body.length, from: up.from, base: up.base })
    this.uploadError ??= err
  }

  // ---- flush, truncate, discard ----

  /**
   * Waits for uploads, uploads the rest, commits chunks + size in one call,
   * then compacts chunks that are due. `closing`: the last handle is closing.
   * `times` (utimensat while writes are pending) go in that same commit;
   * returns whether there was anything to commit (if not, they were not applied).
   */
  flush(meta: MetaApi, session: string, opts: { closing?: boolean; times?: CommitTimes } = {}): Promise<boolean> {
    return this.lock.run(() => this.flushLocked(meta, session, opts.closing === true, opts.times))
  }

  private async flushLocked(meta: MetaApi, session: string, closing: boolean, times?: CommitTimes): Promise<boolean> {
    const committed: number[] = []
    let any = false
    for (let attempt = 0; ; attempt++) {
      this.inlineSmall()
      for (const [idx, slot] of [...this.slots]) if (slot.state === ChunkState.dirty) await this.wholeIfDue(idx)
      await this.uploadAll()
      try {
        const done = await this.commitUploaded(meta, session, times)
        if (done) {
          any = true
          committed.push(...done)
        }
        break
      } catch (err) {
        // a chunk we appended to (or compacted) changed in meta: rewrite it whole
        if (codeOf(err) !== 'EAGAIN' || attempt >= 2) throw err
        await this.unAppend()
      }
    }
    if (this.wb.opts.compact !== false) {
      const due = new Set(committed)
      if (closing) for (const idx of this.sliced) due.add(idx)
      for (const idx of [...due].sort((a, b) => a - b)) await this.compactIfDue(meta, session, idx, closing)
    }
    this.releaseUnneeded()
    return any
  }

  /** Uploads every dirty chunk and waits for all uploads; throws the first upload error. */
  private async uploadAll(): Promise<void> {
    for (;;) {
      for (const [idx, slot] of [...this.slots]) if (slot.state === ChunkState.dirty) await this.startUpload(idx)
      if (this.uploads.size === 0 && ![...this.slots.values()].some((s) => s.state === ChunkState.dirty)) return
      await Promise.allSettled([...this.uploads])
      if (this.uploadError !== undefined) {
        const err = this.uploadError
        this.uploadError = undefined
        throw err instanceof BerthError ? err : new BerthError('EIO', `upload failed: ${(err as Error).message}`, { cause: err })
      }
    }
  }

  /**
   * Commits every uploaded chunk and the size (and `times`, with the last page);
   * uploaded -> committed. Returns the chunk indexes committed, null if there was nothing to commit.
   */
  private async commitUploaded(meta: MetaApi, session: string, times?: CommitTimes): Promise<number[] | null> {
    const done: Array<Slot & { state: 'uploaded' }> = []
    for (const slot of this.slots.values()) if (slot.state === ChunkState.uploaded) done.push(slot)
    done.sort((a, b) => a.ref.idx - b.ref.idx)
    const pending = this.pending
    if (done.length === 0 && !this.sizeDirty && !pending) return null
    const size = this.size
    // deferred attributes go with the last page (times given by the caller are newer)
    const allTimes = pending?.times || times ? dropUndefined({ ...pending?.times, ...times }) : undefined
    const attrs = pending ? dropUndefined({ mode: pending.mode, uid: pending.uid, gid: pending.gid }) : {}
    let attr: Attr | undefined
    const genBefore = this.attr.gen
    let pages = 0
    for (let i = 0; i === 0 || i < done.length; i += COMMIT_PAGE) {
      const chunks = done.slice(i, i + COMMIT_PAGE).map((s) => s.commit)
      const last = i + COMMIT_PAGE >= done.length
      pages++
      const reply = await meta.call('commit', { ino: this.attr.ino, session, size, chunks, mtime: this.mtime, ...(allTimes && last ? { times: allTimes } : {}), ...(last ? attrs : {}) })
      attr = reply.attr
    }
    if (this.pending === pending) {
      this.pending = undefined
      this.changedAt = undefined
    }
    this.fresh = false
    // uploaded -> committed (clean): nothing else ran meanwhile, the lock is ours
    for (const slot of done) {
      const idx = slot.ref.idx
      if (this.slots.get(idx) === slot) this.slots.delete(idx)
      this.setChunk(slot.ref)
    }
    for (const idx of [...this.chunks.keys()]) if (idx * this.chunkSize >= size) this.setChunk({ idx, hash: null, len: 0, nodes: [] })
    if (attr) {
      // every commit page moves gen by one (meta/files.ts)
      this.advanceMapGen(genBefore, pages, attr.gen)
      this.attr = attr
      this.size = attr.size
    }
    this.sizeDirty = false
    this.mtime = undefined
    return done.map((s) => s.ref.idx)
  }

  /** After EAGAIN: every uploaded slice becomes a dirty buffer of its whole chunk (base read back). */
  private async unAppend(): Promise<void> {
    for (const [idx, slot] of [...this.slots]) {
      if (slot.state !== ChunkState.uploaded || !slot.commit.expect) continue
      const len = chunkLen(slot.ref)
      this.slots.set(idx, { state: ChunkState.loading })
      const buf = Buffer.alloc(bufferSize(len, this.chunkSize))
      try {
        await this.readInto(slot.ref, 0, len, buf)
      } catch (err) {
        this.slots.set(idx, slot)
        throw err
      }
      if (slot.commit.hash) this.unneeded.push(slot.commit.hash)
      this.setDirty(idx, buf, len, 0, undefined)
    }
  }

  /**
   * Compaction (under the lock, after a commit): a committed chunk with slices
   * that is full, at MAX_SLICES, or (closing) mostly slices is read, uploaded
   * as one block and committed on the condition that it is still the chunk we
   * read. Its slice blocks then lose their references in meta and go through
   * GC like any other. A failure only leaves the chunk fragmented.
   */
  private async compactIfDue(meta: MetaApi, session: string, idx: number, closing: boolean): Promise<void> {
    const ref = this.chunks.get(idx)
    const n = ref?.slices?.length ?? 0
    if (!ref?.hash || n === 0 || this.slots.has(idx)) return
    const len = chunkLen(ref)
    const atClose = this.wb.opts.compactAtClose ?? COMPACT_AT_CLOSE
    const due = len >= this.chunkSize || n >= MAX_SLICES || (closing && n >= atClose && len - ref.len >= ref.len)
    if (!due) return
    let hash: string | undefined
    try {
      const buf = Buffer.alloc(len)
      await this.readInto(ref, 0, len, buf)
      const h = this.wb.blocks.nameOf(buf)
      await this.wb.slots.acquire()
      let put: BlockPut
      try {
        hash = h
        put = await this.wb.blocks.put(buf, h)
      } finally {
        this.wb.slots.release()
      }
      const next: ChunkRef = { idx, hash: h, len, nodes: put.nodes, sums: put.sums }
      const reply = await meta.call('commit', { ino: this.attr.ino, session, size: this.size, chunks: [{ ...next, expect: { len, last: lastHash(ref)! } }] })
      hash = undefined
      this.advanceMapGen(this.attr.gen, 1, reply.attr.gen)
      this.attr = reply.attr
      this.size = reply.attr.size
      this.setChunk(next)
      this.wb.cache.add(h, buf)
      this.wb.compactions++
    } catch (err) {
      // an upload that failed before its pin was taken has nothing to release:
      // releasing anyway would drop a pin another upload of the same bytes holds
      if (hash && !tookNoPin(err)) this.wb.blocks.release([hash])
      log.warn(`compaction of chunk ${idx} of inode ${this.attr.ino} failed (${codeOf(err) ?? (err as Error).message}); it stays in ${n + 1} blocks`)
    }
  }

  /**
   * A file of at most inlineMax bytes, all in chunk 0, is committed with its
   * bytes in meta instead of a block: one round trip instead of placement, an
   * HTTP PUT with replication and the commit (docs/architecture.md#inline-data).
   * One that grew past it while an inline chunk waited goes back to dirty.
   */
  private inlineSmall(): void {
    const slot = this.slots.get(0)
    const small = this.size <= this.wb.inlineMax && this.size <= this.chunkSize
    if (slot?.state === ChunkState.dirty && slot.from === 0 && small) {
      const len = Math.min(slot.len, this.size)
      const ref: ChunkRef = { idx: 0, hash: null, len, nodes: [], data: Buffer.from(slot.buf.subarray(0, len)) }
      this.slots.set(0, { state: ChunkState.uploaded, ref, commit: ref, base: undefined })
      this.wb.dirtyBytes -= slot.buf.length
    } else if (slot?.state === ChunkState.uploaded && slot.ref.data && !small) {
      const data = bytesOf(slot.ref.data)
      this.setDirty(0, this.copyOf(data, false), data.length, 0, undefined)
    }
  }

  /**
   * Truncate while open: commit what is pending, let meta cut the chunk map,
   * then cut the local state the same way.
   */
  truncate(meta: MetaApi, session: string, size: number): Promise<Attr> {
    return this.lock.run(async () => {
      await this.flushLocked(meta, session, false)
      const genBefore = this.attr.gen
      const sizeBefore = this.attr.size
      const { attr } = await meta.call('setattr', { ino: this.attr.ino, size })
      const cs = this.chunkSize
      for (const [idx, ref] of [...this.chunks]) {
        if (idx * cs >= size) this.setChunk({ idx, hash: null, len: 0, nodes: [] })
        else if ((idx + 1) * cs > size) this.setChunk(clipRef(ref, size - idx * cs))
      }
      for (const [idx, slot] of [...this.slots]) {
        if (idx * cs >= size) this.dropSlot(idx, slot)
        else if ((idx + 1) * cs > size) this.clipSlot(idx, slot, size - idx * cs)
      }
      // meta moves gen only when the size changes (meta/namespace.ts)
      this.advanceMapGen(genBefore, size === sizeBefore ? 0 : 1, attr.gen)
      this.attr = attr
      this.size = attr.size
      this.sizeDirty = this.slots.size > 0
      this.releaseUnneeded()
      return attr
    })
  }

  /** Cuts chunk `idx` (not clean) to `keep` bytes; one whose new bytes all go is its (clipped) base again. */
  private clipSlot(idx: number, slot: Slot, keep: number): void {
    if (slot.state === ChunkState.uploaded) {
      const at = slot.commit.append ? slot.commit.expect!.len : 0
      if (slot.commit.append && keep <= at) return this.dropSlot(idx, slot)
      const commit = slot.commit.append ? { ...slot.commit, len: Math.min(slot.commit.len, keep - at) } : clipRef(slot.commit, keep)
      this.slots.set(idx, { state: ChunkState.uploaded, ref: clipRef(slot.ref, keep), commit, base: slot.base })
    } else if (slot.state === ChunkState.uploading) {
      const up = slot.upload
      this.supersede(up)
      if (up.from > 0 && keep <= up.from) {
        this.slots.delete(idx)
        return
      }
      const end = Math.min(keep, up.from + up.body.length)
      this.setDirty(idx, this.copyOf(up.buf.subarray(0, end), false), end, up.from, up.base)
    } else if (slot.state === ChunkState.dirty) {
      if (slot.from > 0 && keep <= slot.from) return this.dropSlot(idx, slot)
      if (keep < slot.buf.length) slot.buf.fill(0, keep)
      slot.len = Math.min(slot.len, keep)
    }
  }

  /** Chunk `idx` leaves the file (truncated away, or discarded). */
  private dropSlot(idx: number, slot: Slot): void {
    this.slots.delete(idx)
    if (slot.state === ChunkState.dirty) this.wb.dirtyBytes -= slot.buf.length
    else if (slot.state === ChunkState.uploading) this.supersede(slot.upload)
    else if (slot.state === ChunkState.uploaded && slot.commit.hash) this.unneeded.push(slot.commit.hash)
  }

  /** Drops all local state (the last handle is gone); uploads not committed are released. */
  discard(): void {
    this.discarded = true
    for (const [idx, slot] of [...this.slots]) this.dropSlot(idx, slot)
    this.sizeDirty = false
    this.releaseUnneeded()
  }

  /** Releases pins of uploads nothing will commit; one whose hash a chunk holds again stays for later. */
  private releaseUnneeded(): void {
    if (this.unneeded.length === 0) return
    const held = new Set<string>()
    for (const slot of this.slots.values()) {
      if (slot.state === ChunkState.uploading && !slot.upload.superseded) held.add(slot.upload.hash)
      else if (slot.state === ChunkState.uploaded && slot.commit.hash) held.add(slot.commit.hash)
    }
    const gone = this.unneeded.filter((h) => !held.has(h))
    this.unneeded = this.unneeded.filter((h) => held.has(h))
    if (gone.length) this.wb.blocks.release(gone)
  }
}
