// The block cache asks for whole blocks with the writer's piece sums, so the
// block client checks them by CRC32 rather than by hashing the whole block
// (common/block-client.ts wholeBlockCheck; test/blocks.test.ts covers the
// checks themselves against real nodes).
import t from 'tap'
import { BlockCache } from '../client/block-cache'
import type { BlockApi, BlockPut } from '../client/stores'
import { pieceSums } from '../common/checksums'
import type { ChunkRef } from '../common/protocol'

type GetOpts = Parameters<BlockApi['get']>[2]

class RecordingBlocks implements BlockApi {
  readonly asked: Array<{ hash: string; opts: GetOpts }> = []
  constructor(private readonly data: Buffer) {}
  put(): Promise<BlockPut> {
    return Promise.reject(new Error('not in this test'))
  }
  release(): void {}
  nameOf(): string {
    throw new Error('not in this test')
  }
  async get(hash: string, _nodes: string[], opts?: GetOpts): Promise<Buffer> {
    this.asked.push({ hash, opts })
    return this.data
  }
}

const data = Buffer.alloc(200_000, 3)
const sums = pieceSums(data)
const ref = (hash: string, withSums: boolean): ChunkRef => ({ idx: 0, hash, len: data.length, nodes: ['n1'], ...(withSums ? { sums } : {}) })

t.test('a whole block is asked for with its sums; a block without sums, without', async (t) => {
  const blocks = new RecordingBlocks(data)
  const cache = new BlockCache(blocks, { maxBytes: 1 << 24 })
  await cache.read(ref('a'.repeat(64), true))
  await cache.read(ref('b'.repeat(64), false))
  cache.prefetch(ref('c'.repeat(64), true))
  for (let i = 0; i < 100 && blocks.asked.length < 3; i++) await new Promise((r) => setTimeout(r, 1))
  t.same(
    blocks.asked.map((a) => [a.hash[0], a.opts?.sums ? Buffer.from(a.opts.sums).equals(sums) : false, a.opts?.offset, a.opts?.length]),
    [
      ['a', true, undefined, undefined],
      ['b', false, undefined, undefined],
      ['c', true, undefined, undefined],
    ],
    'read and readahead pass the sums; no range',
  )
})
