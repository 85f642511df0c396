/**
 * Whole-chunk buffers of a mount, reused once nothing can read them.
 *
 * A sequential write fills a fresh chunk-sized buffer per chunk, and the
 * block cache keeps it (the bytes of a block this mount wrote) until newer
 * blocks push it out. Left to the collector, every 64 MiB of such buffers
 * made V8 start a full mark-compact (it counts them as external memory):
 * 18 of them over a 1 GiB write, about 13 % of the mount's CPU, and every
 * fresh buffer's pages were faulted in and zeroed by the kernel again
 * (docs/bench.md "Chunk buffers reused").
 *
 * The rule that keeps reuse safe: a buffer goes back to the pool only if it
 * came from this pool and no reader was ever given a view of it. Blocks in
 * the cache are immutable for as long as anybody may read them (a reply is
 * a view into a cached block, client/open-file.ts readOut), so the cache
 * marks every buffer it hands out (`lend`) and gives back (`give`) only
 * those it evicts unlent. A buffer handed to an upload is safe to reuse
 * after the upload settled even if a failed attempt's socket still sends
 * from it: a node stores a body only under the name it hashes to.
 */
export class ChunkBuffers {
  private readonly free: Buffer[] = []
  /** Buffers this pool made; only these come back (an ArrayBuffer per buffer). */
  private readonly owned = new WeakSet<ArrayBufferLike>()
  /** Buffers a reader got a view of: never reused, left to the collector. */
  private readonly lent = new WeakSet<ArrayBufferLike>()
  /** Buffers handed out again instead of allocated (metrics, tests). */
  reused = 0

  constructor(
    /** The chunk size: the only size pooled. */
    readonly size: number,
    /** Free buffers kept at most; 0 turns reuse off. */
    private readonly keep: number,
  ) {}

  /** A chunk-sized buffer; zero-filled unless `overwritten` (the caller writes every byte before anything reads it). */
  take(overwritten = false): Buffer {
    const buf = this.free.pop()
    if (!buf) {
      const fresh = Buffer.alloc(this.size)
      if (this.keep > 0) this.owned.add(fresh.buffer)
      return fresh
    }
    this.owned.add(buf.buffer)
    this.reused++
    return overwritten ? buf : buf.fill(0)
  }

  /** A reader got `buf` or a view of it: it is never reused. */
  lend(buf: Buffer): void {
    if (this.owned.has(buf.buffer)) this.lent.add(buf.buffer)
  }

  /** `buf` is no longer referenced by its holder (the cache evicted it): reused if it is this pool's, whole and never lent. */
  give(buf: Buffer): void {
    const ab = buf.buffer
    if (this.free.length >= this.keep || !this.owned.has(ab) || this.lent.has(ab)) return
    if (buf.byteOffset !== 0 || buf.length !== this.size || ab.byteLength !== this.size) return
    this.owned.delete(ab) // owned again once taken: a buffer is given back at most once
    this.free.push(buf)
  }

  /** Free buffers held (tests). */
  get held(): number {
    return this.free.length
  }
}
