/**
 * Reopening a file closed here without asking meta (client/closed-files.ts,
 * docs/semantics.md#reopening-without-a-meta-request). Two Vfs over one real
 * meta engine stand for mounts A and B. Meta's invalidations reach each mount
 * as NATS delivers them, as late as that allows: queued per mount, applied
 * before that mount's next reply (meta publishes an invalidation before any
 * later reply) or at its barrier (a NATS round trip), never sooner. Each case
 * checks what is read, and which meta requests the open took.
 */
import t, { type Test } from 'tap'
import { metaRequests, ROOT_INO, type Invalidation, type MetaOp, type MetaParsed, type MetaReplies, type MetaRequest } from '../common/protocol'
import type { MetaApi } from '../client/stores'
import { Vfs } from '../client/vfs'
import type { EngineHandle } from '../meta/engine'
import { invalidation } from '../meta/server'
import { ClosedFiles, NamedWatch } from '../client/closed-files'
import { engineCluster, NoBlocks } from './helpers/vfs-engine'

const ROOT = { uid: 0, gid: 0 }
const O_RDONLY = 0
const O_WRONLY = 1

/** One mount's NATS connection: its request ids, its queue of invalidations, the ops it sent. */
class Connection implements MetaApi {
  readonly queue: Invalidation[] = []
  readonly sent: string[] = []
  vfs!: Vfs
  private n = 0
  /** Runs once after meta answered a request of this op, before the reply is handed back (a change slipped in). */
  onAnswer: { op: MetaOp; run: () => Promise<void> } | undefined
  barrierWorks = true

  constructor(
    private readonly engine: EngineHandle,
    readonly origin: string,
  ) {}

  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    this.sent.push(op)
    const rid = `${this.origin}.${(this.n++).toString(36)}`
    const reply = await this.engine.call(op, metaRequests[op].parse({ ...body, rid }) as MetaParsed<Op>)
    const hook = this.onAnswer
    if (hook?.op === op) {
      this.onAnswer = undefined
      await hook.run()
    }
    this.deliver()
    return reply
  }

  deliver(): void {
    for (const inv of this.queue.splice(0)) this.vfs.invalidate(inv, inv.by === this.origin)
  }

  /** The NATS round trip: what was published before it is applied when it returns. */
  barrier = async (): Promise<boolean> => {
    await new Promise((r) => setImmediate(r))
    if (!this.barrierWorks) return false
    this.deliver()
    return true
  }

  /** Meta requests since the last look. */
  took(): string[] {
    return this.sent.splice(0)
  }
}

async function cluster(t: Test): Promise<{ a: Connection; b: Connection }> {
  const conns: Connection[] = []
  const { engine } = await engineCluster(t, (ch) => {
    if (ch.empty) return
    const inv = invalidation(ch)
    for (const c of conns) c.queue.push(inv)
  })
  for (const name of ['A', 'B']) {
    await engine.call('session', metaRequests.session.parse({ session: name, ttlMs: 60_000 }) as MetaParsed<'session'>)
    const c = new Connection(engine, `client${name}`)
    c.vfs = new Vfs(c, new NoBlocks(), { session: name, chunkSize: 1 << 20, cacheBytes: 1 << 24, maxDirtyBytes: 1 << 24, maxUploads: 2, readaheadChunks: 0, metaTtlMs: 30_000, closedFilesBytes: 1 << 24, barrier: c.barrier })
    conns.push(c)
  }
  return { a: conns[0]!, b: conns[1]! }
}

async function writeClose(vfs: Vfs, ino: number, data: string): Promise<void> {
  const { fh } = await vfs.open(ino, O_WRONLY)
  await vfs.setattr(ino, { size: 0 }, fh)
  await vfs.write(fh, Buffer.from(data), 0)
  await vfs.flush(fh)
  await vfs.release(fh)
}

async function readClose(vfs: Vfs, ino: number): Promise<string> {
  const { fh } = await vfs.open(ino, O_RDONLY)
  const buf = Buffer.alloc(256)
  const n = await vfs.read(fh, buf, buf.length, 0)
  await vfs.flush(fh)
  await vfs.release(fh)
  return buf.subarray(0, n).toString()
}

async function created(vfs: Vfs, name: string, data: string): Promise<number> {
  const { fh, attr } = await vfs.create(ROOT_INO, name, 0o644, O_WRONLY, ROOT)
  await vfs.write(fh, Buffer.from(data), 0)
  await vfs.flush(fh)
  await vfs.release(fh)
  return attr.ino
}

const metaRead = (ops: string[]) => ops.filter((op) => op === 'chunks' || op === 'open' || op === 'getattr')

t.test('a file closed here is reopened read-only without a meta request, while nobody changed it', async (t) => {
  const { a } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  a.took()
  t.equal(await readClose(a.vfs, ino), 'one')
  t.same(metaRead(a.took()), [], 'no chunks, open or getattr request')
  t.equal(a.vfs.closed.hits, 1)
  t.equal(await readClose(a.vfs, ino), 'one', 'and again')
  t.same(metaRead(a.took()), [])

  await writeClose(a.vfs, ino, 'two, longer')
  a.took()
  t.equal(await readClose(a.vfs, ino), 'two, longer', 'after a rewrite here (truncate, write, commit): the new map')
  t.same(metaRead(a.took()), [], 'still no request: the rewrite was the only change since')
})

