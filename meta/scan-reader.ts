/**
 * Read-only queries that scan whole tables (the block census, counts and sums
 * for status, statfs and `berth gc`), on a worker thread with a read-only
 * connection of its own. better-sqlite3 runs statements on the calling
 * thread: on meta's thread a census of 200,000 blocks held it for 3-4 s
 * (load 12), longer than an `--ha` leader's lease. Off it, meta keeps
 * answering, renewing its lease and appending to the log meanwhile; like the
 * reader, the worker sees the last committed state.
 *
 * One worker per database, started at the first query and unref'd (it never
 * keeps the process alive); stopped by close(). Rows cross threads by
 * structured clone: numbers and text as they are, blobs as Uint8Array.
 */
import { Worker } from 'node:worker_threads'
import { bindable } from './sql-bind'
import type { Params } from './sqlite'

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.module)
let db
const stmts = new Map()
parentPort.on('message', ({ id, sql, params }) => {
  try {
    db ??= new Database(workerData.file, { readonly: true, fileMustExist: true, timeout: 5000 })
    let s = stmts.get(sql)
    if (!s) stmts.set(sql, (s = db.prepare(sql)))
    const t0 = performance.now()
    const rows = s.all(...params)
    parentPort.postMessage({ id, rows, ms: performance.now() - t0 })
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message ? err.message : err) })
  }
})
`

interface Reply {
  id: number
  rows?: unknown[]
  /** How long the query ran in the worker (not the wait for it). */
  ms?: number
  error?: string
}

export interface Timed<T> {
  rows: T[]
  ms: number
}

export class ScanReader {
  private worker: Worker | null = null
  private next = 0
  private readonly pending = new Map<number, { resolve: (r: Timed<unknown>) => void; reject: (err: Error) => void }>()
  private closed = false

  constructor(private readonly file: string) {}

  async all<T>(sql: string, params: Params = []): Promise<T[]> {
    return (await this.timed<T>(sql, params)).rows
  }

  /** The rows and how long the query ran in the worker (a worker's start-up is not counted). */
  timed<T>(sql: string, params: Params = []): Promise<Timed<T>> {
    if (this.closed) return Promise.reject(new Error('database is closing'))
    const w = this.start()
    const id = this.next++
    return new Promise<Timed<T>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: Timed<unknown>) => void, reject })
      w.postMessage({ id, sql, params: bindable(params) })
    })
  }

  async get<T>(sql: string, params: Params = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0]
  }

  async close(): Promise<void> {
    this.closed = true
    const w = this.worker
    this.worker = null
    if (w) await w.terminate()
    this.failAll(new Error('database is closing'))
  }

  private start(): Worker {
    if (this.worker) return this.worker
    // the module by its resolved path: an eval'd worker resolves bare names from the working directory
    const w = new Worker(WORKER, { eval: true, workerData: { module: require.resolve('better-sqlite3'), file: this.file } })
    w.unref()
    w.on('message', (m: Reply) => {
      const p = this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id)
      if (m.error !== undefined) p.reject(new Error(m.error))
      else p.resolve({ rows: m.rows ?? [], ms: m.ms ?? 0 })
    })
    w.on('error', (err) => this.failAll(err))
    w.on('exit', () => {
      // a worker that died is started again by the next query
      if (this.worker === w) this.worker = null
      this.failAll(new Error('scan reader stopped'))
    })
    this.worker = w
    return w
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
  }
}
