/**
 * Whole-chunk buffers of a mount, reused once nothing can read them.
 *
 * A sequential write fills a chunk-sized buffer per chunk, and a sequential
 * read fetches a block into one; the block cache keeps either until newer
 * blocks push it out. Left to the collector, every 64 MiB of such buffers
 * made V8 start a full mark-compact (it counts them as external memory):
 * 18 of them over a 1 GiB write or a 1 GiB cold read, 10-25 % of the
 * mount's CPU (docs/bench.md "Chunk buffers reused", "Fetched blocks
 * reused").
 *
 * The rule that keeps reuse safe: a buffer goes back to the pool only if it
 * came from this pool and nobody holds a view of it. Every reader of a cached
 * block borrows it (`borrow`) and settles (`settle`) once it stopped looking:
 * the FUSE adapter after its reply went to the kernel, a copying read after
 * the copy. A buffer evicted while borrowed comes back at its last settle; one
 * a reader never settles (an error path) is never reused, which is safe.
 *
 * An evicted buffer is not handed out again before the event loop's next
 * turn (`setImmediate`): a reader whose fetch resolved in the same run of
 * promise callbacks borrows it before then, even if the cache pushed the
 * block out in between. A buffer handed to an upload is safe to reuse after
 * the upload settled even if a failed attempt's socket still sends from it:
 * a node stores a body only under the name it hashes to.
 *
 *   taken ──(cached)──> cached ──(evicted)──> quarantined ──(next turn, not borrowed)──> free ──(take)──> taken
 *                                                 │      ▲
 *                                 (next turn, borrowed)  (last settle)
 *                                                 ▼      │
 *                                           evicted while borrowed
 */
export class ChunkBuffers {
  private readonly free: Buffer[] = []
  /** Evicted, waiting for the event loop's next turn. */
  private quarantined: Buffer[] = []
  private flushing = false
  /** Buffers this pool made; only these come back (an ArrayBuffer per buffer). */
  private readonly owned = new WeakSet<ArrayBufferLike>()
  /** Given back and not taken since: a buffer comes back once per take. */
  private readonly idle = new WeakSet<ArrayBufferLike>()
  /** Readers looking at a buffer now; absent = none. */
  private readonly borrowers = new WeakMap<ArrayBufferLike, number>()
  /** Evicted while borrowed: back to the pool at the last settle. */
  private readonly evictedWhileBorrowed = new WeakMap<ArrayBufferLike, Buffer>()
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
    this.idle.delete(buf.buffer)
    this.reused++
    return overwritten ? buf : buf.fill(0)
  }

  /** A reader looks at `buf` (or a view of it) until it calls settle(). */
  borrow(buf: Buffer): void {
    const ab = buf.buffer
    if (this.owned.has(ab)) this.borrowers.set(ab, (this.borrowers.get(ab) ?? 0) + 1)
  }

  /** A reader stopped looking at `buf` (a view of it will do). */
  settle(buf: Buffer): void {
    const ab = buf.buffer
    const n = this.borrowers.get(ab)
    if (n === undefined) return
    if (n > 1) {
      this.borrowers.set(ab, n - 1)
      return
    }
    this.borrowers.delete(ab)
    const whole = this.evictedWhileBorrowed.get(ab)
    if (whole) {
      this.evictedWhileBorrowed.delete(ab)
      this.quarantine(whole)
    }
  }

  /** `buf` is no longer referenced by its holder (the cache evicted it): reused if it is this pool's and whole, once nobody looks at it. */
  give(buf: Buffer): void {
    const ab = buf.buffer
    if (this.keep === 0 || !this.owned.has(ab) || this.idle.has(ab)) return
    if (buf.byteOffset !== 0 || buf.length !== this.size || ab.byteLength !== this.size) return
    this.idle.add(ab)
    this.quarantine(buf)
  }

  private quarantine(buf: Buffer): void {
    this.quarantined.push(buf)
    if (this.flushing) return
    this.flushing = true
    setImmediate(() => {
      this.flushing = false
      const due = this.quarantined
      this.quarantined = []
      for (const b of due) {
        // still or newly borrowed (a fetch's waiter resumes after the eviction): back at its last settle
        if (this.borrowers.has(b.buffer)) this.evictedWhileBorrowed.set(b.buffer, b)
        else if (this.free.length < this.keep) this.free.push(b)
      }
    })
  }

  /** Free buffers held (tests). */
  get held(): number {
    return this.free.length
  }
}
