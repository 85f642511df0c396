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
 * - Hashes uploaded but never to be committed (superseded, truncated away,
 *   discarded) are released after the next flush, unless a chunk still holds
 *   them; the write-back buffers and in-flight uploads are bounded by the
 *   Writeback shared by all files (backpressure: write() waits).
 */
import { sha256hex } from '../common/block-client'
import type { Attr, ChunkRef, Timespec } from '../common/protocol'
import { BerthError } from '../common/errors'
import { ChunkState, type Slot, type Upload } from './chunk-state'
import { Mutex } from './semaphore'
import type { MetaApi } from './stores'
import type { Writeback } from './writeback'

export { Writeback } from './writeback'

/** FUSE's max_write: writes this big come from copying a big file. */
const BIG_WRITE = 128 * 1024
/** Smallest chunk buffer; buffers grow by doubling from here. */
const MIN_BUFFER = 64 * 1024
/** Chunk refs per commit call. */
const COMMIT_PAGE = 1000

function bufferSize(need: number, chunkSize: number): number {
  let size = Math.min(MIN_BUFFER, chunkSize)
  while (size < need) size *= 2
  return Math.min(size, chunkSize)
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
  ref: ChunkRef
  inChunk: number
  step: number
  done: number
}

/** utimensat's times as a commit carries them ('now': meta's clock). */
export interface CommitTimes {
  atime?: Timespec | 'now'
  mtime?: Timespec | 'now'
}

