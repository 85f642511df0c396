/**
 * A data node writes block files with O_DIRECT (node/block-store.ts,
 * node/block-buffer.ts): every size reads back exact, nothing of a written
 * block stays in the page cache (`fincore`, so the page-cache copy is really
 * skipped), a refused body leaves nothing, and with O_DIRECT turned off
 * (BERTH_DIRECT_IO=0) blocks go through the page cache with the same results. Then a real cluster: a node says which way it
 * writes on /metrics, and a file written through a mount reads back exact.
 */
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { BlockClient } from '../common/block-client'
import { alignedBodies, BodyPool, gatherBody, plainBody } from '../node/block-buffer'
import { FileBlockStore } from '../node/block-store'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { testDir } from './helpers/test-dir'
import { blockName, namesBlock } from '../common/block-hash'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const MAX = 8 * 1024 * 1024
/** Sizes around the 4 KiB alignment, a block of the default size, and one that is not a multiple of a socket read. */
const SIZES = [1, 4095, 4096, 4097, 65536 + 3, 4 * 1024 * 1024, 4 * 1024 * 1024 - 1]

/** The body as a PUT receives it: socket-sized pieces. */
function pieces(b: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let at = 0; at < b.length; at += 65536) out.push(Buffer.from(b.subarray(at, at + 65536)))
  return out
}

/** Pages of `path` in the page cache (util-linux fincore). */
function residentPages(path: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'PAGES', path], { encoding: 'utf8' })
  return Number(out.trim())
}

function blockPath(store: FileBlockStore, hash: string): string {
  return join(store.blocksDir, hash.slice(0, 2), hash.slice(2, 4), hash)
}

function filesUnder(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk(join(d, e.name)) : out.push(e.name))
  }
  walk(dir)
  return out
}

async function storeEverySize(t: Test, store: FileBlockStore, direct: boolean): Promise<void> {
  for (const size of SIZES) {
    const bytes = randomBytes(size)
    const hash = sha(bytes)
    const body = gatherBody(pieces(bytes), size)
    t.equal(body.bytes.length, size, `${size}: the gathered body is the block`)
    const r = await store.put(hash, body, MAX)
    t.same(r, { size, created: true }, `${size}: stored`)
    const path = blockPath(store, hash)
    t.equal(statSync(path).size, size, `${size}: the file is the block's size, no padding left`)
    if (direct) t.equal(residentPages(path), 0, `${size}: none of it in the page cache (written with O_DIRECT)`)
    t.ok(readFileSync(path).equals(bytes), `${size}: reads back exact`)
    const into = Buffer.alloc(size)
    t.equal(await store.readInto(hash, into), size)
    t.ok(into.equals(bytes), `${size}: readInto exact`)
    t.same(await store.put(hash, gatherBody(pieces(bytes), size), MAX), { size, created: false }, `${size}: a second PUT deduplicates`)
  }
}

t.test('the addon hands out aligned bodies', async (t) => {
  t.ok(alignedBodies(), 'build/Release/berth_aligned.node loads')
  const b = gatherBody([Buffer.from('abc'), Buffer.from('de')], 5)
  t.equal(b.bytes.toString(), 'abcde')
  t.equal(b.aligned?.length, 4096, 'padded to 4 KiB')
  t.ok(b.aligned?.subarray(5).every((x) => x === 0), 'zeros past the block')
  t.equal(gatherBody([], 0).aligned, null, 'an empty body needs no alignment')
})

t.test('BodyPool keeps buffers by size, up to its bound, and hands each out once', async (t) => {
  const pool = new BodyPool(3 * 1024 * 1024)
  const one = gatherBody(pieces(randomBytes(1024 * 1024)), 1024 * 1024, pool)
  const two = gatherBody(pieces(randomBytes(1024 * 1024)), 1024 * 1024, pool)
  const small = gatherBody(pieces(randomBytes(5000)), 5000, pool)
  pool.give(one.aligned!)
  pool.give(two.aligned!)
  pool.give(small.aligned!)
  t.equal(pool.held, 2 * 1024 * 1024, 'small buffers are not kept')
  pool.give(gatherBody(pieces(randomBytes(1024 * 1024)), 1024 * 1024).aligned!)
  pool.give(gatherBody(pieces(randomBytes(1024 * 1024)), 1024 * 1024).aligned!)
  t.equal(pool.held, 3 * 1024 * 1024, 'no more than the bound')
  t.equal(pool.take(2 * 1024 * 1024), undefined, 'another size is not handed out')
  const data = randomBytes(1024 * 1024 - 100)
  const again = gatherBody(pieces(data), data.length, pool)
  t.equal(pool.held, 2 * 1024 * 1024, 'a pooled buffer was taken')
  t.ok(again.bytes.equals(data), 'a reused buffer holds the new body')
  t.ok(again.aligned!.subarray(data.length).every((x) => x === 0), 'and zeros past it, whatever it held before')
})

