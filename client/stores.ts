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

export interface BlockApi {
  /** Stores `data` durably on `replicas` nodes; resolves with its hash and the nodes. */
  put(data: Uint8Array, hash?: string): Promise<{ hash: string; nodes: string[] }>
  /** Whole block (or a range), verified against `hash`; any listed node may serve. */
  get(hash: string, nodes: string[], opts?: { offset?: number; length?: number }): Promise<Buffer>
}
