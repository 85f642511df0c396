// The write-path state machine (docs/architecture.md#write-path) against a
// plain byte array: 10,000 seeded random interleavings of write, O_APPEND
// write, read, truncate, flush and close across handles, with uploads and
// commits finishing in random orders (test/helpers/write-path-model.ts).
// WRITE_PATH_SEED=<n> replays one seed; its problems are printed.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { BlockCache } from '../client/block-cache'
import { OpenFile } from '../client/open-file'
import { Writeback } from '../client/writeback'
import { MemBlocks, MemMeta, SESSION, World, type runSeeds } from './helpers/write-path-model'

const INTERLEAVINGS = 10_000
const MODEL = join(__dirname, 'helpers', 'write-path-model.js')

function runModel(from: number, count: number): Promise<Awaited<ReturnType<typeof runSeeds>>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [MODEL, String(from), String(count)], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
      if (err) reject(err)
      else resolve(JSON.parse(stdout) as Awaited<ReturnType<typeof runSeeds>>)
    })
  })
}

t.test(`${INTERLEAVINGS} random interleavings match a byte array`, async (t) => {
  const only = process.env.WRITE_PATH_SEED
  const r = only ? await runModel(Number(only), 1) : await runModel(1, INTERLEAVINGS)
  if (r.problems.length) t.comment(r.problems.join('\n'))
  t.comment(`${r.runs} interleavings in ${r.ms} ms, ${r.failed} failed; commits: ${r.stats.appends} slice appends, ${r.stats.compactions} compactions, ${r.stats.refused} refused (EAGAIN); ${r.stats.reused} chunk buffers reused, ${r.stats.fetchedInto} blocks fetched into pooled buffers, ${r.stats.views} reads answered with a view into a cached block`)
  if (!only) t.ok(r.stats.appends > 0 && r.stats.compactions > 0 && r.stats.refused > 0, 'appends, compactions and refusals were all exercised')
  if (!only) t.ok(r.stats.reused > 0 && r.stats.views > 0 && r.stats.fetchedInto > 0, 'chunk buffers were reused, blocks fetched into them, and reads answered with views')
  t.equal(r.failed, 0, 'every interleaving matches the model')
})

t.test('a write into a chunk that is uploading is not lost (copy on write)', async (t) => {
  const w = new World(1)
  const store = new MemBlocks(w)
  const meta = new MemMeta(w, store, 16)
  const wb = new Writeback(store, new BlockCache(store, { maxBytes: 1024 }), { chunkSize: 16, maxDirtyBytes: 1024, maxUploads: 4, inlineMax: 0 })
  const f = new OpenFile(meta.attr(), wb)
  await f.write(Buffer.from('0123456789abcdef'), 0) // a full chunk starts uploading
  t.equal(f.stateOf(0), 'uploading')
  await f.write(Buffer.from('XY'), 4)
  t.equal(f.stateOf(0), 'dirty', 'the write took a new buffer')
  await f.flush(meta, SESSION)
  t.equal(meta.content().toString(), '0123XY6789abcdef')
  t.equal(f.stateOf(0), 'clean', 'committed')
  t.same(w.problems, [])
  t.equal(store.pins.size, 0, 'the superseded upload was released')
})

t.test('appends upload only their bytes as slices; a chunk is rewritten whole once, when full or at the last close', async (t) => {
  const w = new World(2)
  const store = new MemBlocks(w)
  const meta = new MemMeta(w, store, 16)
  const wb = new Writeback(store, new BlockCache(store, { maxBytes: 1024 }), { chunkSize: 16, maxDirtyBytes: 1024, maxUploads: 4, inlineMax: 0, compactAtClose: 2 })
  const f = new OpenFile(meta.attr(), wb)
  const text = '0123456789abcdefXYZ@#$'
  for (let i = 0; i < text.length; i += 2) {
    await f.write(Buffer.from(text.slice(i, i + 2)), 0, true)
    await f.flush(meta, SESSION)
  }
  t.equal(meta.content().toString(), text)
  // chunk 0: 2 bytes whole, 6 slices of 2, then the write that fills it goes whole (16); chunk 1: 2 bytes whole, 2 slices
  t.equal(meta.appends, 6 + 2, 'slices appended')
  t.equal(store.putBytes, 2 + 6 * 2 + 16 + 2 + 2 * 2, 'bytes uploaded: each byte about twice, never the whole chunk per append')
  t.equal(meta.chunks.get(0)?.slices, undefined, 'the full chunk 0 is one block again')
  t.equal(meta.chunks.get(1)?.slices?.length, 2, 'chunk 1 is in slices while the file is open')
  await f.flush(meta, SESSION, { closing: true })
  t.equal(meta.compactions, 1, 'the last close compacted chunk 1 (conditional commit)')
  t.equal(meta.chunks.get(1)?.slices, undefined, 'chunk 1 is one block')
  t.equal(meta.content().toString(), text)
  const back = Buffer.alloc(text.length)
  t.equal(await f.read(back, 0, back.length), text.length)
  t.equal(back.toString(), text)
  t.same(w.problems, [])
  f.discard()
  t.equal(store.pins.size, 0)
})
