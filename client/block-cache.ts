/**
 * Blocks are immutable and named by their hash, so a cached block is never
 * stale. The cache is bounded in bytes (LRU); concurrent misses for one hash
 * share one fetch, and readahead uses the same path without being awaited.
 *
 * It holds only verified bytes: blocks fetched through BlockApi.get (checked
 * against their SHA-256 there) and blocks this client wrote (their hash was
 * computed from these very bytes). Ranges come as whole 64 KiB pieces verified
 * against the chunk's piece sums by BlockApi.get; those pieces are kept in a
 * smaller LRU of their own, so 4 KiB reads near each other (database pages,
 * the kernel's split reads) fetch and check each piece once.
 */
import { LRUCache } from 'lru-cache'
import { SUM_PIECE } from '../common/checksums'
import type { ChunkRef } from '../common/protocol'
import { coveringPieces } from '../common/verified-range'
import { logger } from '../common/log'
import type { ChunkBuffers } from './chunk-buffers'
import { Semaphore } from './semaphore'
import type { BlockApi } from './stores'

const log = logger('client')
/** Blocks under this size are prefetched on slots of their own. */
const SMALL_BLOCK = 256 * 1024

export class BlockCache {
  private readonly cache: LRUCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  /** `${hash}:${piece}` -> verified piece (the last one of a block may be short). */
  private readonly pieces: LRUCache<string, Buffer>
  private readonly prefetchSlots: Semaphore
  /** Where evicted blocks go back for reuse; a block handed to a reader is borrowed until it is released. */
  private readonly buffers: ChunkBuffers | undefined
  /** Where a fetched whole block's body goes: a pooled buffer when it is chunk-sized. */
  private readonly into: ((size: number) => Buffer | undefined) | undefined
  /** Small blocks (appended slices) are latency-bound, not bandwidth-bound: more of them in flight. */
  private readonly smallPrefetchSlots = new Semaphore(16)
  /** Hashes waiting for a prefetch slot: asked again, they are not queued twice. */
  private readonly queued = new Set<string>()
  /** Reads answered from memory, and reads that had to fetch (metrics). */
  hits = 0
  misses = 0

