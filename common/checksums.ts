/**
 * End-to-end checksums of a block: the writer computes a CRC32 of every
 * SUM_PIECE bytes of the block (the last piece may be shorter), meta stores
 * them beside the block, and a reader verifies every byte it returns against
 * them, ranges included (a 4 KiB read fetches and checks its 64 KiB piece).
 * The SHA-256 name of a block already verifies whole-block reads; the piece
 * sums make range reads verifiable without fetching the whole block.
 *
 * Encoding: 4 bytes big-endian per piece, in piece order. CRC32 from
 * node:zlib (native, no dependency); it detects corruption, it is not a MAC.
 */
import { crc32 } from 'node:zlib'

export const SUM_PIECE = 64 * 1024

/** The piece sums of a whole block. */
export function pieceSums(data: Uint8Array): Uint8Array {
  const pieces = Math.ceil(data.length / SUM_PIECE)
  const out = Buffer.alloc(pieces * 4)
  for (let i = 0; i < pieces; i++) {
    const start = i * SUM_PIECE
    out.writeUInt32BE(crc32(data.subarray(start, Math.min(data.length, start + SUM_PIECE))) >>> 0, i * 4)
  }
  return out
}

/** The stored sum of piece `i`, or undefined when `sums` has no such piece. */
export function pieceSum(sums: Uint8Array, i: number): number | undefined {
  if (i < 0 || (i + 1) * 4 > sums.length) return undefined
  return Buffer.from(sums.buffer, sums.byteOffset, sums.byteLength).readUInt32BE(i * 4)
}

/** True when `bytes` (piece `i` of a block, whole) matches its stored sum. */
export function pieceMatches(sums: Uint8Array, i: number, bytes: Uint8Array): boolean {
  const want = pieceSum(sums, i)
  return want !== undefined && (crc32(bytes) >>> 0) === want
}