t.test('on ext4: O_DIRECT, every size exact, nothing in the page cache', async (t) => {
  const fsType = execFileSync('stat', ['-f', '-c', '%T', process.cwd()], { encoding: 'utf8' }).trim()
  const dir = testDir(t)
  const store = await FileBlockStore.open(dir)
  // ext4 (stat's "ext2/ext3") and xfs take O_DIRECT: there the probe must say so
  if (['ext2/ext3', 'xfs'].includes(fsType)) t.ok(store.usage().directIo, `the probe finds O_DIRECT on ${fsType}`)
  if (!store.usage().directIo) {
    // a checkout on a file system without O_DIRECT: the fallback below still runs
    t.comment(`${fsType} refuses O_DIRECT here; skipping the page-cache check`)
    await storeEverySize(t, store, false)
    return
  }
  await storeEverySize(t, store, true)
  t.equal(store.directWrites, SIZES.length, 'each new block was written with O_DIRECT')
  t.same(filesUnder(join(dir, 'tmp')), [], 'no temp file left')
})

t.test('a refused body leaves nothing: wrong hash, too large', async (t) => {
  const dir = testDir(t)
  const store = await FileBlockStore.open(dir)
  const bytes = randomBytes(100_000)
  await t.rejects(store.put(sha(Buffer.from('other')), gatherBody(pieces(bytes), bytes.length), MAX), { code: 'EHASH' })
  await t.rejects(store.put(sha(bytes), gatherBody(pieces(bytes), bytes.length), 50_000), { code: 'EFBIG' })
  t.same(filesUnder(join(dir, 'blocks')), [], 'no block file')
  t.same(filesUnder(join(dir, 'tmp')), [], 'no temp file')
  t.equal(store.usage().blocks, 0)
})

t.test('on tmpfs (O_DIRECT since Linux 6.6, refused before): same results either way', async (t) => {
  const dir = join('/dev/shm', `berth-direct-io-${process.pid}`)
  mkdirSync(dir, { recursive: true })
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store = await FileBlockStore.open(dir)
  t.comment(`tmpfs here ${store.usage().directIo ? 'takes' : 'refuses'} O_DIRECT`)
  await storeEverySize(t, store, false)
  t.equal(store.directWrites, store.usage().directIo ? SIZES.length : 0)
})

t.test('BERTH_DIRECT_IO=0 turns it off; a plain body is written through the page cache too', async (t) => {
  const dir = testDir(t)
  const before = process.env.BERTH_DIRECT_IO
  process.env.BERTH_DIRECT_IO = '0'
  t.teardown(() => {
    if (before === undefined) delete process.env.BERTH_DIRECT_IO
    else process.env.BERTH_DIRECT_IO = before
  })
  const store = await FileBlockStore.open(dir)
  t.equal(store.usage().directIo, false)
  await storeEverySize(t, store, false)
  delete process.env.BERTH_DIRECT_IO
  const on = await FileBlockStore.open(testDir(t))
  const bytes = randomBytes(10_000)
  t.same(await on.put(sha(bytes), plainBody(bytes), MAX), { size: 10_000, created: true })
  t.equal(on.directWrites, 0, 'a body without aligned memory goes through the page cache')
})

t.test('concurrent chain PUTs with pooled bodies: every copy on every node is its own block', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2 })
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 30_000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < 3; i++) await new Promise((r) => setTimeout(r, 100))
  // sizes vary so pooled buffers of one size hold bodies of several
  const blocks = Array.from({ length: 48 }, (_, i) => randomBytes(4 * 1024 * 1024 - (i % 3) * 5000))
  const put = await Promise.all(blocks.map((b) => bc.put(b)))
  for (const [i, p] of put.entries()) {
    t.equal(p.hash, blockName(blocks[i]!, 'blake3'))
    t.equal(p.nodes.length, 2)
  }
  let copies = 0
  let bad = 0
  for (const i of c.nodes.keys()) {
    const dir = join(c.dir, `node${i}`, 'blocks')
    for (const p of put) {
      const path = join(dir, p.hash.slice(0, 2), p.hash.slice(2, 4), p.hash)
      let bytes: Buffer
      try {
        bytes = readFileSync(path)
      } catch {
        continue
      }
      copies++
      if (!namesBlock(p.hash, bytes)) bad++
    }
  }
  t.equal(copies, 2 * blocks.length, 'two copies of each block on disk')
  t.equal(bad, 0, 'each copy hashes to its name')
})

t.test('a cluster: nodes report O_DIRECT, a file written through a mount reads back exact', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2 })
  for (const n of c.nodes) {
    const res = await request(`${String(n.ready.url)}/metrics`, { headers: { authorization: `Bearer ${c.secret}` } })
    const text = await res.body.text()
    t.match(text, /^berth_node_direct_io 1$/m, `node ${String(n.ready.id)} writes with O_DIRECT`)
  }
  const m = await mountCluster(t, c)
  const data = randomBytes(9 * 1024 * 1024 + 12345)
  const f = join(m.dir, 'big.bin')
  execFileSync('dd', [`of=${f}`, 'bs=1M', 'conv=fsync', 'status=none'], { input: data })
  execFileSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'])
  t.equal(sha(readFileSync(f)), sha(data), 'reads back exact after the page cache was dropped')
})
