/**
 * The write-path model check (test/write-path-model.test.ts): one random
 * interleaving of write (plain and O_APPEND), read, truncate, flush and close
 * across handles of one open file, against a plain byte array, with in-memory
 * stores whose uploads, fetches and commits finish in random orders and
 * sometimes fail. Runs as its own process (`node write-path-model.js FROM
 * COUNT` prints a JSON summary): tap's async hooks track every promise and
 * made the 10,000 runs ten times slower in the tap process.
 */
import { seededRandom } from '../../tools/bench/pattern'
import { MAX_SLICES, type Attr, type ChunkRef, type MetaOp, type MetaReplies, type MetaRequest } from '../../common/protocol'
import { chunkLen, clipRef, extentsOf, lastHash, withSlice } from '../../common/chunk-extents'
import { blockName } from '../../common/block-hash'
import type { GetOptions } from '../../common/block-client'
import { BerthError } from '../../common/errors'
import { BlockCache } from '../../client/block-cache'
import { ChunkBuffers } from '../../client/chunk-buffers'
import { OpenFile } from '../../client/open-file'
import { Writeback } from '../../client/writeback'
import { markNotPinned, type BlockApi, type BlockPut, type MetaApi } from '../../client/stores'

export const SESSION = 's1'
/** Commits of each kind over all runs of this process (the test reports them: the paths were exercised). */
export const stats = { appends: 0, compactions: 0, refused: 0, reused: 0, views: 0, fetchedInto: 0 }
const INO = 7


const nameOf = (b: Uint8Array) => blockName(b, 'blake3')
const hop = () => new Promise<void>((r) => setImmediate(r))

export class World {
  readonly rand: () => number
  /** Violations of the stores' contracts, reported by the test. */
  readonly problems: string[] = []
  constructor(seed: number) {
    this.rand = seededRandom(seed)
  }
  int(n: number): number {
    return Math.floor(this.rand() * n)
  }
  /** A random delay: a few event-loop turns, so concurrent calls finish in random orders. */
  async delay(): Promise<void> {
    for (let i = this.int(4); i > 0; i--) await hop()
  }
}

/**
 * Pins as meta keeps them (meta/files.ts): a count per hash for the session,
 * one per upload; each commit of the hash or release drops one.
 */
export class PinCounts {
  private readonly counts = new Map<string, number>()
  constructor(private readonly w: World) {}
  add(h: string): void {
    this.counts.set(h, (this.counts.get(h) ?? 0) + 1)
  }
  has(h: string): boolean {
    return (this.counts.get(h) ?? 0) > 0
  }
  /** One pin of `h` goes (`what` names who dropped it, for the problem report). */
  delete(h: string, what: string): void {
    const n = this.counts.get(h) ?? 0
    if (n === 0) this.w.problems.push(`${what}: ${h.slice(0, 8)} has no pin left to drop`)
    if (n <= 1) this.counts.delete(h)
    else this.counts.set(h, n - 1)
  }
  get size(): number {
    let n = 0
    for (const c of this.counts.values()) n += c
    return n
  }
}

/** Block store with pins as meta keeps them: counted per upload. */
export class MemBlocks implements BlockApi {
  readonly blocks = new Map<string, Buffer>()
  readonly pins: PinCounts
  failRate = 0
  puts = 0
  putBytes = 0
  /** Whole blocks fetched into a buffer the cache's pool gave. */
  fetchedInto = 0
  constructor(private readonly w: World) {
    this.pins = new PinCounts(w)
  }

  async put(data: Uint8Array, hash?: string): Promise<BlockPut> {
    const h = nameOf(data)
    if (hash !== undefined && hash !== h) this.w.problems.push(`put: given hash ${hash.slice(0, 8)} is not the hash of the bytes`)
    // the pin request itself may fail (meta unreachable): no pin was taken
    await this.w.delay()
    if (this.w.rand() < this.failRate / 3) throw markNotPinned(new BerthError('ETIMEDOUT', 'injected pin failure'))
    this.pins.add(h)
    this.puts++
    this.putBytes += data.length
    await this.w.delay()
    // the bytes must not change while they are uploaded (the upload owns them)
    if (nameOf(data) !== h) this.w.problems.push('put: bytes changed during the upload')
    if (this.w.rand() < this.failRate) throw new BerthError('EIO', 'injected upload failure')
    this.blocks.set(h, Buffer.from(data))
    return { hash: h, nodes: ['n1'], sums: new Uint8Array(4) }
  }

  nameOf(data: Uint8Array): string {
    return nameOf(data)
  }

  release(hashes: string[]): void {
    for (const h of hashes) this.pins.delete(h, 'release')
  }

