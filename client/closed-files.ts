/**
 * Chunk maps of files no handle holds any more, so that the next read-only
 * open needs no `chunks` request to meta (docs/semantics.md#open-without-a-trip).
 *
 * An entry is the chunk map meta holds at content generation `gen`. Meta
 * bumps an inode's gen with every change to its map (commit, compaction,
 * size change, clone), and the map at a given gen never changes afterwards,
 * so "the map at gen G" is a fact, not a guess: an open may use the entry
 * exactly when meta's current gen is still G. The caller (client/vfs.ts)
 * learns that from its attribute cache, after a barrier that makes every
 * invalidation meta published before the open began arrive first.
 *
 * Entries are also dropped by any invalidation naming the inode, and all of
 * them when the cache must forget everything (NATS reconnect, a meta that
 * started serving). Bounded in bytes (inline data dominates), least recently
 * used first.
 */
import type { ChunkRef } from '../common/protocol'

export interface ClosedFile {
  gen: number
  size: number
  chunks: ChunkRef[]
}

/** What one ref costs to keep, beyond its inline bytes (hash, node ids, sums). */
const REF_BYTES = 256

/**
 * Bytes of their own: msgpackr hands out inline data and piece sums as views
 * into the message they came in (and Buffer.from pools small copies in
 * shared 8 KiB slabs), so an entry kept for long would keep a whole socket
 * read alive for a few bytes, unaccounted.
 */
function own(b: Uint8Array): Buffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return Buffer.from(b.buffer, 0, b.byteLength)
  const copy = Buffer.allocUnsafeSlow(b.byteLength)
  copy.set(b)
  return copy
}

function owned(c: ChunkRef): ChunkRef {
  return { ...c, ...(c.data ? { data: own(c.data) } : {}), ...(c.sums ? { sums: own(c.sums) } : {}) }
}

function costOf(chunks: ChunkRef[]): number {
  let n = 0
  for (const c of chunks) n += REF_BYTES + (c.data?.length ?? 0) + (c.sums?.length ?? 0)
  return n
}

export class ClosedFiles {
  private readonly entries = new Map<number, ClosedFile & { cost: number }>()
  private bytes = 0
  /** Opens answered from an entry, and opens that found one but had to ask meta (metrics). */
  hits = 0
  misses = 0

  constructor(private readonly maxBytes: number) {}

  /** Whether anything is kept at all (a bound of 0 keeps nothing). */
  get enabled(): boolean {
    return this.maxBytes > 0
  }

  get size(): number {
    return this.entries.size
  }

  /** The entry of `ino`, made most recently used. */
  get(ino: number): ClosedFile | undefined {
    const e = this.entries.get(ino)
    if (!e) return undefined
    this.entries.delete(ino)
    this.entries.set(ino, e)
    return e
  }

  set(ino: number, file: ClosedFile): void {
    this.drop(ino)
    const cost = costOf(file.chunks)
    if (cost > this.maxBytes) return
    this.entries.set(ino, { ...file, chunks: file.chunks.map(owned), cost })
    this.bytes += cost
    for (const [old, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break
      this.entries.delete(old)
      this.bytes -= e.cost
    }
  }

  drop(ino: number): void {
    const e = this.entries.get(ino)
    if (!e) return
    this.entries.delete(ino)
    this.bytes -= e.cost
  }

  clear(): void {
    this.entries.clear()
    this.bytes = 0
  }
}

/**
 * Which inodes an invalidation named while a fetch for them was in flight.
 * A reply and the invalidation of a change made just after meta answered can
 * arrive in one socket read: nats.js runs the invalidation's callback before
 * the code awaiting the reply resumes, so "named after the reply" cannot be
 * told from "named before it", and either counts (the fetched map is then
 * not trusted to be exact).
 */
export class NamedWatch {
  private readonly watched = new Map<number, { refs: number; named: number }>()

  /** Starts watching `ino`; the returned function ends it and says whether an invalidation named it meanwhile. */
  begin(ino: number): () => boolean {
    let w = this.watched.get(ino)
    if (!w) this.watched.set(ino, (w = { refs: 0, named: 0 }))
    w.refs++
    const seen = w.named
    return () => {
      const now = this.watched.get(ino)!
      if (--now.refs === 0) this.watched.delete(ino)
      return now.named !== seen
    }
  }

  note(ino: number): void {
    const w = this.watched.get(ino)
    if (w) w.named++
  }

  /** Everything watched counts as named (invalidations may have been lost). */
  noteAll(): void {
    for (const w of this.watched.values()) w.named++
  }
}