t.test("another mount's commit is read at the next open (its invalidation arrives by the barrier at the latest)", async (t) => {
  const { a, b } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  t.equal(await readClose(b.vfs, ino), 'one', 'B reads')
  for (let i = 0; i < 20; i++) {
    const [w, r] = i % 2 ? [a, b] : [b, a]
    await writeClose(w.vfs, ino, `version ${i}`)
    t.equal(await readClose(r.vfs, ino), `version ${i}`, `round ${i}: the reader's next open sees the writer's close`)
  }
})

t.test('when the barrier cannot vouch (a NATS cluster), a getattr checks the kept map', async (t) => {
  const { a, b } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  a.barrierWorks = false
  a.took()
  t.equal(await readClose(a.vfs, ino), 'one')
  t.same(metaRead(a.took()), ['getattr'], 'one getattr, no map fetched')
  t.equal(a.vfs.closed.hits, 1)
  // B's change, its invalidation not delivered to A at all: the getattr sees the new gen
  await writeClose(b.vfs, ino, 'two')
  a.queue.length = 0
  t.equal(await readClose(a.vfs, ino), 'two', 'another mount\'s commit is read')
  t.same(metaRead(a.took()), ['getattr', 'chunks'], 'the getattr showed a new gen: the map was fetched')
  t.equal(a.vfs.closed.misses, 1)
})

t.test('nothing is kept with a bound of 0', async (t) => {
  const { a } = await cluster(t)
  const off = new Vfs(a, new NoBlocks(), { session: 'A', chunkSize: 1 << 20, cacheBytes: 1 << 24, maxDirtyBytes: 1 << 24, maxUploads: 2, readaheadChunks: 0, metaTtlMs: 30_000, barrier: a.barrier })
  a.vfs = off
  const ino = await created(off, 'f', 'one')
  t.equal(off.closed.get(ino), undefined)
  a.took()
  t.equal(await readClose(off, ino), 'one')
  t.ok(metaRead(a.took()).includes('chunks'), 'the open fetched the map')
})

// Defence in depth: B's invalidation normally reaches A before A's commit
// reply (and doubts A's map); here it is lost, and the gens alone refuse.
t.test('a commit of ours with another in between leaves no kept map (gen moved by two), even if the other\'s invalidation was lost', async (t) => {
  const { a, b } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  const w = await a.vfs.open(ino, O_WRONLY)
  await a.vfs.write(w.fh, Buffer.from('A'), 0)
  await writeClose(b.vfs, ino, 'by B, longer')
  // lost: A's commit reply is the first thing A hears, and its gen says
  // another commit came between
  a.queue.length = 0
  await a.vfs.flush(w.fh)
  await a.vfs.release(w.fh)
  t.equal(a.vfs.closed.get(ino), undefined, 'not kept: the map holds B\'s chunk only by luck, its gen is not ours + 1')
  t.equal(await readClose(a.vfs, ino), 'Ane', 'the next open asks meta (A rewrote chunk 0 whole: its bytes over "one")')
})

t.test('an invalidation that crosses the fetch of an open leaves that map untrusted', async (t) => {
  const { a, b } = await cluster(t)
  const ino = await created(b.vfs, 'f', 'one')
  a.onAnswer = {
    op: 'chunks',
    run: async () => {
      // meta answered A's open; before A resumes, B commits and A hears of it
      await writeClose(b.vfs, ino, 'two')
      a.deliver()
    },
  }
  t.equal(await readClose(a.vfs, ino), 'one', 'the open was answered before B\'s commit')
  t.equal(a.vfs.closed.get(ino), undefined, 'and its map is not kept')
  t.equal(await readClose(a.vfs, ino), 'two', 'the next open asks meta')
  t.ok(a.vfs.closed.get(ino), 'whose answer no invalidation crossed: kept')
})

t.test("another mount's chmod keeps nothing stale: the attributes come from the cache meta's invalidations keep", async (t) => {
  const { a, b } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  await b.vfs.setattr(ino, { mode: 0o600 })
  const { fh } = await a.vfs.open(ino, O_RDONLY)
  t.equal((await a.vfs.getattr(ino, fh)).mode & 0o777, 0o600, 'mode as B set it')
  await a.vfs.release(fh)
})

t.test('forgetting everything (reconnect, a meta that started serving) drops kept maps and doubts open ones', async (t) => {
  const { a } = await cluster(t)
  const ino = await created(a.vfs, 'f', 'one')
  const other = await created(a.vfs, 'g', 'one')
  const held = await a.vfs.open(other, O_RDONLY)
  t.ok(a.vfs.closed.get(ino))
  a.vfs.clearCache()
  t.equal(a.vfs.closed.get(ino), undefined, 'kept map dropped')
  await a.vfs.release(held.fh)
  t.equal(a.vfs.closed.get(other), undefined, 'a file open across it is not kept at its close')
})

