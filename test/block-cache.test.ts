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

/** The event loop's next turn: evicted buffers wait for it (client/chunk-buffers.ts). */
const nextTurn = () => new Promise<void>((r) => setImmediate(r))

t.test('chunk buffers: an evicted block is reused once nobody looks at it, never in the same turn', async (t) => {
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
  const seenTwice = await cache.read({ idx: 0, hash: hash('b'), len: size, nodes: [] })
  // two more blocks push a and b out
  const [c, d] = [written('c'), written('d')]
  cache.add(hash('c'), c)
  cache.add(hash('d'), d)
  t.equal(buffers.held, 0, 'nothing evicted is free in the same turn')
  await nextTurn()
  t.equal(buffers.held, 1, 'the block nobody looks at is free at the next turn')
  const again = buffers.take()
  t.equal(again.buffer, a.buffer, 'it holds the next chunk')
  t.ok(again.every((x) => x === 0), 'zeroed before it is handed out')
  t.ok(seen.every((x) => x === 'b'.charCodeAt(0)), 'the block readers look at kept its bytes')
  cache.release(seen.subarray(10, 20)) // a view of it settles too
  await nextTurn()
  t.equal(buffers.held, 0, 'not back while a second reader looks at it')
  cache.release(seenTwice)
  cache.release(seenTwice) // released once more after the last release: nothing left to undo
  t.equal(buffers.held, 0, 'not back in the turn of the last release')
  await nextTurn()
  t.equal(buffers.held, 1, 'back after the last reader released it')
  t.equal(buffers.take(true).buffer, b.buffer)
  t.equal(buffers.reused, 2)

  // not this pool's, not whole, or past `keep`: left to the collector
  buffers.give(Buffer.alloc(size))
  buffers.give(buffers.take().subarray(1))
  await nextTurn()
  t.equal(buffers.held, 0, 'foreign and partial buffers are not taken back')
  const [x, y, z] = [buffers.take(), buffers.take(), buffers.take()]
  for (const buf of [x, y, z]) buffers.give(buf)
  buffers.give(x)
  await nextTurn()
  t.equal(buffers.held, 2, 'at most `keep` buffers wait, and each comes back once')
  t.equal(buffers.take(true).buffer, y.buffer, 'the last one back goes out first')
  t.equal(new ChunkBuffers(size, 0).take().length, size, 'keep 0: plain allocations')
})

t.test('chunk buffers: a fetched block lands in a pooled buffer; one its reader got after the eviction waits for the release', async (t) => {
  const size = data.length
  const buffers = new ChunkBuffers(size, 4)
  class IntoBlocks extends RecordingBlocks {
    override async get(hash: string, nodes: string[], opts?: GetOpts): Promise<Buffer> {
      await super.get(hash, nodes, opts)
      const into = opts?.into?.(data.length)
      if (!into) return Buffer.from(data)
      data.copy(into)
      return into
    }
  }
  const cache = new BlockCache(new IntoBlocks(data), { maxBytes: size, buffers })
  const first = await cache.read(ref('a'.repeat(64), true))
  t.ok(first.equals(data), 'the body is the block')
  cache.release(first)
  // the next fetch pushes `first` out; at the next turn its buffer is free
  const second = cache.read(ref('b'.repeat(64), true))
  const third = cache.read(ref('c'.repeat(64), true)) // fetched alongside: pushes the second out before its reader resumes
  const [b2, b3] = await Promise.all([second, third])
  t.not(b2.buffer, b3.buffer, 'two fetches, two buffers')
  await nextTurn()
  t.equal(buffers.held, 1, 'only the released block is free; the second, evicted before its reader got it, is borrowed')
  t.equal(buffers.take(true).buffer, first.buffer)
  cache.release(b2)
  await nextTurn()
  t.equal(buffers.held, 1, 'the second comes back at its release')
  t.ok(b3.equals(data))
})
