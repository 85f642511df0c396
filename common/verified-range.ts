/**
 * Verified range reads: a range of a block is served by fetching the whole
 * SUM_PIECE pieces that cover it and checking each against the writer's piece
 * sums (common/checksums.ts). Only then is the asked-for slice cut out, so every
 * byte handed on was checked, and a replica that is corrupt, truncated or short
 * is detected by the same test: its piece does not match.
 *
 * A block of n pieces has n-1 full pieces and a last one of 1..SUM_PIECE bytes;
 * its exact size is not known from the sums, so the fetch for a range touching
 * the last piece asks up to a piece boundary and the node clips it at the block's
 * end. A last piece that verifies proves where the block ends.
 */
import { pieceMatches, SUM_PIECE } from './checksums'

export interface PieceSpan {
  /** First and last piece index covered (inclusive). */
  first: number
  last: number
  /** Byte range to ask the node for (inclusive end, may run past the block's end). */
  start: number
  end: number
}

/** Pieces in `sums`. */
export function pieceCount(sums: Uint8Array): number {
  return Math.floor(sums.length / 4)
}

/**
 * The pieces covering [offset, offset+length) of a block with these sums, or
 * null when the range starts past the last piece (the block has no bytes there).
 */
export function coveringPieces(sums: Uint8Array, offset: number, length: number): PieceSpan | null {
  const n = pieceCount(sums)
  const first = Math.floor(offset / SUM_PIECE)
  if (first >= n || length <= 0) return null
  const last = Math.min(n - 1, Math.floor((offset + length - 1) / SUM_PIECE))
  return { first, last, start: first * SUM_PIECE, end: (last + 1) * SUM_PIECE - 1 }
}

/**
 * Checks the fetched bytes of `span` piece by piece. Returns null when all
 * match, else why not (a short body fails like a corrupt one: a full piece must
 * be SUM_PIECE bytes, and a cut last piece does not match its sum).
 */
export function verifyPieces(sums: Uint8Array, span: PieceSpan, bytes: Uint8Array): string | null {
  const n = pieceCount(sums)
  for (let i = span.first; i <= span.last; i++) {
    const from = (i - span.first) * SUM_PIECE
    const piece = bytes.subarray(from, from + SUM_PIECE)
    const isLast = i === n - 1
    if (!isLast && piece.length !== SUM_PIECE) return `short: piece ${i} has ${piece.length} of ${SUM_PIECE} bytes`
    if (isLast && piece.length === 0) return `short: last piece ${i} missing`
    if (!pieceMatches(sums, i, piece)) return `checksum: piece ${i} does not match`
  }
  const expected = (span.last - span.first + 1) * SUM_PIECE
  if (bytes.length > expected) return `long: ${bytes.length} bytes for ${expected}`
  return null
}
