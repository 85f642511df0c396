/**
 * Meta's `clonechunks` and the client's copy_file_range in one process
 * (docs/semantics.md#writes): a real meta engine on SQLite, the client's Vfs
 * over it with an in-memory block store that pins like the real one. Meta:
 * the destination names the source's blocks (base and slices) and each gains
 * a reference; a source that changed since the copy was planned (EAGAIN),
 * overlapping ranges of one file, inline chunks and a size that cuts the
 * clone are refused with nothing applied. Client: a meta without the op
 * (ENOSYS, a release before it) gets the copy by read + write, asked once a
 * minute at most; a source another client changed is copied as this mount
 * sees it (close-to-open), by read + write.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { pieceSums } from '../common/checksums'
import { BerthError, codeOf } from '../common/errors'
import { metaRequests, ROOT_INO, type MetaOp, type MetaParsed, type MetaReplies, type MetaRequest } from '../common/protocol'
import { planClone } from '../client/copy-range'
import type { BlockApi, BlockPut, MetaApi } from '../client/stores'
import { Vfs } from '../client/vfs'
import type { MetaEnv } from '../meta/context'
import { sqliteEngine, type EngineHandle } from '../meta/engine'
import { NodeTable } from '../meta/nodes'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { MiB, seededRandom } from '../tools/bench/pattern'
import { testDir } from './helpers/test-dir'

const CHUNK = MiB
const SESSION = 'copier'
const O_RDWR = 2
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
/** `len` bytes no other seed or chunk repeats (blocks are shared by content: equal chunks would share anyway). */
function fill(len: number, seed: number): Buffer {
  const rand = seededRandom(seed)
  const out = Buffer.alloc(len + 4)
  for (let i = 0; i < len; i += 4) out.writeUInt32LE(Math.floor(rand() * 0x100000000), i)
  return out.subarray(0, len)
}

/** The engine as a client's MetaApi; `refuse` answers one op as a meta without it would (server.ts: ENOSYS). */
class EngineMeta implements MetaApi {
  readonly asked = new Map<string, number>()
  refuse: MetaOp | undefined
  constructor(private readonly engine: EngineHandle) {}
  call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    this.asked.set(op, (this.asked.get(op) ?? 0) + 1)
    if (op === this.refuse) return Promise.reject(new BerthError('ENOSYS', `unknown metadata operation "${op}"`))
    return this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>)
  }
}

/** Blocks in memory, pinned in meta before they are stored (what commit requires). */
class PinnedBlocks implements BlockApi {
  readonly blocks = new Map<string, Buffer>()
  puts = 0
  constructor(private readonly meta: MetaApi) {}
  async put(data: Uint8Array, hash?: string): Promise<BlockPut> {
    const h = hash ?? sha256(data)
    await this.meta.call('pin', { session: SESSION, hashes: [h] })
    this.blocks.set(h, Buffer.from(data))
    this.puts++
    return { hash: h, nodes: ['n1'], sums: pieceSums(data) }
  }
  nameOf(data: Uint8Array): string {
    return sha256(data)
  }
  release(hashes: string[]): void {
    void this.meta.call('unpin', { session: SESSION, hashes }).catch(() => undefined)
  }
  async get(hash: string, _nodes: string[], opts: { offset?: number; length?: number } = {}): Promise<Buffer> {
    const b = this.blocks.get(hash)
    if (!b) throw new BerthError('EIO', `no block ${hash}`)
    const at = opts.offset ?? 0
    return b.subarray(at, at + (opts.length ?? b.length - at))
  }
}

