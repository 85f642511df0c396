/**
 * A small promise layer over better-sqlite3.
 *
 * Design: two connections to one WAL database. The reader serves read-only
 * operations and always sees the last committed state; the writer runs every
 * mutation through one queue (SQLite allows one writer; queueing here avoids
 * SQLITE_BUSY churn and keeps one operation's statements from interleaving
 * with another's). Operations queued together share one short transaction
 * (group commit, see drain()).
 *
 * better-sqlite3 runs each statement synchronously on this thread: a
 * statement costs what SQLite spends on it (tens of microseconds here), not a
 * trip to libuv's thread pool and back per statement as with the sqlite3
 * package, which made a 10-16-statement mutation wait for 20-32 event-loop
 * wake-ups (docs/bench.md, "meta on a synchronous SQLite binding"). The
 * methods stay async so callers are unchanged; errors arrive as rejections.
 * What must not hold this thread for long runs on worker threads instead:
 * VACUUM INTO for snapshots and dumps (meta/vacuum-into.ts) and queries that
 * scan whole tables (`scan`, meta/scan-reader.ts).
 *
 * Statements are prepared once per connection and cached by SQL text. Every
 * query runs to completion (`all`), so no statement keeps a read snapshot open.
 */
import BetterSqlite3 from 'better-sqlite3'
import { Checkpointer, WAL_BACKSTOP_BYTES, WAL_BACKSTOP_PAGES, type CheckpointerStats } from './checkpointer'
import { ScanReader } from './scan-reader'
import { bindable } from './sql-bind'
import type { MutationClock } from './time'

export type SqlValue = string | number | bigint | Buffer | Uint8Array | null
export type Params = SqlValue[]

export interface RunResult {
  changes: number
  lastID: number
}

/** One write as executed: replaying these in order repeats a transaction's effect. */
export type Write = ['run', string, Params] | ['exec', string]

function isRead(sql: string): boolean {
  return /^\s*(SELECT|PRAGMA|EXPLAIN)\b/i.test(sql)
}

type Statement = BetterSqlite3.Statement<Params, unknown>

export class Conn {
  private readonly stmts = new Map<string, Statement>()
  /**
   * While set, every write statement run on this connection is appended here
   * (meta/log/: a replicated group carries the writes, with every value bound).
   */
  capture: Write[] | null = null
  /**
   * The time of the mutation running on this connection (meta/time.ts): set
   * by the engine around each mutation on the writer, null otherwise.
   */
  clock: MutationClock | null = null

  constructor(readonly db: BetterSqlite3.Database) {}

  private stmt(sql: string): Statement {
    let s = this.stmts.get(sql)
    if (!s) {
      s = this.db.prepare<Params, unknown>(sql)
      this.stmts.set(sql, s)
    }
    return s
  }

  async all<T>(sql: string, params: Params = []): Promise<T[]> {
    if (this.capture && !isRead(sql)) this.capture.push(['run', sql, params])
    const s = this.stmt(sql)
    // like the sqlite3 package, a statement that returns no rows (an UPDATE) answers []
    if (!s.reader) {
      s.run(...bindable(params))
      return []
    }
    return s.all(...bindable(params)) as T[]
  }

  async get<T>(sql: string, params: Params = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0]
  }

  async run(sql: string, params: Params = []): Promise<RunResult> {
    if (this.capture && !isRead(sql)) this.capture.push(['run', sql, params])
    const r = this.stmt(sql).run(...bindable(params))
    return { changes: r.changes, lastID: Number(r.lastInsertRowid) }
  }

  async exec(sql: string): Promise<void> {
    if (this.capture && !isRead(sql)) this.capture.push(['exec', sql])
    this.db.exec(sql)
  }

  async close(): Promise<void> {
    // prepared statements are finalized with the connection
    this.stmts.clear()
    if (this.db.open) this.db.close()
  }
}

function openConn(file: string, opts: { readonly: boolean }): Conn {
  // timeout: SQLite's busy timeout, 5 s (another connection, e.g. a VACUUM INTO copy, may hold a lock for a moment)
  return new Conn(new BetterSqlite3(file, { readonly: opts.readonly, fileMustExist: opts.readonly, timeout: 5000 }))
}

