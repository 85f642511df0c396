/**
 * Benchmark data that no layer can shortcut: berth deduplicates blocks by
 * content hash, so repeated or zero-filled buffers would measure dedup, not I/O.
 * Every 1 MiB piece is a slice of a random pool with its index stamped in the
 * first 8 bytes, so every piece (and every 4 MiB chunk) is unique, and the
 * expected bytes at any offset can be recomputed to verify what is read back.
 */
import { randomBytes } from 'node:crypto'

export const MiB = 1024 * 1024
const POOL_BYTES = 64 * MiB
const STAMP_BYTES = 8

export class Pattern {
  private readonly pool: Buffer

  /** `salt` separates streams (big file, filler, small files) so they never share content. */
  constructor(private readonly salt: bigint = 0n, pool?: Buffer) {
    this.pool = pool ?? randomBytes(POOL_BYTES)
  }

  /** Same pool, different stamps: cheap second stream. */
  withSalt(salt: bigint): Pattern {
    return new Pattern(salt, this.pool)
  }

  /** Fills `buf` with piece `index` of size `buf.length` (at most 1 MiB). */
  piece(index: number, buf: Buffer): Buffer {
    const start = (index * buf.length) % (this.pool.length - buf.length + 1)
    this.pool.copy(buf, 0, start, start + buf.length)
    buf.writeBigUInt64LE(this.salt + BigInt(index), 0)
    return buf
  }

  /** The bytes at [offset, offset+len) of a file written as consecutive `pieceBytes` pieces; must not cross a piece. */
  expected(offset: number, len: number, pieceBytes: number): Buffer {
    const index = Math.floor(offset / pieceBytes)
    const within = offset - index * pieceBytes
    if (within + len > pieceBytes) throw new RangeError('expected(): range crosses a piece boundary')
    const start = (index * pieceBytes) % (this.pool.length - pieceBytes + 1)
    const out = Buffer.from(this.pool.subarray(start + within, start + within + len))
    if (within < STAMP_BYTES) {
      const stamp = Buffer.allocUnsafe(STAMP_BYTES)
      stamp.writeBigUInt64LE(this.salt + BigInt(index), 0)
      stamp.copy(out, 0, within, Math.min(STAMP_BYTES, within + len))
    }
    return out
  }
}

/** mulberry32: tiny seeded PRNG so random-read offsets are the same on every run and both sides. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
