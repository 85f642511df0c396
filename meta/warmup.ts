/**
 * A fresh meta's warm-up: its request path run on a scratch database before
 * the first mount's requests need it fast.
 *
 * Why: V8 runs a new process's JavaScript in its interpreter and compiles a
 * function only after it has run many times. A fresh meta spent 2.3 ms of CPU
 * per create on its first 200 creates, 1.4-1.8 ms over its first 1,000 and
 * 0.6 ms once warm (about 3,000 creates in), and the mount showed the same
 * curve: the first few thousand creates after a start ran at half the warm
 * rate. With this, meta's user CPU on the first 1,000 creates was 0.9-1.2 s
 * against 1.3-1.6 s (docs/bench.md, "A fresh cluster's first creates"); the
 * rest is the NATS side of a request, which no scratch run can reach.
 *
 * What runs: the operations a mount sends most (the create of a small file as
 * one `ahead` request, lookups that miss, getattr, setattr, listings,
 * renames, unlinks, releases, mkdir and rmdir), each as the server runs a
 * request: its body encoded and parsed against its schema, the engine's
 * mutation or read, the reply encoded. They run on a database of their own
 * in a temporary directory (synchronous=NORMAL: no fsync per commit), with an
 * engine that publishes nothing, a session of its own and no NATS: nothing
 * reaches the cluster's namespace, its log, its mounts or its metrics. The
 * directory is removed at the end, also when a step fails.
 *
 * When: once this process serves (a single meta at start, a replica when it
 * first leads), one scratch file's requests (four or five) at a time, each
 * followed by a rest as long as it ran: at most half of one core, so the
 * rest of a starting cluster keeps the other half. Run at full speed by
 * both replicas of the container cluster (test/containers), the first
 * mount's hello once went unanswered for its 10 s on a 2-core host busy
 * with another test; paced, and on the leader only, it was answered in 7 s.
 * A real request waits at most one step (about a millisecond once warm).
 * `--warmup-ops 0` (BERTH_META_WARMUP_OPS=0) turns it off.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { ZodType } from 'zod'
import { ROOT_INO, metaRequests, type MetaOp, type MetaParsed, type MetaReplies, type MetaRequest } from '../common/protocol'
import { encode, errorReply, okReply, parseBody } from '../common/wire'
import type { MetaEnv } from './context'
import { sqliteEngine, type EngineHandle } from './engine'
import { NodeTable } from './nodes'
import { migrate } from './schema'
import { openDatabase, type Database } from './sqlite'
import { isAlive } from '../common/process-alive'

export interface WarmupReport {
  ops: number
  ms: number
}

/** About 2,000 scratch files (six requests each); meta's CPU per create levels off after about 3,000 creates. About 3.5 s of CPU on this 2-core host, paced over twice that. */
export const DEFAULT_WARMUP_OPS = 12_000

/** Files per directory before the scratch directory is emptied and removed. */
const FILES_PER_DIR = 250
const SMALL_FILE = Buffer.alloc(4096, 0x20)

/**
 * Rests as long as the last step ran: the warm-up takes at most half of one
 * core, so a cluster starting beside it (other meta replicas, data nodes,
 * NATS, the first mounts) keeps the rest. A real request waits at most one
 * step.
 */
class Pacer {
  private since = performance.now()
  async rest(): Promise<void> {
    const ran = performance.now() - this.since
    await new Promise<void>((resolve) => setTimeout(resolve, Math.min(ran, 50)))
    this.since = performance.now()
  }
}

/**
 * Runs about `ops` requests on a scratch copy of meta's engine. `stopped`
 * ends it early (meta is shutting down).
 */
