/**
 * Which reads fetch whole blocks (and prefetch the next ones) and which fetch
 * only the 64 KiB pieces they cover (client/read-pattern.ts). The case that
 * matters: a re-read of a file whose page cache the kernel kept, with small
 * holes in it. The kernel asks only for the holes, each a short run of reads
 * in the middle of the file; those must not pull whole blocks and readahead
 * (docs/bench.md, warm re-read with holes).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { ReadPattern, STREAM_MIN } from '../client/read-pattern'
import { PinnedBlocks } from '../client/pinned-blocks'
import type { MetaApi } from '../client/stores'
import type { Vfs } from '../client/vfs'
import { MemBlocks } from './helpers/mem-blocks'
import { engineCluster, until } from './helpers/vfs-engine'

const KiB = 1024
const MiB = 1024 * KiB
const ROOT = { uid: 0, gid: 0 }

t.test('a run from offset 0 streams at once; a run begun mid-file only after STREAM_MIN bytes asked', async (t) => {
  const p = new ReadPattern()
  t.ok(p.next(0, 128 * KiB), 'first read at 0')
  t.ok(p.next(128 * KiB, 128 * KiB), 'and on')
  t.ok(p.next(384 * KiB, 128 * KiB), 'the kernel sends reads slightly out of order')
  t.ok(p.next(256 * KiB, 128 * KiB), 'still the same run')

  const q = new ReadPattern()
  t.notOk(q.next(43 * MiB, 64 * KiB), 'a hole in the middle')
  t.notOk(q.next(43 * MiB + 64 * KiB, 36 * KiB), 'its second read')
  t.notOk(q.next(43 * MiB + 320 * KiB, 32 * KiB), 'a hole nearby: the run counts the bytes asked, not its span')
  t.notOk(q.next(300 * MiB, 128 * KiB), 'a far hole starts a new run')
  let pos = 300 * MiB + 128 * KiB
  let stream = false
  let asked = 128 * KiB
  while (!stream) {
    stream = q.next(pos, 128 * KiB)
    pos += 128 * KiB
    asked += 128 * KiB
  }
  t.equal(asked, STREAM_MIN, 'a reader that goes on from mid-file streams once it asked STREAM_MIN bytes')
  t.ok(q.next(0, 4 * KiB), 'a jump back to 0 streams')
  t.notOk(q.next(512 * MiB, 4 * KiB), 'a jump away from it does not')
})

/** Prefetches start without being awaited; a macrotask lets every one reach the store. */
const settle = () => new Promise((resolve) => setImmediate(resolve))

async function readAt(vfs: Vfs, fh: number, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len)
  const n = await vfs.read(fh, buf, len, pos)
  return buf.subarray(0, n)
}

t.test('through the client: holes fetch pieces and prefetch nothing; a read from 0 fetches blocks and reads ahead', async (t) => {
  const { mount } = await engineCluster(t)
  const store = new MemBlocks()
  const opts = { blocks: (meta: MetaApi, session: string) => new PinnedBlocks(store, meta, session), readaheadChunks: 2 }
  const writer = (await mount('W', opts)).vfs
  const data = randomBytes(8 * MiB)
  const { fh: w, attr } = await writer.create(ROOT_INO, 'f', 0o644, 1, ROOT)
  await writer.write(w, data, 0)
  await writer.flush(w)
  await writer.release(w)

  // a fresh mount: nothing of the file in its cache
  const reader = (await mount('R', opts)).vfs
  const { fh } = await reader.open(attr.ino, 0)
  const holes: Array<[number, number]> = [
    [5 * MiB + 4 * KiB, 64 * KiB],
    [5 * MiB + 68 * KiB, 36 * KiB],
    [6 * MiB + 512 * KiB, 128 * KiB],
  ]
  for (const [pos, len] of holes) t.ok((await readAt(reader, fh, pos, len)).equals(data.subarray(pos, pos + len)), `hole at ${pos}: the written bytes`)
  await settle()
  t.ok(store.gets.length > 0, 'the holes were fetched')
  t.same(store.gets.filter((g) => g.whole), [], 'as pieces: no whole block, no prefetch')
  await reader.release(fh)

  store.gets.length = 0
  const { fh: again } = await reader.open(attr.ino, 0)
  t.ok((await readAt(reader, again, 0, 128 * KiB)).equals(data.subarray(0, 128 * KiB)), 'a read from the start')
  await until(() => store.gets.filter((g) => g.whole).length >= 3)
  await settle()
  t.equal(store.gets.filter((g) => g.whole).length, 3, 'fetches its block whole and prefetches the next two')
  await reader.release(again)
})
