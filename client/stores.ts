/**
 * The two boundaries the VFS talks through, as narrow interfaces so tests can
 * drive the VFS with in-memory stores and faults can be injected by wrapping.
 * The real implementations are common/meta-client.ts and common/block-client.ts.
 */
import type { MetaOp, MetaReplies, MetaRequest } from '../common/protocol'
import type { GetOptions } from '../common/block-client'

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

/** Set on an error of BlockApi.put that came before its pin was taken: there is no pin to release. */
const NOT_PINNED = Symbol('berth.notPinned')

/** `err` (thrown by `put`'s pin step) marked as having taken no pin; returned for `throw`. */
export function markNotPinned(err: unknown): unknown {
  if (typeof err === 'object' && err !== null) Object.defineProperty(err, NOT_PINNED, { value: true })
  return err
}

export function tookNoPin(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { [NOT_PINNED]?: boolean })[NOT_PINNED] === true
}

export interface BlockApi {
  /**
   * Stores `data` durably on min(R, live) nodes; resolves with its hash, the
   * nodes and its piece sums. The block is pinned for this session from before
   * the upload until it is committed or released (GC cannot take it meanwhile).
   * A failure before the pin was taken is marked (tookNoPin): nothing to release.
   */
  put(data: Uint8Array, hash?: string): Promise<BlockPut>
  /** The name `data` would be stored under: the cluster's data nodes decide which hash (common/block-hash.ts). */
  nameOf(data: Uint8Array): string
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
  get(hash: string, nodes: string[], opts?: GetOptions): Promise<Buffer>
}
