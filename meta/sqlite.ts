/**
 * A small promise layer over the sqlite3 package.
 *
 * Design: two connections to one WAL database. The reader serves read-only
 * operations and always sees the last committed state; the writer runs every
 * mutation as a short `BEGIN IMMEDIATE` transaction, one at a time through a
 * queue (SQLite allows one writer; queueing here avoids SQLITE_BUSY churn and
 * keeps a transaction's statements from interleaving with another's).
 *
 * Statements are prepared once per connection and cached by SQL text. Every
 * query runs to completion (`all`), because a half-read statement would keep
 * its read snapshot open and later reads on the connection would go stale.
 */
import sqlite3 from 'sqlite3'

export type SqlValue = string | number | bigint | Buffer | Uint8Array | null
export type Params = SqlValue[]

export interface RunResult {
  changes: number
  lastID: number
}

export class Conn {
  private readonly stmts = new Map<string, sqlite3.Statement>()

  constructor(readonly db: sqlite3.Database) {}

  private stmt(sql: string): sqlite3.Statement {
    let s = this.stmts.get(sql)
    if (!s) {
      s = this.db.prepare(sql)
      this.stmts.set(sql, s)
    }
    return s
  }

  all<T>(sql: string, params: Params = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.stmt(sql).all<T>(params, (err, rows) => (err ? reject(err) : resolve(rows)))
    })
  }

  async get<T>(sql: string, params: Params = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0]
  }

  run(sql: string, params: Params = []): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      this.stmt(sql).run(params, function (err) {
        if (err) reject(err)
        else resolve({ changes: this.changes, lastID: this.lastID })
      })
    })
  }

  exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => this.db.exec(sql, (err) => (err ? reject(err) : resolve())))
  }

  async close(): Promise<void> {
    for (const s of this.stmts.values()) await new Promise<void>((resolve) => s.finalize(() => resolve()))
    this.stmts.clear()
    await new Promise<void>((resolve, reject) => this.db.close((err) => (err ? reject(err) : resolve())))
  }
}

function openConn(file: string, mode: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, mode, (err) => (err ? reject(err) : resolve(new Conn(db))))
  })
}

export interface Database {
  /** Read-only queries; sees the last committed transaction. */
  readonly read: Conn
  /** Runs `fn` in one write transaction, after every earlier one finished. */
  write<T>(fn: (tx: Conn) => Promise<T>): Promise<T>
  /** Waits for queued writes, then closes both connections. Safe to call twice. */
  close(): Promise<void>
}

const PRAGMAS = 'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF;'

export async function openDatabase(file: string, migrate: (c: Conn) => Promise<void>): Promise<Database> {
  const writer = await openConn(file, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE)
  await writer.exec(PRAGMAS)
  await migrate(writer)
  const reader = await openConn(file, sqlite3.OPEN_READONLY)
  await reader.exec('PRAGMA busy_timeout = 5000;')

  let tail: Promise<unknown> = Promise.resolve()
  let closing: Promise<void> | undefined
  return {
    read: reader,
    write<T>(fn: (tx: Conn) => Promise<T>): Promise<T> {
      if (closing) return Promise.reject(new Error('database is closing'))
      const next = tail.then(async () => {
        await writer.run('BEGIN IMMEDIATE')
        try {
          const result = await fn(writer)
          await writer.run('COMMIT')
          return result
        } catch (err) {
          await writer.run('ROLLBACK').catch(() => undefined)
          throw err
        }
      })
      tail = next.catch(() => undefined)
      return next
    },
    close() {
      closing ??= (async () => {
        await tail
        await reader.close()
        await writer.close()
      })()
      return closing
    },
  }
}