export async function warmUp(env: MetaEnv, ops: number, stopped: () => boolean = () => false): Promise<WarmupReport> {
  const started = performance.now()
  const scratch = await openScratchEngine(env)
  const run = new ScratchRequests(scratch.engine)
  const pacer = new Pacer()
  try {
    const session = randomBytes(12).toString('base64url')
    await run.call('session', { session, ttlMs: 3_600_000, host: 'warmup' })
    let reserved: number[] = []
    let d = 0
    while (run.count < ops && !stopped()) {
      const parent = ((await run.call('mkdir', { parent: ROOT_INO, name: `d${d++}`, mode: 0o40755, uid: 0, gid: 0, umask: 0o22 })) as { attr: { ino: number } }).attr.ino
      const made: number[] = []
      for (let i = 0; i < FILES_PER_DIR && run.count < ops && !stopped(); i++) {
        if (!reserved.length) {
          const r = (await run.call('inos', { session, count: 1000 })) as { first: number; count: number }
          reserved = Array.from({ length: r.count }, (_, k) => r.first + k)
        }
        const name = `f${i}`
        await run.call('lookup', { parent, name }) // a miss, as before every create
        const ino = reserved.shift()!
        await run.call('ahead', {
          items: [
            { op: 'mknod', parent, name, mode: 0o100644, uid: 0, gid: 0, umask: 0o22, ino, session },
            { op: 'commit', ino, session, size: SMALL_FILE.length, chunks: [{ idx: 0, hash: null, len: SMALL_FILE.length, nodes: [], data: SMALL_FILE }], mtime: [Math.floor(Date.now() / 1000), 0] },
          ],
        })
        await run.call('getattr', { ino })
        await run.call('lookup', { parent, name })
        if (i % 3 === 0) await run.call('setattr', { ino, mode: 0o100600 })
        made.push(ino)
        await pacer.rest()
      }
      await run.call('release', { session, inos: made, holds: [] })
      await run.call('readdir', { ino: parent, cursor: null, limit: 1000 })
      for (let i = 0; i < made.length && !stopped(); i++) {
        if (i % 4 === 0) await run.call('rename', { parent, name: `f${i}`, newParent: parent, newName: `g${i}`, flags: 0 })
        await run.call('unlink', { parent, name: i % 4 === 0 ? `g${i}` : `f${i}` })
        await pacer.rest()
      }
      await run.call('rmdir', { parent: ROOT_INO, name: `d${d - 1}` })
    }
    await run.call('sessionEnd', { session })
    return { ops: run.count, ms: Math.round(performance.now() - started) }
  } finally {
    await scratch.close()
  }
}

const SCRATCH_PREFIX = 'berth-meta-warmup-'

/**
 * Scratch folders of metas that died warming up (kill -9, a crash: no
 * `finally` ran), named by their pid: each held up to tens of MB in $TMPDIR.
 * A live process's folder is left alone (metas of several clusters, or
 * replicas, may share a host).
 */
function removeAbandoned(): void {
  let names: string[]
  try {
    names = readdirSync(tmpdir())
  } catch {
    return
  }
  for (const name of names) {
    if (!name.startsWith(SCRATCH_PREFIX)) continue
    const pid = parseInt(name.slice(SCRATCH_PREFIX.length), 10)
    if (!pid || pid === process.pid || isAlive(pid)) continue
    rmSync(join(tmpdir(), name), { recursive: true, force: true })
  }
}

interface ScratchEngine {
  engine: EngineHandle
  /** Closes the scratch database and removes its directory. */
  close(): Promise<void>
}

/** An engine on a database of its own in a new temporary directory, publishing nothing. `like`: cluster parameters to copy. */
async function openScratchEngine(like: Pick<MetaEnv, 'cluster' | 'metaId' | 'secret' | 'chunkSize' | 'replicas'>): Promise<ScratchEngine> {
  removeAbandoned()
  const dir = mkdtempSync(join(tmpdir(), `${SCRATCH_PREFIX}${process.pid}-`))
  let db: Database
  try {
    // checkpoints every second keep the WAL small (a minute's worth reached 37 MB)
    db = await openDatabase(join(dir, 'scratch.db'), migrate, { sync: 'normal', checkpointMs: 1000 })
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const env: MetaEnv = { db, cluster: like.cluster, metaId: like.metaId, startedAt: Date.now(), secret: like.secret, chunkSize: like.chunkSize, replicas: like.replicas, nodes: new NodeTable() }
  return {
    engine: sqliteEngine(env, () => undefined),
    async close() {
      await db.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Requests as meta/server.ts runs them: body through the wire and the schema, reply encoded. */
class ScratchRequests {
  count = 0
  private n = 0
  private readonly origin = randomBytes(6).toString('base64url')

  constructor(private readonly engine: EngineHandle) {}

  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op] | null> {
    this.count++
    const rid = `${this.origin}.${(++this.n).toString(36)}.${this.n.toString(36)}`
    const parsed = parseBody(metaRequests[op] as unknown as ZodType<MetaParsed<Op>>, encode({ ...body, rid }))
    // each reply is encoded as serve() would and dropped: only the compiling counts
    try {
      const reply = await this.engine.call(op, parsed)
      okReply(reply)
      return reply
    } catch (err) {
      errorReply(err) // a refusal (the lookup that misses) is answered like any other
      return null
    }
  }
}
