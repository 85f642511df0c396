/**
 * Vfs.readOut, the FUSE adapter's read: where one cached block holds all the
 * bytes asked it answers with a view into that block (no zero-fill, no copy),
 * else with a scratch buffer filled as read() fills one. Both must give
 * exactly the bytes of the last write, in every chunk state: clean, dirty,
 * uploading, uploaded, appended slices, holes, past the end of the file.
 */
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { blockName } from '../common/block-hash'
import { ROOT_INO } from '../common/protocol'
import { PinnedBlocks } from '../client/pinned-blocks'
import type { MetaApi } from '../client/stores'
import type { Vfs } from '../client/vfs'
import { MemBlocks } from './helpers/mem-blocks'
import { engineCluster } from './helpers/vfs-engine'

const KiB = 1024
const MiB = 1024 * KiB
const ROOT = { uid: 0, gid: 0 }

/** readOut with a counted scratch buffer (filled with junk: a byte the read does not set must not leak). */
async function readOut(vfs: Vfs, fh: number, pos: number, len: number, scratches: { n: number }): Promise<Buffer> {
  const out = await vfs.readOut(fh, len, pos, () => {
    scratches.n++
    return Buffer.alloc(len, 0xa5)
  })
  return Buffer.from(out)
}

/** A cluster over in-memory blocks with one file, /f, written and closed by another mount. */
async function writtenFile(t: Test, data: Buffer) {
  const { mount } = await engineCluster(t)
  const store = new MemBlocks()
  const opts = { blocks: (meta: MetaApi, session: string) => new PinnedBlocks(store, meta, session) }
  const writer = (await mount('W', opts)).vfs
  const { fh, attr } = await writer.create(ROOT_INO, 'f', 0o644, 1, ROOT)
  await writer.write(fh, data, 0)
  await writer.flush(fh)
  await writer.release(fh)
  return { mount, store, opts, data, attr }
}

t.test('a sequential read inside one clean block is a view; other reads fill scratch; all give the written bytes', async (t) => {
  const { mount, store, opts, data, attr } = await writtenFile(t, randomBytes(3 * MiB + 100 * KiB))

  const reader = (await mount('R', opts)).vfs
  const { fh } = await reader.open(attr.ino, 0)
  const s = { n: 0 }
  for (let pos = 0; pos < data.length; pos += 128 * KiB) {
    const got = await readOut(reader, fh, pos, 128 * KiB, s)
    t.ok(got.equals(data.subarray(pos, pos + 128 * KiB)), `bytes at ${pos}`)
  }
  t.equal(s.n, 0, 'every 128 KiB read of the sequential pass is inside one block: no scratch buffer')
  const across = await readOut(reader, fh, MiB - 4 * KiB, 8 * KiB, s)
  t.ok(across.equals(data.subarray(MiB - 4 * KiB, MiB + 4 * KiB)), 'a read across two chunks')
  t.equal(s.n, 1, 'takes a scratch buffer')
  const tail = await readOut(reader, fh, data.length - 10, 4 * KiB, s)
  t.ok(tail.equals(data.subarray(data.length - 10)), 'a read past the end gives the bytes up to it')
  t.equal((await readOut(reader, fh, data.length + 5, 4 * KiB, s)).length, 0, 'a read starting past the end gives nothing')
  await reader.release(fh)
})

t.test('a block shorter than its ref: the missing bytes read as zeros, not junk', async (t) => {
  const { mount, store, opts, data, attr } = await writtenFile(t, randomBytes(MiB))
  store.short.set(blockName(data, 'blake3'), 600 * KiB)

  const reader = (await mount('R', opts)).vfs
  const { fh } = await reader.open(attr.ino, 0)
  const s = { n: 0 }
  const got = await readOut(reader, fh, 512 * KiB, 128 * KiB, s)
  t.ok(got.subarray(0, 88 * KiB).equals(data.subarray(512 * KiB, 600 * KiB)), 'the bytes the copy has')
  t.ok(got.subarray(88 * KiB).equals(Buffer.alloc(40 * KiB)), 'zeros after them')
  t.equal(got.length, 128 * KiB, 'the whole length asked')
  t.equal(s.n, 1, 'through a scratch buffer')
  await reader.release(fh)
})

t.test('random histories: writes, flushes, appends and reads on two mounts; every read is the model', async (t) => {
  const { mount } = await engineCluster(t)
  const store = new MemBlocks()
  const opts = { blocks: (meta: MetaApi, session: string) => new PinnedBlocks(store, meta, session) }
  const a = (await mount('A', opts)).vfs
  const b = (await mount('B', opts)).vfs
  const seed = Number(process.env.SEED ?? Date.now() % 100000)
  let x = seed
  const rand = (n: number) => {
    x = (x * 1103515245 + 12345) % 2147483648
    return x % n
  }
  t.comment(`seed ${seed}`)
  const { fh: w, attr } = await a.create(ROOT_INO, 'f', 0o644, 1, ROOT)
  let model = Buffer.alloc(0)
  const s = { n: 0 }
  let views = 0
  let reads = 0
  for (let step = 0; step < 300; step++) {
    const op = rand(10)
    if (op < 4) {
      // a write anywhere up to a little past the end (holes between read as zeros)
      const pos = rand(model.length + 256 * KiB)
      const bytes = randomBytes(1 + rand(op === 0 ? 1200 * KiB : 64 * KiB))
      await a.write(w, bytes, pos)
      const grown = Buffer.alloc(Math.max(model.length, pos + bytes.length))
      model.copy(grown)
      bytes.copy(grown, pos)
      model = grown
    } else if (op < 6) {
      await a.flush(w)
    } else {
      // reads on the writing mount (any chunk state) and, after a flush, on the other
      const onB = op === 9
      if (onB) await a.flush(w)
      const vfs = onB ? b : a
      const { fh } = await vfs.open(attr.ino, 0)
      // from 0 the reader streams (whole blocks, the view path); elsewhere it starts as a random reader
      let pos = rand(2) === 0 ? 0 : rand(model.length + 64 * KiB)
      for (let i = 0; i < 1 + rand(6); i++) {
        const len = 1 + rand(256 * KiB)
        const before = s.n
        const got = await readOut(vfs, fh, pos, len, s)
        const want = model.subarray(Math.min(pos, model.length), Math.min(model.length, pos + len))
        reads++
        if (s.n === before) views++
        if (!got.equals(want)) {
          t.fail(`step ${step}: read ${len} at ${pos} on ${onB ? 'B' : 'A'} differs from the model (seed ${seed})`)
          return
        }
        pos += len
      }
      await vfs.release(fh)
    }
  }
  t.pass(`${reads} reads matched the model, ${views} of them answered from a block view`)
  t.ok(views > 0, 'the view path ran')
  t.ok(views < reads, 'and the scratch path')
  await a.release(w)
})
