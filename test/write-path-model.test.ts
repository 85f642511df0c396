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
  t.comment(`${r.runs} interleavings in ${r.ms} ms, ${r.failed} failed`)
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
