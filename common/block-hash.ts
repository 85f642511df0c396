/**
 * Block names: a block is named by a 256-bit hash of its bytes, written as 64
 * lowercase hex digits. Two hashes make names:
 *
 * - **BLAKE3** (@napi-rs/blake-hash, the `blake3` crate's SIMD code): what
 *   clients name new blocks with once every live data node accepts it. On
 *   this machine it hashes 6.4 GB/s on one core against SHA-256's 1.8 GB/s
 *   (with the CPU's SHA extensions), and a sequential write hashes every
 *   byte three times (the writing mount, then each of two copies' nodes):
 *   223-226 MB/s became 251-260 (docs/bench.md, "BLAKE3 block names").
 * - **SHA-256**: what every block written before was named by, and what a
 *   client names with while some live node is of a release that knows only
 *   SHA-256 (common/block-client.ts BlockClient.nameOf).
 *
 * The name does not say which hash made it. Whoever checks a block (a node
 * taking a PUT, scrub, fsck, a client reading a whole block) accepts bytes
 * whose BLAKE3 **or** SHA-256 is the name: finding bytes whose hash under one
 * equals another's name under the other is a preimage attack on both. So a
 * cluster may hold blocks named either way, forever, and nothing needs to
 * know which a given block used; only dedup across the two does not happen
 * (the same bytes under two names are two blocks).
 */
import { createHash } from 'node:crypto'
import { blake3 } from '@napi-rs/blake-hash'

export type BlockHash = 'blake3' | 'sha256'

/**
 * The hashes whose names a data node accepts, and lists in its heartbeats
 * (`blockHashes`): both. `BERTH_FAKE_BLOCK_HASHES=sha256` makes a node act as
 * one of a release before BLAKE3 names (a test aid, as BERTH_FAKE_PROTOCOL is;
 * test/block-names.test.ts), never for production.
 */
export function acceptedBlockHashes(env: NodeJS.ProcessEnv = process.env): BlockHash[] {
  return env.BERTH_FAKE_BLOCK_HASHES === 'sha256' ? ['sha256'] : ['blake3', 'sha256']
}

/** The block's name under `hash`: 64 lowercase hex digits. */
export function blockName(data: Uint8Array, hash: BlockHash): string {
  if (hash === 'sha256') return createHash('sha256').update(data).digest('hex')
  // the binding takes Buffers only: a view of the same bytes, no copy
  return blake3(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)).toString('hex')
}

/**
 * Checks block names, trying first the hash that matched last: a node of a
 * cluster that names with one of them then hashes each body once, and twice
 * only for a body that matches neither (a refusal) or for the other kind.
 */
export class BlockNameCheck {
  private readonly order: BlockHash[]

  constructor(accepted: readonly BlockHash[] = acceptedBlockHashes()) {
    this.order = [...accepted]
  }

  /** The hash under which `data` is named `name`, or null when no accepted hash names it so. */
  match(name: string, data: Uint8Array): BlockHash | null {
    for (let i = 0; i < this.order.length; i++) {
      const hash = this.order[i]!
      if (blockName(data, hash) !== name) continue
      if (i > 0) this.order.unshift(...this.order.splice(i, 1))
      return hash
    }
    return null
  }
}

/** Whether `data` is named `name` under either hash (BlockNameCheck, without its memory). */
export function namesBlock(name: string, data: Uint8Array): boolean {
  return blockName(data, 'blake3') === name || blockName(data, 'sha256') === name
}