/** A read-only connection of its own to a database file (dumps, checks of a copy). */
export async function openReadOnly(file: string): Promise<Conn> {
  return openConn(file, { readonly: true })
}

export interface Database {
  /** Read-only queries; sees the last committed transaction. */
  readonly read: Conn
  /** Read-only queries that scan whole tables, on a worker thread (meta/scan-reader.ts). */
  readonly scan: ScanReader
  /**
   * Runs `fn` in one write transaction, after every earlier one finished.
   * `replay`: the writes come from the replicated log (a follower applying
   * entries): such a job commits in a group of its own and never goes through
   * the commit hook, which on a follower refuses every other write.
   */
  write<T>(fn: (tx: Conn) => Promise<T>, opts?: { replay?: boolean }): Promise<T>
  /** Checkpoints the worker made (meta/checkpointer.ts). */
  readonly checkpoints: CheckpointerStats
  /** Waits for queued writes, then closes both connections. Safe to call twice. */
  close(): Promise<void>
  /**
   * While a hook is set, each group's writes are handed to it after the last
   * operation and before COMMIT, on the writer; if it throws, the whole group
   * rolls back and every operation in it fails with its error (meta/log/: the
   * group is appended to the replicated log first). Null: writes are local.
   * `onLostCommit` hears a COMMIT that failed after the hook succeeded.
   */
  setCommitHook(hook: CommitHook | null, onLostCommit?: (err: unknown) => void): void
}

export type CommitHook = (tx: Conn, writes: Write[][]) => Promise<void>

/** Most operations one group commit may carry. */
const MAX_GROUP = 64

/**
 * In WAL mode, synchronous=NORMAL writes each commit to the WAL (in the OS
 * page cache) without fsync: a crash or kill -9 of this process loses nothing
 * acknowledged, a power loss may lose the last commits but never corrupts.
 * FULL adds an fsync per commit (group commit shares it between operations).
 */
function pragmas(sync: 'normal' | 'full'): string {
  return (
    `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF;` +
    // checkpoints run on a worker (meta/checkpointer.ts); the writer's own is the WAL's size bound
    ` PRAGMA wal_autocheckpoint = ${WAL_BACKSTOP_PAGES}; PRAGMA journal_size_limit = ${walSizeLimit(sync)};`
  )
}

/**
 * What the WAL file is cut back to when the WAL restarts from its start
 * (after each complete checkpoint, about every CHECKPOINT_MS while writes
 * come). With `--sync normal` (the default): nothing. A WAL frame is a page
 * plus a 24-byte header, so frames straddle the OS's 4 KiB pages; rewriting
 * a kept file from its start makes the kernel read every page it partly
 * overwrites, and once those pages left the page cache (the benchmark's
 * drop_caches; this VM's memory reclaim does it on its own) each commit
 * waited for disk reads: meta read the whole 40 MB WAL back during the next
 * 3,000 creates, which ran at 438-447 files/s against 523-633 with the file
 * cut to nothing, where every write appends (docs/bench.md). With
 * `--sync full` the file keeps the backstop's size: an fsync of a write
 * inside the file flushes no size change, one of an append does.
 */
function walSizeLimit(sync: 'normal' | 'full'): number {
  return sync === 'full' ? WAL_BACKSTOP_BYTES : 0
}

export interface OpenOptions {
  sync?: 'normal' | 'full'
  /**
   * SQLite's page cache of the writer and of the reader, MiB each (SQLite's
   * default is 2 MiB). Pages beyond it are read from the file through the OS
   * page cache, which the kernel may drop (memory pressure, drop_caches): a
   * `chunks` request then waited for the disk. Memory is taken as pages are
   * read, up to this much.
   */
  cacheMb?: number
  /** Hears a checkpoint worker's failure (checkpoints then fall to the writer's backstop). */
  onCheckpointError?: (message: string) => void
  /** The worker's checkpoint interval (tests: a long one leaves only the writer's backstop). */
  checkpointMs?: number
}

