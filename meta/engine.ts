/**
 * The metadata engine: every operation on the namespace, independent of how
 * requests arrive (meta/server.ts puts it on NATS). Errno-speaking like JuiceFS
 * `pkg/meta/interface.go`: each method resolves with its reply or rejects with
 * a BerthError whose `code` is an errno name; the contract line names the
 * codes a caller should expect besides EINVAL for malformed arguments.
 *
 * Mutations (docs/meta.md#mutations) are deterministic: the engine stamps each
 * with one time when it accepts it (handlers read it through meta/time.ts),
 * inode numbers and epochs come from counters inside the database, and the
 * mutation, its request-id answer (meta/requests.ts) and nothing else run in
 * one write transaction. Applying the same writes in the same order to the same
 * state gives the same state on any replica (meta/log/).
 */
import { Changes, type MetaEnv } from './context'
import { handlers, type Handler } from './handlers'
import type { MetaOp, MetaParsed, MetaReplies } from '../common/protocol'
import { forgetOld, outcomeOf, parseRid, recall, remember, settle, type Outcome } from './requests'
import type { Conn, Database } from './sqlite'
import { wallClock } from './time'

type Call<Op extends MetaOp> = (req: MetaParsed<Op>) => Promise<MetaReplies[Op]>

export interface MetaEngine {
  /** Cluster parameters, the data-plane token and live nodes. */
  hello: Call<'hello'>
  /** Attributes of `name` in directory `parent`: ENOENT, ENOTDIR. */
  lookup: Call<'lookup'>
  /** Attributes of an inode: ENOENT. */
  getattr: Call<'getattr'>
  /** Changes mode/owner/size/times; a smaller size frees chunks: ENOENT, EISDIR (size of a dir). */
  setattr: Call<'setattr'>
  /** Creates a file, FIFO, socket or device (and opens it for `session`): EEXIST, ENOENT, ENOTDIR. */
  mknod: Call<'mknod'>
  /** Creates a directory (with a reserved inode number: EINVAL when it is not): EEXIST, ENOENT, ENOTDIR, EMLINK. */
  mkdir: Call<'mkdir'>
  /** Removes a non-directory name; the inode lives while open: ENOENT, EISDIR, ENOTDIR. */
  unlink: Call<'unlink'>
  /** Removes an empty directory: ENOENT, ENOTEMPTY, ENOTDIR, EBUSY (root). */
  rmdir: Call<'rmdir'>
  /** Unlinks, rmdirs and mkdirs in order, each on its own; a refused item answers with its error in `results`. */
  ahead: Call<'ahead'>
  /** Reserves inode numbers for a session's mkdirs ahead: ESTALE (no such session). */
  inos: Call<'inos'>
  /** renameat2 with NOREPLACE/EXCHANGE: ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EINVAL (into itself). */
  rename: Call<'rename'>
  /** New name for an existing non-directory: EEXIST, ENOENT, EPERM (directory), EMLINK. */
  link: Call<'link'>
  /** Creates a symbolic link: EEXIST, ENOENT, ENOTDIR. */
  symlink: Call<'symlink'>
  /** Target of a symlink: ENOENT, EINVAL (not a symlink). */
  readlink: Call<'readlink'>
  /** One page of entries with attributes, by name cursor: ENOENT, ENOTDIR. */
  readdir: Call<'readdir'>
  /** Capacity from live data nodes and inode counts. */
  statfs: Call<'statfs'>
  /** Value of one xattr: ENOENT, ENODATA. */
  getxattr: Call<'getxattr'>
  /** Sets one xattr (CREATE/REPLACE flags): ENOENT, EEXIST, ENODATA, E2BIG. */
  setxattr: Call<'setxattr'>
  /** Names of an inode's xattrs: ENOENT. */
  listxattr: Call<'listxattr'>
  /** Removes one xattr: ENOENT, ENODATA. */
  removexattr: Call<'removexattr'>
  /** Registers `session` as holding the inode open; returns attr and first chunk page: ENOENT. */
  open: Call<'open'>
  /** One page of the chunk map: ENOENT. */
  chunks: Call<'chunks'>
  /** Replaces chunks and sets the size in one transaction: ENOENT, EISDIR, EINVAL. */
  commit: Call<'commit'>
  /** copy_file_range: chunks of one file become chunks of another, sharing blocks: EAGAIN (source changed), EINVAL, EISDIR, ENOENT. */
  clonechunks: Call<'clonechunks'>
  /** Drops open registrations; frees inodes unlinked and no longer open anywhere. */
  release: Call<'release'>
  /** Registers (no epoch) or renews a session lease: ESTALE (expired or replaced). */
  session: Call<'session'>
  /** New epoch with exactly the listed open files; reports inodes already gone. */
  sessionRestore: Call<'sessionRestore'>
  /** Ends a session: releases its open files, pins and locks. */
  sessionEnd: Call<'sessionEnd'>
  /** Sets or clears a byte-range or flock lock; never waits (granted: false on conflict): ENOENT, EINVAL. */
  lock: Call<'lock'>
  /** The first lock of another owner that conflicts (F_GETLK): EINVAL. */
  getlk: Call<'getlk'>
  /** Counters for `berth status`. */
  status: Call<'status'>
  /** Keeps blocks from GC until the session commits or unpins them. */
  pin: Call<'pin'>
  /** Drops pins of this session. */
  unpin: Call<'unpin'>
  /** A reader found a bad copy: meta forgets that replica (repair follows). */
  badCopy: Call<'badCopy'>
  /** Operator state of a data node (drain, undrain, decommission, forget): ENOENT, EINVAL, EBUSY. */
  nodeAdmin: Call<'nodeAdmin'>
  /** One page of a node's inventory with meta's view of each copy (fsck): ENOENT (not live), ENOSYS. */
  inventory: Call<'inventory'>
  /** What GC and orphan collection would reclaim now (`berth gc`): ENOSYS without loops. */
  gcPlan: Call<'gcPlan'>
  /** One GC and one reconciliation pass now (`berth gc --run`): EAGAIN on a replica not leading. */
  gcRun: Call<'gcRun'>
  /** A consistent copy of the database for `berth meta dump`, read in pieces: ENOENT (unknown dump). */
  dumpStart: Call<'dumpStart'>
  dumpRead: Call<'dumpRead'>
  dumpEnd: Call<'dumpEnd'>
}