/**
 * A random history of writes, reads, held handles, truncates, forgotten
 * caches and barriers that cannot vouch, on two mounts, each step run to its
 * end before the next (so "the last close" is defined): every read-only open
 * must read what the last completed write or truncate left, whichever mount
 * made it and however late its invalidation arrives (as late as NATS
 * allows; sometimes early).
 */
t.test('random histories: every open reads the last close', async (t) => {
  const seed = Number(process.env.BERTH_REOPEN_SEED ?? Date.now() % 100_000)
  const STEPS = Number(process.env.BERTH_REOPEN_STEPS ?? 400)
  // mulberry32: an LCG's low bits repeat with a short period, and rnd(2) is the writer's choice
  let x = seed >>> 0
  const rnd = (n: number) => {
    x = (x + 0x6d2b79f5) >>> 0
    let z = x
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    return (((z ^ (z >>> 14)) >>> 0) / 4294967296) * n | 0
  }
  const { a, b } = await cluster(t)
  const mounts = [a, b]
  const ino = await created(a.vfs, 'f', 'v0')
  let expected = 'v0'
  const held: Array<{ m: Connection; fh: number }> = []
  const wrong: string[] = []
  for (let step = 0; step < STEPS; step++) {
    const m = mounts[rnd(2)]!
    const other = m === a ? b : a
    m.barrierWorks = rnd(5) !== 0
    if (rnd(4) === 0) other.deliver() // sometimes an invalidation arrives early
    switch (rnd(10)) {
      case 0:
      case 1: {
        const v = `v${step}-${'x'.repeat(rnd(40))}`
        await writeClose(m.vfs, ino, v)
        expected = v
        break
      }
      case 2: {
        const size = rnd(8)
        const { fh } = await m.vfs.open(ino, O_WRONLY)
        await m.vfs.setattr(ino, { size }, fh)
        await m.vfs.flush(fh)
        await m.vfs.release(fh)
        expected = Buffer.concat([Buffer.from(expected).subarray(0, size), Buffer.alloc(Math.max(0, size - expected.length))]).toString()
        break
      }
      case 3: {
        // a handle held across later steps: its file stays open on that mount
        if (held.length < 1) held.push({ m, fh: (await m.vfs.open(ino, O_RDONLY)).fh })
        else {
          const h = held.shift()!
          await h.m.vfs.release(h.fh)
        }
        break
      }
      case 4:
        if (rnd(4) === 0) m.vfs.clearCache()
        break
      default: {
        const got = await readClose(m.vfs, ino)
        if (got !== expected) wrong.push(`step ${step} on ${m === a ? 'A' : 'B'}: read ${JSON.stringify(got)}, last close left ${JSON.stringify(expected)}`)
      }
    }
  }
  for (const h of held) await h.m.vfs.release(h.fh)
  t.same(wrong, [], `${STEPS} steps (seed ${seed}, BERTH_REOPEN_SEED to repeat): no stale read`)
  t.ok(a.vfs.closed.hits + b.vfs.closed.hits > 0, `kept maps were used (${a.vfs.closed.hits + b.vfs.closed.hits} hits, ${a.vfs.closed.misses + b.vfs.closed.misses} misses)`)
})

t.test('ClosedFiles: bounded in bytes, least recently used first', async (t) => {
  const c = new ClosedFiles(3 * 1024)
  const entry = (bytes: number) => ({ gen: 1, size: bytes, chunks: [{ idx: 0, hash: null, len: bytes, nodes: [], data: Buffer.alloc(bytes) }] })
  c.set(1, entry(900))
  c.set(2, entry(900))
  c.get(1)
  c.set(3, entry(900))
  t.equal(c.size, 2, 'one evicted')
  t.ok(c.get(1) && c.get(3), 'the least recently used went')
  c.set(4, entry(10_000))
  t.equal(c.get(4), undefined, 'an entry over the bound is not kept')
  const socketRead = Buffer.alloc(64 * 1024, 7)
  c.set(5, { gen: 1, size: 10, chunks: [{ idx: 0, hash: null, len: 10, nodes: [], data: socketRead.subarray(100, 110) }] })
  const kept = c.get(5)!.chunks[0]!.data!
  t.equal(kept.buffer.byteLength, 10, 'inline bytes that were a view into a larger buffer are kept as a copy of their own')
  t.same(Buffer.from(kept), Buffer.alloc(10, 7))
  c.drop(1)
  c.clear()
  t.equal(c.size, 0)
})

t.test('NamedWatch: named while watched, by anyone watching', async (t) => {
  const w = new NamedWatch()
  const first = w.begin(5)
  const second = w.begin(5)
  w.note(5)
  const third = w.begin(5)
  t.equal(first(), true)
  t.equal(third(), false, 'began after the note')
  w.note(6)
  t.equal(second(), true)
  const fourth = w.begin(5)
  w.noteAll()
  t.equal(fourth(), true, 'noteAll names everything watched')
})
