/**
 * Client Vfs instances over one real meta engine (SQLite) in the test's own
 * process: each Vfs is a mount with a session of its own, their meta calls
 * go straight to the engine, and the requests a mount's ahead pipeline sends
 * can be held at a gate (GatedMeta) to drive an exact interleaving of
 * answers. No blocks unless a test gives a store (`blocks`): files stay
 * small enough to be stored inline in meta.
 */
import { join } from 'node:path'
import type { Test } from 'tap'
import { metaRequests, type MetaOp, type MetaParsed, type MetaReplies, type MetaRequest } from '../../common/protocol'
import type { BlockApi, BlockPut, MetaApi } from '../../client/stores'
import { Vfs, type VfsOptions } from '../../client/vfs'
import type { Changes, MetaEnv } from '../../meta/context'
import { sqliteEngine, type EngineHandle } from '../../meta/engine'
import { NodeTable } from '../../meta/nodes'
import { migrate } from '../../meta/schema'
import { openDatabase } from '../../meta/sqlite'
import { testDir } from './test-dir'

/** What the pipeline sends: a batch as `ahead`, a change alone as its own op. */
const GATED = new Set<MetaOp>(['ahead', 'mkdir', 'mknod', 'unlink', 'rmdir', 'commit', 'setattr'])

/** The engine as a client's MetaApi; the pipeline's requests wait while the gate is shut. */
export class GatedMeta implements MetaApi {
  private shut = false
  private waiting: Array<() => void> = []
  /** Settles once the last request sent has passed the gate. */
  private entered: Promise<void> = Promise.resolve()
  /** Requests that reached the gate, and those answered. */
  aheadSent = 0
  aheadAnswered = 0
  /** `inos` answered: the mount holds reserved numbers (mkdirs may go ahead). */
  reserved = 0
  constructor(private readonly engine: EngineHandle) {}
  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    if (op === 'inos') return this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>).finally(() => this.reserved++)
    if (!GATED.has(op)) return this.engine.call(op, metaRequests[op].parse(body) as MetaParsed<Op>)
    this.aheadSent++
    // meta takes a mount's requests in the order they were sent (one NATS
    // connection): one sent after the gate opened must not overtake one the
    // gate just let go, whose continuation has not run yet
    const before = this.entered
    let enter = (): void => {}
    this.entered = new Promise<void>((resolve) => (enter = resolve))
    if (this.shut) await new Promise<void>((resolve) => this.waiting.push(resolve))
    await before
    enter()
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

/** A block store for tests whose files stay inline in meta. */
export class NoBlocks implements BlockApi {
  put(): Promise<BlockPut> {
    return Promise.reject(new Error('no blocks in this test'))
  }
  release(): void {}
  nameOf(): string {
    throw new Error('no blocks in this test')
  }
  get(): Promise<Buffer> {
    return Promise.reject(new Error('no blocks in this test'))
  }
}

export interface EngineMount {
  meta: GatedMeta
  vfs: Vfs
}

/** Vfs options, and the mount's block store (given its meta, for pins); none by default. */
export type EngineMountOptions = Partial<Omit<VfsOptions, 'session'>> & { blocks?: (meta: MetaApi, session: string) => BlockApi }

/** A meta engine on a fresh database, and `mount(session)` for each client; `published` hears what each mutation changed (none by default). */
export async function engineCluster(t: Test, published: (ch: Changes) => void = () => undefined): Promise<{ engine: EngineHandle; mount: (session: string, opts?: EngineMountOptions) => Promise<EngineMount> }> {
  const db = await openDatabase(join(testDir(t), 'meta.db'), migrate, { sync: 'normal' })
  t.teardown(() => db.close())
  const env: MetaEnv = { db, cluster: 't', metaId: 'm', startedAt: Date.now(), secret: 's', chunkSize: 1 << 20, replicas: 1, nodes: new NodeTable() }
  const engine = sqliteEngine(env, published)
  const mount = async (session: string, opts: EngineMountOptions = {}): Promise<EngineMount> => {
    await engine.call('session', metaRequests.session.parse({ session, ttlMs: 60_000 }) as MetaParsed<'session'>)
    const meta = new GatedMeta(engine)
    const { blocks, ...vfsOpts } = opts
    const vfs = new Vfs(meta, blocks ? blocks(meta, session) : new NoBlocks(), { session, chunkSize: 1 << 20, cacheBytes: 1 << 24, maxDirtyBytes: 1 << 24, maxUploads: 2, readaheadChunks: 0, metaTtlMs: 30_000, unlinkWindow: 64, ...vfsOpts })
    return { meta, vfs }
  }
  return { engine, mount }
}

/** Until `cond` holds, a macrotask at a time (a pipeline sends on its own schedule). */
export async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 1))
  if (!cond()) throw new Error('condition never held')
}