export class OpenFile {
  attr: Attr
  size: number
  /** Clean and committed chunks: the chunk map as meta has it. */
  readonly chunks = new Map<number, ChunkRef>()
  /** Every chunk not clean: loading, dirty, uploading or uploaded. */
  readonly slots = new Map<number, Slot>()
  readonly uploads = new Set<Promise<void>>()
  handles = 0
  /** Size or times changed locally and not committed yet. */
  sizeDirty = false
  mtime: Timespec | undefined
  readonly lock = new Mutex()
  private uploadError: unknown
  /** Uploaded hashes no chunk will commit: released after the next flush (if no chunk holds them again). */
  private readonly unneeded = new Set<string>()

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
    return this.sizeDirty || this.slots.size > 0 || this.uploads.size > 0
  }

  /** The state of chunk `idx` (tests and metrics). */
  stateOf(idx: number): string {
    return this.slots.get(idx)?.state ?? ChunkState.clean
  }

  /** Attributes as this mount sees them: local size and mtime while dirty. */
  view(): Attr {
    if (!this.isDirty && this.size === this.attr.size) return this.attr
    const mtime = this.mtime ?? this.attr.mtime
    return { ...this.attr, size: this.size, mtime, ctime: mtime }
  }

  /**
   * Replaces the committed state with a fresh one from meta (close-to-open),
   * unless dirty or older than what this file already holds: the caller
   * fetched it before awaiting, and a commit of ours may have landed since
   * (taking it would roll back our own committed writes).
   */
  refresh(attr: Attr, chunks: ChunkRef[]): void {
    if (this.isDirty || attr.gen < this.attr.gen) return
    this.attr = attr
    this.size = attr.size
    this.chunks.clear()
    for (const c of chunks) this.chunks.set(c.idx, c)
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
    for (const f of fetches) {
      let copied = 0
      if (!random) {
        const block = await this.wb.cache.read(f.ref)
        const valid = Math.min(f.ref.len, block.length)
        copied = f.inChunk < valid ? block.copy(target, f.done, f.inChunk, Math.min(valid, f.inChunk + f.step)) : 0
      } else if (f.inChunk < f.ref.len) {
        const part = await this.wb.cache.readRange(f.ref, f.inChunk, Math.min(f.step, f.ref.len - f.inChunk))
        copied = part.copy(target, f.done)
      }
      if (copied < f.step) target.fill(0, f.done + copied, f.done + f.step)
    }
    return n
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
      let ref: ChunkRef | undefined
      if (slot?.state === ChunkState.dirty) local = slot.buf.subarray(0, slot.len)
      else if (slot?.state === ChunkState.uploading) local = slot.upload.body
      else ref = slot?.state === ChunkState.uploaded ? slot.ref : this.chunks.get(idx)
      if (ref?.data) local = bytesOf(ref.data).subarray(0, ref.len)
      else if (ref?.hash) fetches.push({ ref, inChunk, step, done })
      if (!ref?.hash) {
        const copied = local && inChunk < local.length ? local.copy(target, done, inChunk, Math.min(local.length, inChunk + step)) : 0
        if (copied < step) target.fill(0, done + copied, done + step)
      }
      done += step
    }
    return { n, fetches }
  }

  /** Starts fetching the chunks after `pos` (sequential readers). */
  readahead(pos: number, chunks: number): void {
    const first = Math.floor(pos / this.chunkSize)
    const last = Math.floor(Math.max(0, this.size - 1) / this.chunkSize)
    for (let idx = first; idx <= Math.min(last, first + chunks); idx++) {
      const slot = this.slots.get(idx)
      const ref = slot ? (slot.state === ChunkState.uploaded ? slot.ref : undefined) : this.chunks.get(idx)
      if (ref?.hash) this.wb.cache.prefetch(ref)
    }
  }

  // ---- writes ----

  /** `append`: write at the end of the file as it is when this write's turn comes (O_APPEND). */
  async write(data: Buffer, pos: number, append = false): Promise<number> {
    await this.lock.run(async () => {
      const at = append ? this.size : pos
      const cs = this.chunkSize
      for (let done = 0; done < data.length; ) {
        const off = at + done
        const idx = Math.floor(off / cs)
        const inChunk = off - idx * cs
        const step = Math.min(cs - inChunk, data.length - done)
        // a write of max_write size or past the first chunk means a big file:
        // take the whole chunk at once rather than grow it by copying
        const big = idx > 0 || step >= BIG_WRITE
        const from = done
        await this.intoDirty(idx, inChunk === 0 && step === cs, big, (slot) => {
          this.reserve(slot, inChunk + step)
          data.copy(slot.buf, inChunk, from, from + step)
          slot.len = Math.max(slot.len, inChunk + step)
        })
        done += step
        this.size = Math.max(this.size, off + step)
        this.sizeDirty = true
        this.mtime = nowTimespec()
        if (inChunk + step === cs) await this.startUpload(idx)
      }
    })
    await this.wb.relieve()
    return data.length
  }

  /**
   * Under the lock: makes chunk `idx` dirty and runs `fill` on it in the same
   * synchronous step as the last check of its state. (Returning the slot
   * instead would not do: the caller's await resumes a turn later, when an
   * upload may have frozen that buffer.)
   */
  private async intoDirty(idx: number, whole: boolean, big: boolean, fill: (slot: Slot & { state: 'dirty' }) => void): Promise<void> {
    for (;;) {
      const slot = this.slots.get(idx)
      if (slot?.state === ChunkState.dirty) return fill(slot)
      if (slot?.state === ChunkState.loading) throw new Error(`chunk ${idx} is loading outside its write`)
      if (slot?.state === ChunkState.uploading) {
        // copy on write: the upload keeps its frozen bytes, the chunk moves on
        const { body } = slot.upload
        this.supersede(slot.upload)
        this.setDirty(idx, whole ? Buffer.alloc(this.chunkSize) : this.copyOf(body, big), whole ? 0 : body.length)
        continue
      }
      const ref = slot?.state === ChunkState.uploaded ? slot.ref : this.chunks.get(idx)
      const valid = ref ? Math.min(ref.len, Math.max(0, this.size - idx * this.chunkSize)) : 0
      if (whole || !ref || valid === 0 || (!ref.hash && !ref.data)) {
        if (slot?.state === ChunkState.uploaded && slot.ref.hash) this.unneeded.add(slot.ref.hash)
        this.setDirty(idx, Buffer.alloc(whole || big ? this.chunkSize : MIN_BUFFER), 0)
        continue
      }
      // read-modify-write: blocks are immutable
      this.slots.set(idx, { state: ChunkState.loading })
      let block: Buffer
      try {
        block = ref.data ? bytesOf(ref.data) : await this.wb.cache.read(ref)
      } catch (err) {
        if (slot) this.slots.set(idx, slot)
        else this.slots.delete(idx)
        throw err
      }
      if (slot?.state === ChunkState.uploaded && slot.ref.hash) this.unneeded.add(slot.ref.hash)
      const keep = Math.min(valid, block.length)
      this.setDirty(idx, this.copyOf(block.subarray(0, keep), big), keep)
    }
  }

  /** A new dirty buffer holding `bytes` (sized for more writes). */
  private copyOf(bytes: Buffer, big: boolean): Buffer {
    const buf = Buffer.alloc(big ? this.chunkSize : bufferSize(bytes.length, this.chunkSize))
    bytes.copy(buf)
    return buf
  }

  private setDirty(idx: number, buf: Buffer, len: number): void {
    this.slots.set(idx, { state: ChunkState.dirty, buf, len })
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

  /** The upload's result will not be committed: release its pin (after the next flush). */
  private supersede(up: Upload): void {
    up.superseded = true
    this.unneeded.add(up.hash)
  }

  // ---- uploads ----

  /** Writeback pressure: uploads one dirty chunk; false if none. */
  async uploadOneIdle(): Promise<boolean> {
    for (const [idx, slot] of this.slots) if (slot.state === ChunkState.dirty) return this.startUpload(idx)
    return false
  }

  /**
   * Waits for an upload slot (backpressure), then freezes chunk `idx` if it is
   * still dirty and uploads it in the background. False if it was not dirty.
   */
  private async startUpload(idx: number): Promise<boolean> {
    if (this.slots.get(idx)?.state !== ChunkState.dirty) return false
    await this.wb.slots.acquire()
    const slot = this.slots.get(idx)
    if (slot?.state !== ChunkState.dirty) {
      this.wb.slots.release()
      return false
    }
    const body = slot.buf.subarray(0, slot.len)
    const up: Upload = { idx, hash: sha256hex(body), body, buf: slot.buf, superseded: false }
    this.slots.set(idx, { state: ChunkState.uploading, upload: up })
    const job = this.wb.blocks.put(body, up.hash).then(
      (put) => this.uploaded(up, { idx, hash: put.hash, len: body.length, nodes: put.nodes, sums: put.sums }),
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
  private uploaded(up: Upload, ref: ChunkRef): void {
    this.wb.dirtyBytes -= up.buf.length
    const slot = this.slots.get(up.idx)
    if (up.superseded || slot?.state !== ChunkState.uploading || slot.upload !== up) return
    this.slots.set(up.idx, { state: ChunkState.uploaded, ref })
    // a full chunk is handed to the cache as is; a partial one is copied so the
    // 4 MiB buffer behind it is not pinned for a few bytes
    this.wb.cache.add(ref.hash!, up.body.length === up.buf.length ? up.body : Buffer.from(up.body))
  }

  /**
   * uploading -> dirty again with the same bytes; the next flush reports the
   * error and retries. The pin taken for the failed upload is released
   * unless a retry holds the same hash by then.
   */
  private uploadFailed(up: Upload, err: unknown): void {
    this.unneeded.add(up.hash)
    const slot = this.slots.get(up.idx)
    if (up.superseded || slot?.state !== ChunkState.uploading || slot.upload !== up) {
      this.wb.dirtyBytes -= up.buf.length
      return
    }
    this.slots.set(up.idx, { state: ChunkState.dirty, buf: up.buf, len: up.body.length })
    this.uploadError ??= err
  }

  // ---- flush, truncate, discard ----

  /**
   * Waits for uploads, uploads the rest, commits chunks + size in one call.
   * `times` (utimensat while writes are pending) go in that same commit;
   * returns whether there was anything to commit (if not, they were not applied).
   */
  flush(meta: MetaApi, session: string, times?: CommitTimes): Promise<boolean> {
    return this.lock.run(() => this.flushLocked(meta, session, times))
  }

  private async flushLocked(meta: MetaApi, session: string, times?: CommitTimes): Promise<boolean> {
    this.inlineSmall()
    for (;;) {
      for (const [idx, slot] of [...this.slots]) if (slot.state === ChunkState.dirty) await this.startUpload(idx)
      if (this.uploads.size === 0 && ![...this.slots.values()].some((s) => s.state === ChunkState.dirty)) break
      await Promise.allSettled([...this.uploads])
      if (this.uploadError !== undefined) {
        const err = this.uploadError
        this.uploadError = undefined
        throw err instanceof BerthError ? err : new BerthError('EIO', `upload failed: ${(err as Error).message}`, { cause: err })
      }
    }
    const refs: ChunkRef[] = []
    for (const slot of this.slots.values()) if (slot.state === ChunkState.uploaded) refs.push(slot.ref)
    refs.sort((a, b) => a.idx - b.idx)
    if (refs.length > 0 || this.sizeDirty) {
      const size = this.size
      let attr: Attr | undefined
      for (let i = 0; i === 0 || i < refs.length; i += COMMIT_PAGE) {
        const last = i + COMMIT_PAGE >= refs.length
        const reply = await meta.call('commit', { ino: this.attr.ino, session, size, chunks: refs.slice(i, i + COMMIT_PAGE), mtime: this.mtime, ...(times && last ? { times } : {}) })
        attr = reply.attr
      }
      // uploaded -> committed (clean): nothing else ran meanwhile, the lock is ours
      for (const ref of refs) {
        const slot = this.slots.get(ref.idx)
        if (slot?.state === ChunkState.uploaded && slot.ref === ref) this.slots.delete(ref.idx)
        if (ref.hash || ref.data) this.chunks.set(ref.idx, ref)
        else this.chunks.delete(ref.idx)
      }
      for (const idx of [...this.chunks.keys()]) if (idx * this.chunkSize >= size) this.chunks.delete(idx)
      if (attr) {
        this.attr = attr
        this.size = attr.size
      }
      this.sizeDirty = false
      this.mtime = undefined
      this.releaseUnneeded()
      return true
    }
    this.releaseUnneeded()
    return false
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
    if (slot?.state === ChunkState.dirty && small) {
      const len = Math.min(slot.len, this.size)
      this.slots.set(0, { state: ChunkState.uploaded, ref: { idx: 0, hash: null, len, nodes: [], data: Buffer.from(slot.buf.subarray(0, len)) } })
      this.wb.dirtyBytes -= slot.buf.length
    } else if (slot?.state === ChunkState.uploaded && slot.ref.data && !small) {
      const data = bytesOf(slot.ref.data)
      this.setDirty(0, this.copyOf(data, false), data.length)
    }
  }

  /**
   * Truncate while open: commit what is pending, let meta cut the chunk map,
   * then cut the local state the same way.
   */
  truncate(meta: MetaApi, session: string, size: number): Promise<Attr> {
    return this.lock.run(async () => {
      await this.flushLocked(meta, session)
      const { attr } = await meta.call('setattr', { ino: this.attr.ino, size })
      const cs = this.chunkSize
      for (const [idx, ref] of [...this.chunks]) {
        if (idx * cs >= size) this.chunks.delete(idx)
        else if ((idx + 1) * cs > size) this.chunks.set(idx, clip(ref, size - idx * cs))
      }
      for (const [idx, slot] of [...this.slots]) {
        if (idx * cs >= size) this.dropSlot(idx, slot)
        else if ((idx + 1) * cs > size) this.clipSlot(idx, slot, size - idx * cs)
      }
      this.attr = attr
      this.size = attr.size
      this.sizeDirty = this.slots.size > 0
      this.releaseUnneeded()
      return attr
    })
  }

  /** Cuts chunk `idx` (not clean) to `keep` bytes. */
  private clipSlot(idx: number, slot: Slot, keep: number): void {
    if (slot.state === ChunkState.uploaded) {
      this.slots.set(idx, { state: ChunkState.uploaded, ref: clip(slot.ref, keep) })
    } else if (slot.state === ChunkState.uploading) {
      this.supersede(slot.upload)
      const kept = slot.upload.body.subarray(0, Math.min(keep, slot.upload.body.length))
      this.setDirty(idx, this.copyOf(kept, false), kept.length)
    } else if (slot.state === ChunkState.dirty) {
      if (keep < slot.buf.length) slot.buf.fill(0, keep)
      slot.len = Math.min(slot.len, keep)
    }
  }

  /** Chunk `idx` leaves the file (truncated away, or discarded). */
  private dropSlot(idx: number, slot: Slot): void {
    this.slots.delete(idx)
    if (slot.state === ChunkState.dirty) this.wb.dirtyBytes -= slot.buf.length
    else if (slot.state === ChunkState.uploading) this.supersede(slot.upload)
    else if (slot.state === ChunkState.uploaded && slot.ref.hash) this.unneeded.add(slot.ref.hash)
  }

  /** Drops all local state (the last handle is gone); uploads not committed are released. */
  discard(): void {
    for (const [idx, slot] of [...this.slots]) this.dropSlot(idx, slot)
    this.sizeDirty = false
    this.releaseUnneeded()
  }

  /** Releases pins of uploads nothing will commit; a hash a chunk holds again stays. */
  private releaseUnneeded(): void {
    if (this.unneeded.size === 0) return
    const held = new Set<string>()
    for (const slot of this.slots.values()) {
      if (slot.state === ChunkState.uploading && !slot.upload.superseded) held.add(slot.upload.hash)
      else if (slot.state === ChunkState.uploaded && slot.ref.hash) held.add(slot.ref.hash)
    }
    const gone = [...this.unneeded].filter((h) => !held.has(h))
    this.unneeded.clear()
    if (gone.length) this.wb.blocks.release(gone)
  }
}

/** `ref` cut to `keep` bytes (truncate never rewrites a block: it clips `len`). */
function clip(ref: ChunkRef, keep: number): ChunkRef {
  const len = Math.min(ref.len, keep)
  return { ...ref, len, data: ref.data?.subarray(0, len) }
}
