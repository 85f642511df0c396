/**
 * The two boundaries the VFS talks through, as narrow interfaces so tests can
 * drive the VFS with in-memory stores and faults can be injected by wrapping.
 * The real implementations are common/meta-client.ts and common/block-client.ts.
 */
import type { MetaOp, MetaReplies, MetaRequest } from '../common/protocol'

export interface MetaApi {
  /** Contract: rejects with a BerthError whose `code` is an errno name. */
  call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>, opts?: { deadlineMs?: number }): Promise<MetaReplies[Op]>
}

export interface BlockPut {
  hash: string
  /** Nodes holding a durable copy: min(R, live nodes) of them, or the put failed. */
  nodes: string[]
  /** Piece checksums of the block (common/checksums.ts), to be committed with it. */
  sums: Uint8Array
}

export interface BlockApi {
  /**
   * Stores `data` durably on min(R, live) nodes; resolves with its hash, the
   * nodes and its piece sums. The block is pinned for this session from before
   * the upload until it is committed or released (GC cannot take it meanwhile).
   */
  put(data: Uint8Array, hash?: string): Promise<BlockPut>
  /**
   * The caller will not commit these uploaded blocks (replaced or truncated
   * away before commit): their pins may go. Fire and forget.
   */
  release(hashes: string[]): void
  /**
   * Whole block (or a range), every byte verified: a block against `hash`, a
   * range against `sums` (the chunk's piece sums) or cut from a verified block.
   * Any listed node may serve; bad copies are skipped. Never unverified bytes.
   */
  get(hash: string, nodes: string[], opts?: { offset?: number; length?: number; sums?: Uint8Array }): Promise<Buffer>
}