export async function openDatabase(file: string, migrate: (c: Conn) => Promise<void>, opts: OpenOptions = {}): Promise<Database> {
  const writer = openConn(file, { readonly: false })
  await writer.exec(pragmas(opts.sync ?? 'full'))
  await migrate(writer)
  const reader = openConn(file, { readonly: true })
  if (opts.cacheMb !== undefined) {
    for (const c of [writer, reader]) await c.exec(`PRAGMA cache_size = -${Math.round(opts.cacheMb * 1024)}`)
  }
  const scan = new ScanReader(file)
  // started by the first write: a database only read (a dump's copy) needs none
  const checkpointer = new Checkpointer(file, opts.onCheckpointError, opts.checkpointMs)

  interface Job {
    replay: boolean
    fn: (tx: Conn) => Promise<unknown>
    resolve: (v: unknown) => void
    reject: (e: unknown) => void
  }
  const queue: Job[] = []
  // Set and cleared synchronously with the final empty-queue check in drain(),
  // so a write queued from a resolved caller's continuation is never stranded.
  let draining: Promise<void> | undefined
  let closing: Promise<void> | undefined
  let commitHook: CommitHook | null = null
  let onLostCommit: (err: unknown) => void = () => undefined

  // Group commit: every write queued while a commit is in progress joins the
  // next transaction, each inside its own savepoint so a failing operation
  // rolls back alone. Callers are answered only after COMMIT (one fsync for
  // the group), so acknowledged means durable.
  async function drain(): Promise<void> {
    await Promise.resolve()
    while (queue.length) {
      // a replayed log entry never shares a transaction (nor the hook's verdict) with local writes
      const firstReplay = queue.findIndex((j) => j.replay)
      const group = queue.splice(0, firstReplay === 0 ? 1 : firstReplay > 0 ? Math.min(firstReplay, MAX_GROUP) : MAX_GROUP)
      const results: Array<{ ok: true; value: unknown } | { ok: false; err: unknown }> = []
      let hooked = false
      try {
        const hook = group[0]!.replay ? null : commitHook
        const writes: Write[][] = []
        await writer.run('BEGIN IMMEDIATE')
        if (group.length === 1) {
          // Alone in its transaction: a failure rolls back the whole of it.
          writer.capture = hook ? [] : null
          try {
            results.push({ ok: true, value: await group[0]!.fn(writer) })
            if (writer.capture?.length) writes.push(writer.capture)
          } finally {
            writer.capture = null
          }
        } else for (const job of group) {
          await writer.run('SAVEPOINT op')
          writer.capture = hook ? [] : null
          try {
            results.push({ ok: true, value: await job.fn(writer) })
            if (writer.capture?.length) writes.push(writer.capture)
            writer.capture = null
            await writer.run('RELEASE op')
          } catch (err) {
            // a failed operation's writes are rolled back here and never logged
            writer.capture = null
            await writer.run('ROLLBACK TO op')
            await writer.run('RELEASE op')
            results.push({ ok: false, err })
          }
        }
        if (hook && writes.length) {
          await hook(writer, writes)
          hooked = true
        }
        await writer.run('COMMIT')
      } catch (err) {
        // the hook's effect (an entry in the replicated log) cannot be undone:
        // a replica whose own commit of it failed must stop and catch up
        if (hooked) onLostCommit(err)
        await writer.run('ROLLBACK').catch(() => undefined)
        for (const job of group) job.reject(err)
        continue
      }
      group.forEach((job, i) => {
        const r = results[i]!
        if (r.ok) job.resolve(r.value)
        else job.reject(r.err)
      })
    }
    draining = undefined
  }

  return {
    read: reader,
    scan,
    checkpoints: checkpointer.stats,
    write<T>(fn: (tx: Conn) => Promise<T>, opts: { replay?: boolean } = {}): Promise<T> {
      if (closing) return Promise.reject(new Error('database is closing'))
      checkpointer.start()
      return new Promise<T>((resolve, reject) => {
        queue.push({ replay: opts.replay === true, fn, resolve: resolve as (v: unknown) => void, reject })
        draining ??= drain()
      })
    },
    setCommitHook(hook, lost) {
      commitHook = hook
      if (lost) onLostCommit = lost
    },
    close() {
      closing ??= (async () => {
        while (draining) await draining
        await checkpointer.close()
        await scan.close()
        await reader.close()
        await writer.close()
      })()
      return closing
    },
  }
}
