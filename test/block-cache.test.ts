// The block cache asks for whole blocks with the writer's piece sums, so the
// block client checks them by CRC32 rather than by hashing the whole block
// (common/block-client.ts wholeBlockCheck; test/blocks.test.ts covers the
// checks themselves against real nodes).
import t from 'tap'
import { BlockCache } from '../client/block-cache'
import { ChunkBuffers } from '../client/chunk-buffers'
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

t.test('chunk buffers: an evicted block this mount wrote is reused, one a reader saw never is', async (t) => {
  const size = 1024
  const buffers = new ChunkBuffers(size, 2)
  const cache = new BlockCache(new RecordingBlocks(data), { maxBytes: 2 * size, buffers })
  const hash = (c: string) => c.repeat(64)
  const written = (c: string) => {
    const b = buffers.take()
    t.ok(b.every((x) => x === 0), 'a buffer taken is zeros')
    b.fill(c.charCodeAt(0))
    return b
  }
  const a = written('a')
  const b = written('b')
  cache.add(hash('a'), a)
  cache.add(hash('b'), b)
  const seen = await cache.read({ idx: 0, hash: hash('b'), len: size, nodes: [] })
  t.equal(seen, b, 'a hit is the cached block itself')
  // two more blocks push a and b out
  const [c, d] = [written('c'), written('d')]
  cache.add(hash('c'), c)
  cache.add(hash('d'), d)
  t.equal(buffers.held, 1, 'only the block nobody read came back')
  const again = buffers.take()
  t.equal(again.buffer, a.buffer, 'the unread block holds the next chunk')
  t.ok(again.every((x) => x === 0), 'zeroed before it is handed out')
  t.ok(seen.every((x) => x === 'b'.charCodeAt(0)), 'the block a reader saw kept its bytes')
  t.equal(buffers.reused, 1)

  // not this pool's, not whole, or past `keep`: left to the collector
  buffers.give(Buffer.alloc(size))
  buffers.give(buffers.take().subarray(1))
  t.equal(buffers.held, 0, 'foreign and partial buffers are not taken back')
  const [x, y, z] = [buffers.take(), buffers.take(), buffers.take()]
  for (const buf of [x, y, z]) buffers.give(buf)
  buffers.give(x)
  t.equal(buffers.held, 2, 'at most `keep` buffers wait, and each comes back once')
  t.equal(buffers.take(true).buffer, y.buffer, 'the last one back goes out first')
  t.equal(new ChunkBuffers(size, 0).take().length, size, 'keep 0: plain allocations')
})
