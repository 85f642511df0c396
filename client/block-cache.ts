/**
 * Blocks are immutable and named by their hash, so a cached block is never
 * stale. The cache is bounded in bytes (LRU); concurrent misses for one hash
 * share one fetch, and readahead uses the same path without being awaited.
 *
 * It holds only verified bytes: blocks fetched through BlockApi.get (checked
 * against their SHA-256 there) and blocks this client wrote (their hash was
 * computed from these very bytes). Ranges are verified against the chunk's
 * piece sums by BlockApi.get and are not cached.
 */
import { LRUCache } from 'lru-cache'
import type { ChunkRef } from '../common/protocol'
import { logger } from '../common/log'
import { Semaphore } from './semaphore'
import type { BlockApi } from './stores'

const log = logger('client')

export class BlockCache {
  private readonly cache: LRUCache<string, Buffer>
  private readonly inflight = new Map<string, Promise<Buffer>>()
  private readonly prefetchSlots: Semaphore
  /** Reads answered from memory, and reads that had to fetch (metrics). */
  hits = 0
  misses = 0

  constructor(
    private readonly blocks: BlockApi,
    opts: { maxBytes: number; prefetchConcurrency?: number },
  ) {
    this.cache = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (b) => Math.max(1, b.length),
    })
    this.prefetchSlots = new Semaphore(opts.prefetchConcurrency ?? 2)
  }

  /** The block `ref` names, from cache or from a node. */
  read(ref: ChunkRef): Promise<Buffer> {
    if (!ref.hash) return Promise.resolve(Buffer.alloc(0))
    const hit = this.cache.get(ref.hash)
    if (hit) {
      this.hits++
      return Promise.resolve(hit)
    }
    this.misses++
    return this.fetch(ref.hash, ref.nodes)
  }

  /**
   * `length` bytes at `offset` of the block: from the cache when it holds the
   * block, else a Range GET of the 64 KiB pieces covering them, each checked
   * against the writer's piece sums (`ref.sums`), not cached. Random readers
   * use this: fetching whole 4 MiB blocks for 4 KiB reads would move 1000x
   * the bytes and churn the cache. A chunk without sums (written before they
   * existed) is read as a whole block, verified by its hash, and cached.
   * Fewer bytes than asked only where the verified block itself ends.
   */
  async readRange(ref: ChunkRef, offset: number, length: number): Promise<Buffer> {
    if (!ref.hash) return Buffer.alloc(0)
    const hit = this.cache.get(ref.hash) ?? (await this.inflight.get(ref.hash)?.catch(() => undefined))
    if (hit) return hit.subarray(offset, offset + length)
    if (!ref.sums || ref.sums.length === 0) return (await this.fetch(ref.hash, ref.nodes)).subarray(offset, offset + length)
    return this.blocks.get(ref.hash, ref.nodes, { offset, length, sums: ref.sums })
  }

  /** Starts fetching `ref` in the background unless cached or already coming. */
  prefetch(ref: ChunkRef): void {
    const hash = ref.hash
    if (!hash || this.cache.has(hash) || this.inflight.has(hash)) return
    void (async () => {
      await this.prefetchSlots.acquire()
      try {
        if (!this.cache.has(hash)) await this.fetch(hash, ref.nodes)
      } catch (err) {
        log.debug(`readahead of ${hash.slice(0, 12)} failed`, err)
      } finally {
        this.prefetchSlots.release()
      }
    })()
  }

  /** A block this client just wrote: reading it back needs no round trip. */
  add(hash: string, data: Buffer): void {
    this.cache.set(hash, data)
  }

  get bytes(): number {
    return this.cache.calculatedSize
  }

  clear(): void {
    this.cache.clear()
  }

  private fetch(hash: string, nodes: string[]): Promise<Buffer> {
    const running = this.inflight.get(hash)
    if (running) return running
    const p = this.blocks
      .get(hash, nodes)
      .then((data) => {
        this.cache.set(hash, data)
        return data
      })
      .finally(() => this.inflight.delete(hash))
    this.inflight.set(hash, p)
    return p
  }
}
