/**
 * Blocks in memory with their piece sums, for Vfs tests over a real meta
 * engine (test/helpers/vfs-engine.ts; pinned by PinnedBlocks, as a mount's
 * are). Records every get; `short` cuts the named blocks' bodies, as a copy
 * shorter than its ref would be.
 */
import { blockName } from '../../common/block-hash'
import { pieceSums } from '../../common/checksums'
import type { BlockPut } from '../../client/stores'

export class MemBlocks {
  readonly blocks = new Map<string, Buffer>()
  readonly gets: Array<{ whole: boolean }> = []
  readonly short = new Map<string, number>()

  async put(data: Uint8Array, hash?: string): Promise<BlockPut> {
    const h = hash ?? this.nameOf(data)
    this.blocks.set(h, Buffer.from(data))
    return { hash: h, nodes: ['n1'], sums: pieceSums(data) }
  }

  nameOf(data: Uint8Array): string {
    return blockName(data, 'blake3')
  }

  async get(hash: string, _nodes: string[], opts?: { offset?: number; length?: number }): Promise<Buffer> {
    const b = this.blocks.get(hash)
    if (!b) throw new Error(`no block ${hash.slice(0, 8)}`)
    this.gets.push({ whole: opts?.offset === undefined })
    const body = b.subarray(0, this.short.get(hash) ?? b.length)
    const off = opts?.offset ?? 0
    return Buffer.from(body.subarray(Math.min(off, body.length), opts?.length === undefined ? undefined : off + opts.length))
  }
}