async function setup(t: Test) {
  const db = await openDatabase(join(testDir(t), 'meta.db'), migrate, { sync: 'normal' })
  t.teardown(() => db.close())
  const env: MetaEnv = { db, cluster: 't', metaId: 'm', startedAt: Date.now(), secret: 's', chunkSize: CHUNK, replicas: 1, nodes: new NodeTable() }
  const engine = sqliteEngine(env, () => undefined)
  const meta = new EngineMeta(engine)
  const blocks = new PinnedBlocks(meta)
  const vfs = new Vfs(meta, blocks, { session: SESSION, chunkSize: CHUNK, cacheBytes: 64 * MiB, maxDirtyBytes: 32 * MiB, maxUploads: 4, readaheadChunks: 0, metaTtlMs: 30_000 })
  const file = async (name: string, data: Buffer) => {
    const { fh, attr } = await vfs.create(ROOT_INO, name, 0o644, O_RDWR, { uid: 0, gid: 0 })
    if (data.length) await vfs.write(fh, data, 0)
    await vfs.fsync(fh)
    return { fh, ino: attr.ino }
  }
  const read = async (fh: number, len: number) => {
    const out = Buffer.alloc(len)
    const n = await vfs.read(fh, out, len, 0)
    return out.subarray(0, n)
  }
  /** copy_file_range as its callers use it: until done or 0. */
  const copy = async (fhIn: number, offIn: number, fhOut: number, offOut: number, len: number) => {
    let done = 0
    for (;;) {
      const n = await vfs.copyFileRange(fhIn, offIn + done, fhOut, offOut + done, len - done, 0)
      if (n === 0) return done
      done += n
      if (done >= len) return done
    }
  }
  const refs = async (hash: string) => (await db.read.get<{ refs: number }>('SELECT refs FROM blocks WHERE hash = ?', [hash]))?.refs ?? 0
  return { db, engine, meta, blocks, vfs, file, read, copy, refs }
}

t.test('which chunks a copy clones', async (t) => {
  const C = CHUNK
  t.same(planClone(C, 0, 0, 3 * C, 3 * C, 0), { head: 0, from: 0, to: 0, count: 3, bytes: 3 * C }, 'aligned whole chunks')
  t.same(planClone(C, 100, C + 100, 3 * C, 10 * C, 0), { head: C - 100, from: 1, to: 2, count: 2, bytes: 2 * C }, 'the same place in a chunk: a head by hand, then whole chunks')
  t.equal(planClone(C, 100, 200, 3 * C, 10 * C, 0), null, 'different places in a chunk: nothing cloned')
  t.same(planClone(C, 0, 0, 2.5 * C, 2.5 * C, C), { head: 0, from: 0, to: 0, count: 3, bytes: 2.5 * C }, "the source's last partial chunk past the destination's end")
  t.same(planClone(C, 0, 0, 2.5 * C, 2.5 * C, 3 * C), { head: 0, from: 0, to: 0, count: 2, bytes: 2 * C }, "not inside it: the destination's bytes after it stay")
  t.same(planClone(C, 0, 0, 2.5 * C, 9 * C, 0), { head: 0, from: 0, to: 0, count: 2, bytes: 2 * C }, "a partial chunk that is not the source's end: by hand")
  t.equal(planClone(C, 0, 0, C - 1, C - 1, 0)?.count, 1, 'a one-chunk file')
  t.equal(planClone(C, 10, 10, C - 20, 10 * C, 0), null, 'a range inside one chunk: nothing cloned')
})