/** Operations that never write: served from the read connection, never logged. */
export const READ_OPS: ReadonlySet<MetaOp> = new Set<MetaOp>([
  'hello', 'lookup', 'getattr', 'readlink', 'readdir', 'statfs', 'getxattr', 'listxattr', 'chunks', 'status', 'inventory', 'getlk',
  // operator reads (meta/gc-ops.ts, meta/dump.ts): they ask nodes or copy the database, never inside a write
  'gcPlan', 'dumpStart', 'dumpRead', 'dumpEnd',
])

/**
 * Operator commands that talk to data nodes between their writes: run outside
 * one request transaction (a node command must not hold the group commit open
 * for seconds) and not remembered. Each of their writes is its own transaction
 * and, on a replicated meta, its own log entry like any other; they are
 * idempotent (drain twice is drain), so a retry needs no stored answer.
 */
const OPERATOR_OPS: ReadonlySet<MetaOp> = new Set<MetaOp>(['nodeAdmin', 'gcRun'])

/**
 * `open` is not remembered: its answer carries the chunk map (up to a page of
 * inline bytes) and a repeated open only counts the inode open twice, which can
 * delay freeing an unlinked inode until the session ends, never free it early.
 */
function remembered(op: MetaOp): boolean {
  return op !== 'open'
}

/** A Database whose reads and writes all go to one open transaction. */
function inTransaction(db: Database, tx: Conn): Database {
  return { ...db, read: tx, write: (fn) => fn(tx) }
}

export interface EngineHandle extends MetaEngine {
  /** Typed dispatch for the RPC layer. */
  call<Op extends MetaOp>(op: Op, req: MetaParsed<Op>): Promise<MetaReplies[Op]>
  /** Drops request answers past their memory (a write: run it on the leader only). */
  prune(): Promise<number>
}

/**
 * The SQLite engine. `published` hears what each committed mutation changed
 * (cache invalidations); it is not called for a repeated request.
 */
export function sqliteEngine(env: MetaEnv, published: (changes: Changes) => void): EngineHandle {
  async function mutate<Op extends MetaOp>(op: Op, req: MetaParsed<Op>): Promise<MetaReplies[Op]> {
    const clock = wallClock()
    const id = parseRid((req as { rid?: string }).rid)
    const changes = new Changes()
    changes.by = id?.client
    const handler = handlers[op] as Handler<Op>
    const outcome = await env.db.write(async (tx): Promise<Outcome> => {
      // the writer runs one mutation at a time: the clock on it is this one's until it ends
      tx.clock = clock
      try {
        const prior = id ? await recall(tx, id, op) : null
        if (prior) return prior
        // the mutation in a savepoint of its own: a refusal (errno) rolls back
        // what it did but its answer is still remembered, in the same commit
        await tx.run('SAVEPOINT request')
        let out: Outcome
        try {
          out = { ok: true, value: await handler({ ...env, db: inTransaction(env.db, tx) }, req, changes) }
        } catch (err) {
          const refused = outcomeOf(err)
          if (!refused) throw err // internal failure: nothing is kept, a retry runs again
          await tx.run('ROLLBACK TO request')
          out = refused
        }
        await tx.run('RELEASE request')
        if (id && remembered(op)) await remember(tx, id, op, out, clock.ms)
        return out
      } finally {
        tx.clock = null
      }
    })
    if (outcome.ok && !changes.empty) published(changes) // a refusal's changes were rolled back
    return settle(outcome) as MetaReplies[Op]
  }

  async function operator<Op extends MetaOp>(op: Op, req: MetaParsed<Op>): Promise<MetaReplies[Op]> {
    const changes = new Changes()
    // each of its transactions takes the wall clock when it reads it
    const reply = await (handlers[op] as Handler<Op>)(env, req, changes)
    if (!changes.empty) published(changes)
    return reply
  }

  function call<Op extends MetaOp>(op: Op, req: MetaParsed<Op>): Promise<MetaReplies[Op]> {
    if (READ_OPS.has(op)) return Promise.resolve((handlers[op] as Handler<Op>)(env, req, new Changes()))
    if (OPERATOR_OPS.has(op)) return operator(op, req)
    return mutate(op, req)
  }

  const engine = { call, prune: () => env.db.write((tx) => forgetOld(tx, wallClock().ms)) } as EngineHandle
  for (const op of Object.keys(handlers) as MetaOp[]) {
    ;(engine as unknown as Record<MetaOp, (req: never) => Promise<unknown>>)[op] = (req: never) => call(op, req)
  }
  return engine
}
