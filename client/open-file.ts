/**
 * One open inode inside this mount, shared by every handle on it, so every
 * read and stat through any handle sees every completed write.
 *
 * Design
 * - The chunk map (`chunks`) is what meta has committed; `pending` holds chunks
 *   uploaded but not yet committed; `dirty` holds chunk buffers being written.
 *   Reads look in dirty, then pending, then chunks; a missing chunk is a hole.
 * - A write into a chunk that already has a block and does not cover the whole
 *   chunk first loads that block (read-modify-write: blocks are immutable).
 * - A chunk buffer is uploaded in the background as soon as it is full; the
 *   number of uploads in flight and the bytes of dirty buffers are bounded by
 *   the Writeback shared by all files (backpressure: write() waits).
 * - flush/fsync/release wait for uploads, upload what is left, then commit the
 *   changed chunks and the size to meta in one call.
 */
import { INLINE_MAX, type Attr, type ChunkRef, type Timespec } from '../common/protocol'
import { BerthError } from '../common/errors'
import type { BlockCache } from './block-cache'
import { Mutex, Semaphore } from './semaphore'
import type { BlockApi, MetaApi } from './stores'

interface ChunkBuf {
  /**
   * Grows on demand up to the chunk size: a small file must not cost a zeroed
   * 4 MiB allocation (that garbage dominated small-file creates).
   */
  data: Buffer
  /** Bytes of `data` that belong to the chunk; the rest are zeros, as is everything past `data`. */
  len: number
  uploading?: Promise<void>
}

/** FUSE's max_write: writes this big come from copying a big file. */
const BIG_WRITE = 128 * 1024
/** Smallest chunk buffer; buffers grow by doubling from here. */
const MIN_BUFFER = 64 * 1024

function bufferSize(need: number, chunkSize: number): number {
  let size = MIN_BUFFER
  while (size < need) size *= 2
  return Math.min(size, chunkSize)
}

export function nowTimespec(): Timespec {
  const ms = Date.now()
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000]
}

/** Shared write-back limits: in-flight uploads and dirty buffer bytes. */
export class Writeback {
  readonly slots: Semaphore
  dirtyBytes = 0
  private readonly files = new Set<OpenFile>()

  constructor(
    readonly blocks: BlockApi,
    readonly cache: BlockCache,
    readonly opts: { chunkSize: number; maxDirtyBytes: number; maxUploads: number },
  ) {
    this.slots = new Semaphore(opts.maxUploads)
  }

  track(f: OpenFile): void {
    this.files.add(f)
  }

  untrack(f: OpenFile): void {
    this.files.delete(f)
  }

  /** Over the dirty cap: upload partial buffers (any file) until under it. */
  async relieve(): Promise<void> {
    while (this.dirtyBytes > this.opts.maxDirtyBytes) {
      let started = false
      for (const f of this.files) {
        if (await f.uploadOneIdle()) {
          started = true
          break
        }
      }
      if (!started) {
        // everything dirty is already uploading: wait for one to finish
        const any = [...this.files].flatMap((f) => [...f.uploads])
        if (any.length === 0) return
        await Promise.race(any)
      }
    }
  }
}