t.test('clonechunks: the destination names the same blocks; refusals apply nothing', async (t) => {
  const { engine, meta, vfs, file, read, copy, refs } = await setup(t)
  const data = fill(3 * CHUNK + 5000, 1)
  const src = await file('src', data)
  // an append after the commit: chunk 3 becomes a base and a slice
  const more = fill(3000, 2)
  await vfs.write(src.fh, more, data.length)
  await vfs.fsync(src.fh)
  const whole = Buffer.concat([data, more])
  const srcMap = (await engine.chunks({ ino: src.ino, from: 0, limit: 1000 })).chunks
  t.equal(srcMap[3]?.slices?.length, 1, 'the source has a chunk in slices')

  const dst = await file('dst', Buffer.alloc(0))
  const commits = meta.asked.get('commit') ?? 0
  t.equal(await copy(src.fh, 0, dst.fh, 0, whole.length), whole.length, 'the whole file copied')
  t.equal(meta.asked.get('clonechunks'), 1, 'by one clonechunks call')
  t.equal(meta.asked.get('commit') ?? 0, commits, 'and no commit: nothing was written by hand')
  t.ok((await read(dst.fh, whole.length + 1)).equals(whole), 'the copy reads back through the copying mount')
  const dstMap = (await engine.chunks({ ino: dst.ino, from: 0, limit: 1000 })).chunks
  t.same(
    dstMap.map((c) => [c.idx, c.hash, c.len, c.slices?.map((s) => s.hash)]),
    srcMap.map((c) => [c.idx, c.hash, c.len, c.slices?.map((s) => s.hash)]),
    'meta holds the same blocks, base and slices, for the copy',
  )
  for (const c of srcMap) t.equal(await refs(c.hash!), 2, `block of chunk ${c.idx} has two references`)
  t.equal(await refs(srcMap[3]!.slices![0]!.hash), 2, 'the slice too')
  t.equal((await engine.getattr({ ino: dst.ino })).attr.size, whole.length, "the copy's size")

  const gen = (await engine.getattr({ ino: src.ino })).attr.gen
  const ask = (b: Partial<MetaParsed<'clonechunks'>>) =>
    engine.clonechunks({ src: src.ino, srcGen: gen, from: 0, count: 1, dst: dst.ino, to: 5, size: 6 * CHUNK, ...b }).then(
      () => 'applied',
      (err: unknown) => codeOf(err),
    )
  const before = (await engine.getattr({ ino: dst.ino })).attr
  t.equal(await ask({ srcGen: gen - 1 }), 'EAGAIN', 'a source changed since the plan: EAGAIN')
  t.equal(await ask({ dst: src.ino, to: 1, count: 2 }), 'EINVAL', 'overlapping ranges of one file: EINVAL')
  t.equal(await ask({ size: 5 * CHUNK }), 'EINVAL', 'a size that ends before the last cloned chunk: EINVAL')
  t.same((await engine.getattr({ ino: dst.ino })).attr, before, 'refusals changed nothing')
  const tiny = await file('tiny', fill(1000, 3))
  const tinyGen = (await engine.getattr({ ino: tiny.ino })).attr.gen
  t.equal(await ask({ src: tiny.ino, srcGen: tinyGen }), 'EINVAL', 'an inline chunk (a file of at most 64 KiB) is not cloned')
  const tinyCopy = await file('tiny-copy', Buffer.alloc(0))
  t.equal(await copy(tiny.fh, 0, tinyCopy.fh, 0, 1000), 1000, 'the client copies such a file by hand')
  t.ok((await read(tinyCopy.fh, 1001)).equals(fill(1000, 3)), 'and it reads back')

  // the source goes: the copy keeps the blocks
  await vfs.release(src.fh)
  await vfs.unlink(ROOT_INO, 'src')
  await vfs.sendReleases()
  for (const c of srcMap) t.equal(await refs(c.hash!), 1, `block of chunk ${c.idx}: the copy's reference is left`)
})

t.test('a meta without clonechunks (ENOSYS): the copy goes by read + write', async (t) => {
  const { meta, blocks, vfs, file, read, copy } = await setup(t)
  meta.refuse = 'clonechunks'
  const data = fill(2 * CHUNK + 100, 4)
  const src = await file('src', data)
  const a = await file('a', Buffer.alloc(0))
  const puts = blocks.puts
  t.equal(await copy(src.fh, 0, a.fh, 0, data.length), data.length, 'copied')
  t.ok((await read(a.fh, data.length + 1)).equals(data), 'the same bytes')
  await vfs.fsync(a.fh)
  t.ok(blocks.puts > puts, 'by read + write: the copy uploaded its chunks')
  const b = await file('b', Buffer.alloc(0))
  t.equal(await copy(src.fh, 0, b.fh, 0, data.length), data.length, 'a second copy')
  t.equal(meta.asked.get('clonechunks'), 1, 'meta is not asked again for a minute')
})

t.test('a source another client changed is copied as this mount sees it', async (t) => {
  const { engine, meta, blocks, file, read, copy } = await setup(t)
  const data = fill(2 * CHUNK + 100, 6)
  const src = await file('src', data)
  // another client commits new content to chunk 0; this mount still holds the old map (close-to-open)
  const { attr } = await engine.getattr({ ino: src.ino })
  const put = await blocks.put(fill(CHUNK, 7))
  await engine.commit({ ino: src.ino, session: 'other-client', size: attr.size, chunks: [{ idx: 0, hash: put.hash, len: CHUNK, nodes: put.nodes, sums: put.sums }] })
  const c = await file('c', Buffer.alloc(0))
  t.equal(await copy(src.fh, 0, c.fh, 0, data.length), data.length, 'copied')
  t.equal(meta.asked.get('clonechunks'), 1, 'meta was asked and refused (EAGAIN: the source is not at the version this mount holds)')
  t.ok((await read(c.fh, data.length + 1)).equals(data), 'the copy has the bytes this mount sees, copied by read + write')
})
