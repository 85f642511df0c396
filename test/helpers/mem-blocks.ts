/**
 * Blocks in memory with their piece sums, for Vfs tests over a real meta
 * engine (test/helpers/vfs-engine.ts; pinned by PinnedBlocks, as a mount's
 * are). Records every get; `short` cuts the named blocks' bodies, as a copy
 * shorter than its ref would be.
 */
import { sha256hex } from '../../common/block-client'
import { pieceSums } from '../../common/checksums'
import type { BlockPut } from '../../client/stores'

export class MemBlocks {
  readonly blocks = new Map<string, Buffer>()
  readonly gets: Array<{ whole: boolean }> = []
  readonly short = new Map<string, number>()

  async put(data: Uint8Array, hash?: string): Promise<BlockPut> {
    const h = hash ?? sha256hex(data)
    this.blocks.set(h, Buffer.from(data))
    return { hash: h, nodes: ['n1'], sums: pieceSums(data) }
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
