/**
 * The client's Vfs over a real meta engine (SQLite), with its `ahead`
 * requests held at a gate the test opens, so that the answers to changes sent
 * ahead arrive in the exact interleaving that once broke a directory's
 * attributes: a mkdir's own answer (meta's inode as it was made, nlink 2)
 * arriving after a mkdir inside it was predicted (nlink 3).
 */
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { metaRequests, ROOT_INO, type MetaOp, type MetaParsed, type MetaReplies, type MetaRequest } from '../common/protocol'
import type { BlockApi, BlockPut, MetaApi } from '../client/stores'
import { Vfs } from '../client/vfs'
import type { MetaEnv } from '../meta/context'
import { sqliteEngine, type EngineHandle } from '../meta/engine'
import { NodeTable } from '../meta/nodes'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'

const SESSION = 'ahead-test'
const USER = { uid: 1000, gid: 1000 }

/** What the pipeline sends: a batch as `ahead`, a change alone as its own op. */
const GATED = new Set<MetaOp>(['ahead', 'mkdir', 'mknod', 'unlink', 'rmdir', 'commit'])

/** The engine as a client's MetaApi; the pipeline's requests wait while the gate is shut. */
class GatedMeta implements MetaApi {
  private shut = false
  private waiting: Array<() => void> = []
  /** requests that reached the gate (sent by the pipeline), and those answered. */
  aheadSent = 0
  aheadAnswered = 0
  constructor(private readonly engine: EngineHandle) {}
  /** `inos` answered: the mount holds reserved numbers (mkdirs may go ahead). */
  reserved = 0
  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    if (op === 'inos') return this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>).finally(() => this.reserved++)
    if (!GATED.has(op)) return this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>)
    this.aheadSent++
    if (this.shut) await new Promise<void>((resolve) => this.waiting.push(resolve))
    try {
      return await this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>)
    } finally {
      this.aheadAnswered++
    }
  }
  close(): void {
    this.shut = true
  }
  /** Lets the first `n` requests waiting at the gate through (all by default); the gate stays shut for the rest. */
  pass(n = Infinity): void {
    for (const go of this.waiting.splice(0, n)) go()
  }
  open(): void {
    this.shut = false
    this.pass()
  }
}

class NoBlocks implements BlockApi {
  put(): Promise<BlockPut> {
    return Promise.reject(new Error('no blocks in this test'))
  }
  release(): void {}
  get(): Promise<Buffer> {
    return Promise.reject(new Error('no blocks in this test'))
  }
}

async function setup(t: Test) {
  const db = await openDatabase(join(t.testdir(), 'meta.db'), migrate, { sync: 'normal' })
  t.teardown(() => db.close())
  const env: MetaEnv = { db, cluster: 't', metaId: 'm', startedAt: Date.now(), secret: 's', chunkSize: 1 << 20, replicas: 1, nodes: new NodeTable() }
  const engine = sqliteEngine(env, () => undefined)
  await engine.call('session', metaRequests.session.parse({ session: SESSION, ttlMs: 60_000 }) as MetaParsed<'session'>)
  const meta = new GatedMeta(engine)
  const vfs = new Vfs(meta, new NoBlocks(), { session: SESSION, chunkSize: 1 << 20, cacheBytes: 1 << 24, maxDirtyBytes: 1 << 24, maxUploads: 2, readaheadChunks: 0, metaTtlMs: 30_000, unlinkWindow: 64 })
  return { engine, meta, vfs }
}

/** Until `cond` holds, a macrotask at a time (the pipeline sends on its own schedule). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 1))
  if (!cond()) throw new Error('condition never held')
}

t.test('a mkdir\'s own answer, arriving after a mkdir inside it was predicted, does not undo its link', async (t) => {
  const { engine, meta, vfs } = await setup(t)
  const top = await vfs.mkdir(ROOT_INO, 'top', 0o755, USER)
  await vfs.readdir(top.ino, 0, 1)
  await vfs.mkdir(top.ino, 'primer', 0o755, USER)
  await until(() => meta.reserved > 0)

  meta.close()
  const sentBefore = meta.aheadSent
  const d = await vfs.mkdir(top.ino, 'd', 0o750, USER)
  await until(() => meta.aheadSent > sentBefore)
  await vfs.mkdir(d.ino, 'sub', 0o755, USER)
  await until(() => meta.aheadSent > sentBefore + 1) // sub's request is out too (two may be)
  // d's request through alone; look once its answer is in, before sub's is
  const answered = meta.aheadAnswered
  meta.pass(1)
  await until(() => meta.aheadAnswered > answered)
  await new Promise((resolve) => setImmediate(resolve)) // the pipeline hands each change its outcome (microtasks)
  t.equal((await vfs.getattr(d.ino)).nlink, 3, 'd\'s answer did not replace the prediction')
  meta.open()
  await vfs.fsyncdir(d.ino)
  t.equal((await vfs.getattr(d.ino)).nlink, 3, 'and meta\'s count once sub is answered')
  t.equal((await engine.call('getattr', metaRequests.getattr.parse({ ino: d.ino }) as MetaParsed<'getattr'>)).attr.nlink, 3, 'meta agrees')
})