export class OpenFile {
  attr: Attr
  size: number
  readonly chunks = new Map<number, ChunkRef>()
  readonly pending = new Map<number, ChunkRef>()
  readonly dirty = new Map<number, ChunkBuf>()
  private readonly loading = new Map<number, Promise<ChunkBuf>>()
  readonly uploads = new Set<Promise<void>>()
  handles = 0
  /** Size or times changed locally and not committed yet. */
  sizeDirty = false
  mtime: Timespec | undefined
  private writeSeq = 0
  private uploadError: unknown
  readonly lock = new Mutex()

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
    return this.sizeDirty || this.dirty.size > 0 || this.pending.size > 0 || this.uploads.size > 0
  }

  /** Attributes as this mount sees them: local size and mtime while dirty. */
  view(): Attr {
    if (!this.isDirty && this.size === this.attr.size) return this.attr
    const mtime = this.mtime ?? this.attr.mtime
    return { ...this.attr, size: this.size, mtime, ctime: mtime }
  }

  /** Replaces the committed state with a fresh one from meta (close-to-open), unless dirty. */
  refresh(attr: Attr, chunks: ChunkRef[]): void {
    if (this.isDirty) return
    this.attr = attr
    this.size = attr.size
    this.chunks.clear()
    for (const c of chunks) this.chunks.set(c.idx, c)
  }

  /** `random`: the caller is not reading sequentially (fetch only the bytes asked for). */
  async read(target: Buffer, pos: number, len: number, random = false): Promise<number> {
    if (pos >= this.size) return 0
    const n = Math.min(len, this.size - pos)
    const cs = this.chunkSize
    let done = 0
    while (done < n) {
      const off = pos + done
      const idx = Math.floor(off / cs)
      const inChunk = off - idx * cs
      const step = Math.min(cs - inChunk, n - done)
      const buf = this.dirty.get(idx)
      if (buf) {
        const copied = inChunk < buf.data.length ? buf.data.copy(target, done, inChunk, inChunk + step) : 0
        if (copied < step) target.fill(0, done + copied, done + step)
      } else {
        const ref = this.pending.get(idx) ?? this.chunks.get(idx)
        if (!ref || (!ref.hash && !ref.data)) {
          target.fill(0, done, done + step)
        } else {
          let copied = 0
          if (ref.data || !random) {
            const block = ref.data ? Buffer.from(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength) : await this.wb.cache.read(ref)
            const valid = Math.min(ref.len, block.length)
            copied = inChunk < valid ? block.copy(target, done, inChunk, Math.min(valid, inChunk + step)) : 0
          } else if (inChunk < ref.len) {
            const part = await this.wb.cache.readRange(ref, inChunk, Math.min(step, ref.len - inChunk))
            copied = part.copy(target, done)
          }
          if (copied < step) target.fill(0, done + copied, done + step)
        }
      }
      done += step
    }
    return n
  }

  /** Starts fetching the chunks after `pos` (sequential readers). */
  readahead(pos: number, chunks: number): void {
    const first = Math.floor(pos / this.chunkSize)
    const last = Math.floor(Math.max(0, this.size - 1) / this.chunkSize)
    for (let idx = first; idx <= Math.min(last, first + chunks); idx++) {
      if (this.dirty.has(idx)) continue
      const ref = this.pending.get(idx) ?? this.chunks.get(idx)
      if (ref?.hash) this.wb.cache.prefetch(ref)
    }
  }

  async write(data: Buffer, pos: number): Promise<number> {
    const cs = this.chunkSize
    let done = 0
    while (done < data.length) {
      const off = pos + done
      const idx = Math.floor(off / cs)
      const inChunk = off - idx * cs
      const step = Math.min(cs - inChunk, data.length - done)
      // a write of max_write size or past the first chunk means a big file:
      // take the whole chunk at once rather than grow it by copying
      const big = idx > 0 || step >= BIG_WRITE
      const buf = await this.bufferFor(idx, inChunk === 0 && step === cs, big)
      this.reserve(buf, inChunk + step)
      data.copy(buf.data, inChunk, done, done + step)
      buf.len = Math.max(buf.len, inChunk + step)
      done += step
      this.size = Math.max(this.size, off + step)
      this.writeSeq++
      this.sizeDirty = true
      this.mtime = nowTimespec()
      if (inChunk + step === cs) await this.startUpload(idx, buf)
    }
    await this.wb.relieve()
    return data.length
  }

  /** Waits for uploads, uploads the rest, commits chunks + size in one call. */
  flush(meta: MetaApi, session: string): Promise<void> {
    return this.lock.run(async () => {
      this.inlineSmall()
      for (;;) {
        for (const [idx, buf] of this.dirty) if (!buf.uploading) await this.startUpload(idx, buf)
        if (this.uploads.size === 0) break
        await Promise.allSettled([...this.uploads])
        if (this.uploadError !== undefined) {
          const err = this.uploadError
          this.uploadError = undefined
          throw err instanceof BerthError ? err : new BerthError('EIO', `upload failed: ${(err as Error).message}`, { cause: err })
        }
      }
      if (this.pending.size === 0 && !this.sizeDirty) return
      const refs = [...this.pending.values()].sort((a, b) => a.idx - b.idx)
      const seq = this.writeSeq
      const size = this.size
      const page = 1000
      let attr: Attr | undefined
      for (let i = 0; i === 0 || i < refs.length; i += page) {
        const reply = await meta.call('commit', { ino: this.attr.ino, session, size, chunks: refs.slice(i, i + page), mtime: this.mtime })
        attr = reply.attr
      }
      for (const ref of refs) {
        this.chunks.set(ref.idx, ref)
        if (this.pending.get(ref.idx) === ref) this.pending.delete(ref.idx)
      }
      for (const idx of [...this.chunks.keys()]) if (idx * this.chunkSize >= size) this.chunks.delete(idx)
      if (attr) this.attr = attr
      if (seq === this.writeSeq) {
        this.sizeDirty = false
        this.mtime = undefined
        if (attr) this.size = attr.size
      }
    })
  }

  /**
   * Truncate while open: commit what is pending, let meta cut the chunk map,
   * then cut the local state the same way.
   */
  async truncate(meta: MetaApi, session: string, size: number): Promise<Attr> {
    await this.flush(meta, session)
    return this.lock.run(async () => {
      const { attr } = await meta.call('setattr', { ino: this.attr.ino, size })
      const cs = this.chunkSize
      for (const map of [this.chunks, this.pending]) {
        for (const [idx, ref] of [...map]) {
          if (idx * cs >= size) map.delete(idx)
          else if ((idx + 1) * cs > size) {
            const len = Math.min(ref.len, size - idx * cs)
            map.set(idx, { ...ref, len, data: ref.data?.subarray(0, len) })
          }
        }
      }
      for (const [idx, buf] of [...this.dirty]) {
        if (idx * cs >= size) this.dropBuffer(idx, buf)
        else if ((idx + 1) * cs > size) {
          if (size - idx * cs < buf.data.length) buf.data.fill(0, size - idx * cs)
          buf.len = Math.min(buf.len, size - idx * cs)
        }
      }
      this.attr = attr
      this.size = attr.size
      this.sizeDirty = this.dirty.size > 0
      return attr
    })
  }

  /**
   * A file of at most INLINE_MAX bytes is committed with its bytes in meta
   * instead of a block: one round trip instead of placement, an HTTP PUT with
   * replication and the commit (docs/architecture.md#inline-data).
   */
  private inlineSmall(): void {
    const buf = this.dirty.get(0)
    if (!buf || buf.uploading || this.size > INLINE_MAX || this.dirty.size !== 1) return
    const len = Math.min(buf.len, this.size)
    this.pending.set(0, { idx: 0, hash: null, len, nodes: [], data: Buffer.from(buf.data.subarray(0, len)) })
    this.dropBuffer(0, buf)
  }

  /** Drops all buffers (after the file is gone for good). */
  discard(): void {
    for (const [idx, buf] of [...this.dirty]) this.dropBuffer(idx, buf)
  }

  /** Writeback pressure: uploads one idle partial buffer; false if none. */
  async uploadOneIdle(): Promise<boolean> {
    for (const [idx, buf] of this.dirty) {
      if (!buf.uploading) {
        await this.startUpload(idx, buf)
        return true
      }
    }
    return false
  }

  private async bufferFor(idx: number, whole: boolean, big = false): Promise<ChunkBuf> {
    for (;;) {
      const buf = this.dirty.get(idx)
      if (buf && !buf.uploading) return buf
      if (buf?.uploading) {
        await buf.uploading
        continue
      }
      const loading = this.loading.get(idx)
      if (loading) {
        await loading
        continue
      }
      break
    }
    const p = (async () => {
      const ref = this.pending.get(idx) ?? this.chunks.get(idx)
      let buf: ChunkBuf
      if (!whole && (ref?.hash || ref?.data)) {
        const block = ref.data ? Buffer.from(ref.data.buffer, ref.data.byteOffset, ref.data.byteLength) : await this.wb.cache.read(ref)
        const valid = Math.min(ref.len, block.length, Math.max(0, this.size - idx * this.chunkSize))
        buf = { data: Buffer.alloc(bufferSize(valid, this.chunkSize)), len: valid }
        block.copy(buf.data, 0, 0, valid)
      } else {
        buf = { data: Buffer.alloc(whole || big ? this.chunkSize : MIN_BUFFER), len: 0 }
      }
      this.dirty.set(idx, buf)
      this.wb.dirtyBytes += buf.data.length
      this.wb.track(this)
      return buf
    })()
    this.loading.set(idx, p)
    try {
      return await p
    } finally {
      this.loading.delete(idx)
    }
  }

  /** Grows `buf.data` to hold `end` bytes (doubling, capped at the chunk size). */
  private reserve(buf: ChunkBuf, end: number): void {
    if (end <= buf.data.length) return
    const grown = Buffer.alloc(bufferSize(end, this.chunkSize))
    buf.data.copy(grown, 0, 0, buf.len)
    // only called on a buffer bufferFor() just returned, so it is in `dirty` and counted
    this.wb.dirtyBytes += grown.length - buf.data.length
    buf.data = grown
  }

  private dropBuffer(idx: number, buf: ChunkBuf): void {
    if (this.dirty.get(idx) !== buf) return
    this.dirty.delete(idx)
    this.wb.dirtyBytes -= buf.data.length
  }

  /** Waits for an upload slot (backpressure), then uploads in the background. */
  private async startUpload(idx: number, buf: ChunkBuf): Promise<void> {
    if (buf.uploading) return
    let release!: () => void
    buf.uploading = new Promise<void>((r) => (release = r))
    await this.wb.slots.acquire()
    const job = (async () => {
      try {
        const body = buf.data.subarray(0, buf.len)
        const { hash, nodes, sums } = await this.wb.blocks.put(body)
        this.pending.set(idx, { idx, hash, len: buf.len, nodes, sums })
        // a full chunk is handed to the cache as is; a partial one is copied so the
        // 4 MiB buffer behind it is not pinned for a few bytes
        this.wb.cache.add(hash, buf.len === buf.data.length ? body : Buffer.from(body))
        this.dropBuffer(idx, buf)
      } catch (err) {
        this.uploadError ??= err
      } finally {
        buf.uploading = undefined
        this.wb.slots.release()
        release()
      }
    })()
    this.uploads.add(job)
    void job.finally(() => this.uploads.delete(job))
  }
}