  constructor(
    private readonly blocks: BlockApi,
    opts: { maxBytes: number; prefetchConcurrency?: number; buffers?: ChunkBuffers },
  ) {
    this.buffers = opts.buffers
    const pool = opts.buffers
    this.into = pool ? (size) => (size === pool.size ? pool.take(true) : undefined) : undefined
    this.cache = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
      // a block pushed out is reused for the next chunk written or fetched, once no reader looks at it
      dispose: (block, _hash, reason) => {
        if (reason === 'evict') this.buffers?.give(block)
      },
    })
    // verified pieces of random reads get a small budget of their own (an
    // eighth of the block cache, at most 32 MiB): they churn, and must not
    // push whole blocks out, nor shrink the room a block needs
    this.pieces = new LRUCache<string, Buffer>({
      maxSize: Math.max(SUM_PIECE, Math.min(32 * 1024 * 1024, Math.floor(opts.maxBytes / 8))),
      sizeCalculation: (b) => Math.max(1, b.length),
    })
    // four whole blocks on their way at once: with two, a cold sequential read
    // waited on its fetches (docs/bench.md "Cold reads: the kernel's readahead window")
    this.prefetchSlots = new Semaphore(opts.prefetchConcurrency ?? 4)
  }

  /**
   * The block `ref` names, from cache or from a node, borrowed: the caller
   * hands it back with release() once it stopped looking at it (a block never
   * released is never reused, client/chunk-buffers.ts).
   */
  read(ref: ChunkRef): Promise<Buffer> {
    if (!ref.hash) return Promise.resolve(Buffer.alloc(0))
    const hit = this.cache.get(ref.hash)
    if (hit) {
      this.hits++
      this.buffers?.borrow(hit)
      return Promise.resolve(hit)
    }
    this.misses++
    return this.fetch(ref.hash, ref.nodes, ref.sums).then((block) => {
      // in the same run of promise callbacks as the fetch's end: before an
      // eviction since then can hand the buffer out again (next turn at the earliest)
      this.buffers?.borrow(block)
      return block
    })
  }

  /** A block (or a view of it) read() or readRange() gave is no longer looked at. */
  release(block: Buffer): void {
    this.buffers?.settle(block)
  }

  /**
   * `length` bytes at `offset` of the block: from the cache when it holds the
   * block, else a Range GET of the 64 KiB pieces covering them, each checked
   * against the writer's piece sums (`ref.sums`), not cached. Random readers
   * use this: fetching whole 4 MiB blocks for 4 KiB reads would move 1000x
   * the bytes and churn the cache. A chunk without sums (written before they
   * existed) is read as a whole block, verified by its hash, and cached.
   * Fewer bytes than asked only where the verified block itself ends.
   * Borrowed like read(): release() it.
   */
  async readRange(ref: ChunkRef, offset: number, length: number): Promise<Buffer> {
    if (!ref.hash) return Buffer.alloc(0)
    const hit = this.cache.get(ref.hash) ?? (await this.inflight.get(ref.hash)?.catch(() => undefined))
    if (hit) {
      this.buffers?.borrow(hit)
      return hit.subarray(offset, offset + length)
    }
    const sums = ref.sums
    if (!sums || sums.length === 0) return (await this.read(ref)).subarray(offset, offset + length)
    const span = coveringPieces(sums, offset, length)
    if (!span) return Buffer.alloc(0)
    const hash = ref.hash
    const cached: Buffer[] = []
    for (let i = span.first; i <= span.last; i++) {
      const piece = this.pieces.get(`${hash}:${i}`)
      if (!piece) break
      cached.push(piece)
    }
    let bytes: Buffer
    if (cached.length === span.last - span.first + 1) {
      this.hits++
      bytes = cached.length === 1 ? cached[0]! : Buffer.concat(cached)
    } else {
      this.misses++
      // whole pieces, each checked against its sum by BlockApi.get
      bytes = await this.blocks.get(hash, ref.nodes, { offset: span.start, length: span.end - span.start + 1, sums })
      for (let i = span.first; i <= span.last; i++) {
        const piece = bytes.subarray((i - span.first) * SUM_PIECE, (i - span.first + 1) * SUM_PIECE)
        if (piece.length) this.pieces.set(`${hash}:${i}`, piece)
      }
    }
    return bytes.subarray(offset - span.start, offset - span.start + length)
  }

  /** Starts fetching `ref` in the background unless cached or already coming. */
  prefetch(ref: ChunkRef): void {
    const hash = ref.hash
    if (!hash || this.cache.has(hash) || this.inflight.has(hash) || this.queued.has(hash)) return
    const slots = ref.len < SMALL_BLOCK ? this.smallPrefetchSlots : this.prefetchSlots
    this.queued.add(hash)
    void (async () => {
      await slots.acquire()
      this.queued.delete(hash)
      try {
        if (!this.cache.has(hash)) await this.fetch(hash, ref.nodes, ref.sums)
      } catch (err) {
        log.debug(`readahead of ${hash.slice(0, 12)} failed`, err)
      } finally {
        slots.release()
      }
    })()
  }

  /** A block this client just wrote: reading it back needs no round trip. */
  add(hash: string, data: Buffer): void {
    this.cache.set(hash, data)
  }

  get bytes(): number {
    return this.cache.calculatedSize + this.pieces.calculatedSize
  }

  clear(): void {
    this.cache.clear()
    this.pieces.clear()
  }

  /** The whole block, checked against `sums` when given (block-client.ts wholeBlockCheck), else its hash. */
  private fetch(hash: string, nodes: string[], sums?: Uint8Array): Promise<Buffer> {
    const running = this.inflight.get(hash)
    if (running) return running
    const p = this.blocks
      .get(hash, nodes, { sums, into: this.into })
      .then((data) => {
        this.cache.set(hash, data)
        return data
      })
      .finally(() => this.inflight.delete(hash))
    this.inflight.set(hash, p)
    return p
  }
}