  async get(hash: string, _nodes: string[], opts?: GetOptions): Promise<Buffer> {
    await this.w.delay()
    const b = this.blocks.get(hash)
    if (!b) throw new BerthError('EIO', `no block ${hash.slice(0, 8)}`)
    const ranged = opts?.offset !== undefined || opts?.length !== undefined
    // a whole block goes into the caller's buffer when it offers one, as NodeHttp.get does
    const into = ranged ? undefined : opts?.into?.(b.length)
    if (into) {
      this.fetchedInto++
      await this.w.delay() // the body arrives while other things run
      b.copy(into)
      return into
    }
    const off = opts?.offset ?? 0
    return Buffer.from(b.subarray(off, opts?.length === undefined ? undefined : off + opts.length))
  }
}

/**
 * Meta as far as an open file uses it: commit (whole chunks, appended slices,
 * conditional compactions) and setattr(size), with meta's clipping rules.
 * `refuseRate`: conditional refs are refused with EAGAIN at random, as when
 * another writer changed the chunk; the writer must rewrite it whole.
 */
export class MemMeta implements MetaApi {
  size = 0
  gen = 0
  readonly chunks = new Map<number, ChunkRef>()
  failRate = 0
  refuseRate = 0
  appends = 0
  compactions = 0
  constructor(
    private readonly w: World,
    private readonly store: MemBlocks,
    private readonly cs: number,
  ) {}

  attr(): Attr {
    const ts: [number, number] = [1, 0]
    return { ino: INO, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: this.size, rdev: 0, atime: ts, mtime: ts, ctime: ts, gen: this.gen }
  }

  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    await this.w.delay()
    if (this.w.rand() < this.failRate) throw new BerthError('ETIMEDOUT', `injected ${op} failure`)
    if (op === 'commit') {
      const b = body as unknown as Omit<MetaRequest<'commit'>, 'rid'>
      for (const c of b.chunks) {
        if (!c.expect) continue
        const cur = this.chunks.get(c.idx)
        if (this.w.rand() < this.refuseRate) {
          stats.refused++
          throw new BerthError('EAGAIN', `injected: chunk ${c.idx} changed`)
        }
        if (!cur?.hash || chunkLen(cur) !== c.expect.len || lastHash(cur) !== c.expect.last || (c.append && (cur.slices?.length ?? 0) >= MAX_SLICES)) {
          throw new BerthError('EAGAIN', `chunk ${c.idx} is not what the writer expected`)
        }
        if (c.append && c.expect.len + c.len > this.cs) this.w.problems.push(`commit: append to chunk ${c.idx} passes the chunk size`)
      }
      // meta drops the pins in the same transaction: check them all first
      for (const c of b.chunks) if (c.hash && !this.store.pins.has(c.hash)) this.w.problems.push(`commit: chunk ${c.idx}'s block was released before its commit`)
      const compaction = b.chunks.length > 0 && b.chunks.every((c) => c.expect && !c.append)
      for (const c of b.chunks) {
        if (c.data) {
          if (c.data.length !== c.len) this.w.problems.push(`commit: inline chunk ${c.idx} has ${c.data.length} bytes, len ${c.len}`)
          this.chunks.set(c.idx, c)
        } else if (c.hash) {
          const block = this.store.blocks.get(c.hash)
          if (!block) this.w.problems.push(`commit: chunk ${c.idx} names a block never stored`)
          else if (c.len > block.length) this.w.problems.push(`commit: chunk ${c.idx} says len ${c.len}, its block holds ${block.length} bytes`)
          if (!c.sums) this.w.problems.push(`commit: chunk ${c.idx} without sums`)
          this.store.pins.delete(c.hash, `commit of chunk ${c.idx}`)
          const ext = { hash: c.hash, len: c.len, nodes: c.nodes, ...(c.sums ? { sums: c.sums } : {}) }
          if (c.append) {
            this.appends++
            stats.appends++
            this.chunks.set(c.idx, withSlice(this.chunks.get(c.idx)!, ext))
          } else {
            if (c.expect) {
              this.compactions++
              stats.compactions++
            }
            this.chunks.set(c.idx, { idx: c.idx, ...ext })
          }
        } else this.chunks.delete(c.idx)
      }
      if (compaction) this.gen++
      else this.clip(b.size)
      return { attr: this.attr() } as MetaReplies[Op]
    }
    if (op === 'setattr') {
      const b = body as unknown as Omit<MetaRequest<'setattr'>, 'rid'>
      if (b.size !== undefined) this.clip(b.size)
      return { attr: this.attr() } as MetaReplies[Op]
    }
    throw new BerthError('ENOSYS', `${op} is not part of the write path`)
  }

  private clip(size: number): void {
    this.size = size
    this.gen++
    for (const [idx, c] of [...this.chunks]) {
      if (idx * this.cs >= size) this.chunks.delete(idx)
      else if ((idx + 1) * this.cs > size) this.chunks.set(idx, clipRef(c, size - idx * this.cs))
    }
  }

  /** The file as a new open anywhere would read it. */
  content(): Buffer {
    const out = Buffer.alloc(this.size)
    for (const [idx, c] of this.chunks) {
      if (c.data) Buffer.from(c.data).subarray(0, c.len).copy(out, idx * this.cs)
      for (const e of extentsOf(c)) {
        const src = this.store.blocks.get(e.ref.hash!)
        if (!src) this.w.problems.push(`content: chunk ${idx} names a block never stored`)
        else src.subarray(0, Math.min(e.ref.len, src.length)).copy(out, idx * this.cs + e.pos)
      }
    }
    return out
  }
}

interface Handle {
  append: boolean
  wrote: boolean
}

/** Bytes from a small alphabet, so equal chunks (dedup) happen. */
function bytes(w: World, n: number): Buffer {
  const b = Buffer.alloc(n)
  const alphabet = 1 + w.int(3)
  for (let i = 0; i < n; i++) b[i] = 65 + w.int(alphabet)
  return b
}

function resized(model: Buffer, size: number): Buffer {
  if (size <= model.length) return Buffer.from(model.subarray(0, size))
  return Buffer.concat([model, Buffer.alloc(size - model.length)])
}

/** One random interleaving; returns what went wrong (empty: nothing). */
export async function scenario(seed: number): Promise<string[]> {
  const w = new World(seed)
  const cs = [8, 16, 32][w.int(3)]!
  const store = new MemBlocks(w)
  const meta = new MemMeta(w, store, cs)
  // a small cache evicts often, so chunk buffers are reused often (client/chunk-buffers.ts)
  const buffers = new ChunkBuffers(cs, 1 + w.int(3))
  const cache = new BlockCache(store, { maxBytes: cs * (1 + w.int(4)), buffers })
  const wb = new Writeback(store, cache, { chunkSize: cs, maxDirtyBytes: cs * (1 + w.int(4)), maxUploads: 1 + w.int(3), inlineMax: [0, cs / 2, cs][w.int(3)], compactAtClose: 1 + w.int(3), buffers })
  const faulty = w.rand() < 0.5
  const errors: string[] = []

  // some files start with committed content (read-modify-write of blocks and inline chunks)
  let model = bytes(w, w.int(3 * cs))
  if (model.length > 0 && model.length <= wb.inlineMax && model.length <= cs) {
    meta.chunks.set(0, { idx: 0, hash: null, len: model.length, nodes: [], data: Buffer.from(model) })
  } else {
    for (let idx = 0; idx * cs < model.length; idx++) {
      const part = model.subarray(idx * cs, (idx + 1) * cs)
      if (w.rand() < 0.2) {
        part.fill(0) // a hole
        continue
      }
      const h = nameOf(part)
      store.blocks.set(h, Buffer.from(part))
      meta.chunks.set(idx, { idx, hash: h, len: part.length, nodes: ['n1'], sums: new Uint8Array(4) })
    }
  }
  meta.size = model.length
  const f = new OpenFile(meta.attr(), wb)
  f.refresh(meta.attr(), [...meta.chunks.values()])
  const handles: Handle[] = Array.from({ length: 1 + w.int(3) }, () => ({ append: w.rand() < 0.4, wrote: false }))

  const running = new Set<Promise<void>>()
  const run = (what: string, p: Promise<unknown>, check?: (v: unknown) => void) => {
    const done: Promise<void> = p.then(
      (v) => check?.(v),
      (err: unknown) => {
        const code = (err as BerthError).code
        // injected faults surface as EIO/ETIMEDOUT from flush (and so truncate); nothing else may fail
        if (!(faulty && (code === 'EIO' || code === 'ETIMEDOUT') && /flush|close|truncate/.test(what))) errors.push(`${what}: ${(err as Error).message}`)
      },
    )
    const tracked = done.finally(() => running.delete(tracked))
    running.add(tracked)
  }
  const quiesce = async () => {
    while (running.size) await Promise.all([...running])
    const all = Buffer.alloc(model.length + cs)
    const n = await f.read(all, 0, all.length)
    if (n !== model.length || !all.subarray(0, n).equals(model)) errors.push(`after quiescing: read ${n} bytes, model has ${model.length}`)
    if (f.size !== model.length) errors.push(`size ${f.size}, model ${model.length}`)
  }

  store.failRate = faulty ? 0.15 : 0
  meta.failRate = faulty ? 0.1 : 0
  meta.refuseRate = w.rand() < 0.3 ? 0.2 : 0
  const steps = 10 + w.int(20)
  for (let step = 0; step < steps && errors.length === 0; step++) {
    const h = handles[w.int(handles.length)]!
    const r = w.rand()
    if (r < 0.45) {
      const data = bytes(w, 1 + w.int(2 * cs))
      const pos = h.append ? model.length : w.int(model.length + cs)
      h.wrote = true
      model = resized(model, Math.max(model.length, pos + data.length))
      data.copy(model, pos)
      run(`step ${step} write ${data.length}@${pos}${h.append ? ' (append)' : ''}`, f.write(data, h.append ? w.int(model.length + 1) : pos, h.append))
    } else if (r < 0.7) {
      const pos = w.int(model.length + 2)
      const len = 1 + w.int(2 * cs)
      const expected = Buffer.from(model.subarray(pos, pos + len))
      const random = w.rand() < 0.5
      if (w.rand() < 0.5) {
        const target = Buffer.alloc(len, 0xee)
        run(`step ${step} read ${len}@${pos}`, f.read(target, pos, len, random), (n) => {
          if (n !== expected.length || !target.subarray(0, expected.length).equals(expected)) {
            errors.push(`step ${step} read ${len}@${pos}: got ${JSON.stringify(target.subarray(0, Number(n)).toString('latin1'))}, model ${JSON.stringify(expected.toString('latin1'))}`)
          }
        })
      } else {
        // the FUSE adapter's read: a view into a cached block where one holds
        // the bytes; looked at only after other operations ran on, since a
        // view handed to a reader must never change (no buffer it shows is reused)
        let scratched = false
        const viewed = f.readOut(pos, len, random, () => ((scratched = true), Buffer.alloc(len, 0xee))).then(async (out) => {
          if (!scratched) stats.views++
          for (let i = 0; i < 3; i++) await w.delay()
          return out
        })
        run(`step ${step} readOut ${len}@${pos}`, viewed, (v) => {
          const out = v as Buffer
          if (!out.equals(expected)) errors.push(`step ${step} readOut ${len}@${pos}: got ${JSON.stringify(out.toString('latin1'))}, model ${JSON.stringify(expected.toString('latin1'))}`)
          // replied: its block may now hold other chunks (Vfs.readReplied)
          cache.release(out)
        })
      }
    } else if (r < 0.8 && !faulty) {
      // truncate is linearized at its call like the rest; with faults it may
      // fail (it commits first), which this model does not undo, so only here
      const size = w.int(model.length + cs)
      model = resized(model, size)
      run(`step ${step} truncate ${size}`, f.truncate(meta, SESSION, size))
    } else if (r < 0.9) {
      run(`step ${step} flush`, f.flush(meta, SESSION))
    } else {
      // close: only a handle that wrote flushes (client/vfs.ts); it is reopened at once
      // the last close may compact chunks left in slices
      if (h.wrote) run(`step ${step} close`, f.flush(meta, SESSION, { closing: w.rand() < 0.5 }))
      h.wrote = false
    }
    if (w.rand() < 0.3) await quiesce()
    else for (let i = w.int(3); i > 0; i--) await hop()
  }
  await quiesce()

  // everything flushed without faults: meta holds exactly the model, every pin went
  store.failRate = 0
  meta.failRate = 0
  meta.refuseRate = 0
  // the first flush may still report an upload that failed before (and retry it)
  await f.flush(meta, SESSION).catch(() => f.flush(meta, SESSION)).catch((err: Error) => errors.push(`final flush: ${err.message}`))
  if (!meta.content().equals(model)) errors.push(`committed content ${JSON.stringify(meta.content().toString('latin1'))} != model ${JSON.stringify(model.toString('latin1'))}`)
  if (f.isDirty) errors.push('still dirty after the final flush')
  f.discard()
  if (store.pins.size) errors.push(`${store.pins.size} upload pin(s) never committed nor released`)
  if (wb.dirtyBytes !== 0) errors.push(`write-back bytes ${wb.dirtyBytes} after discard`)
  stats.reused += buffers.reused
  stats.fetchedInto += store.fetchedInto
  return [...errors, ...w.problems].map((e) => `seed ${seed} (chunk ${cs}${faulty ? ', faults' : ''}): ${e}`)
}


/** Runs seeds `from`..`from + count - 1`; the first problems of the first failing seeds. */
export async function runSeeds(from: number, count: number): Promise<{ runs: number; failed: number; problems: string[]; ms: number; stats: typeof stats }> {
  const started = Date.now()
  let failed = 0
  const problems: string[] = []
  for (let seed = from; seed < from + count; seed++) {
    const p = await scenario(seed)
    if (p.length) {
      failed++
      if (failed <= 5) problems.push(...p.slice(0, 5))
    }
  }
  return { runs: count, failed, problems, ms: Date.now() - started, stats }
}

if (require.main === module) {
  const [from, count] = process.argv.slice(2).map(Number)
  void runSeeds(from ?? 1, count ?? 1).then((r) => process.stdout.write(JSON.stringify(r)))
}
