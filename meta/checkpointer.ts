/**
 * WAL checkpoints on a worker thread instead of inside a request's COMMIT.
 *
 * SQLite's automatic checkpoint runs in the COMMIT that pushes the WAL past
 * `wal_autocheckpoint` pages: that COMMIT copies the WAL's pages into the
 * database file and fsyncs both, on meta's thread, while every queued request
 * waits. Measured in-process (docs/bench.md, "Metadata latency"): a COMMIT
 * took 40-53 us at p50 but 130-164 us on average, the difference being one
 * such stall of tens of milliseconds every ~170 mutations.
 *
 * Here a connection of its own on a worker thread runs a PASSIVE checkpoint
 * every CHECKPOINT_MS. A passive checkpoint never blocks the writer (it copies
 * only frames every reader is past, and the writer keeps appending meanwhile)
 * and never waits for a lock (busy timeout 0: a busy checkpoint is tried again
 * at the next tick). The writer keeps an automatic checkpoint at
 * WAL_BACKSTOP_PAGES as a bound on the WAL's size: under a continuous stream of
 * commits the worker never catches up with the last frame, and only a
 * checkpoint by the writer lets the next transaction restart the WAL from its
 * beginning. That backstop finds most pages already copied by the worker. The
 * worker leaves a WAL past the backstop to the writer: the writer's automatic
 * checkpoint is PASSIVE, so if the worker held the checkpoint lock it would
 * skip, and under a loaded machine the WAL grew to 1.5x the backstop while
 * the worker copied (CI). The WAL can still pass the backstop by what is
 * committed during a worker checkpoint that began below it.
 *
 * Durability is unchanged: a commit is in the WAL when it is acknowledged
 * (fsynced there with --sync full); a checkpoint only moves committed pages
 * into the main file.
 */
import { Worker } from 'node:worker_threads'

/** How often the worker checkpoints; an idle tick costs a read of the WAL index. */
export const CHECKPOINT_MS = 100

/** The writer's own automatic checkpoint (pages of 4 KiB): the WAL's size bound. */
export const WAL_BACKSTOP_PAGES = 10_000
/**
 * The WAL file's size past which the worker leaves the checkpoint to the
 * writer, and the writer's `journal_size_limit` with `--sync full`: when the
 * WAL restarts after a burst past the backstop, its file is cut back to this.
 * Without a limit the file keeps its largest size, and the worker would never
 * checkpoint again after the first burst. (With the default sync the limit is
 * 0: walSizeLimit in meta/sqlite.ts.)
 */
export const WAL_BACKSTOP_BYTES = WAL_BACKSTOP_PAGES * 4096

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.module)
const db = new Database(workerData.file, { fileMustExist: true, timeout: 0 })
db.pragma('busy_timeout = 0')
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
const { statSync } = require('node:fs')
const timer = setInterval(() => {
  try {
    // past the backstop the writer's own checkpoint is due: a checkpoint here
    // would hold the lock it needs, its attempt after each commit would find
    // it busy and the WAL would grow on by whatever is committed meanwhile
    if ((statSync(workerData.file + '-wal', { throwIfNoEntry: false })?.size ?? 0) > workerData.backstopBytes) return
    const r = checkpoint.get()
    if (r.busy === 0 && r.checkpointed > 0) parentPort.postMessage({ pages: r.checkpointed })
  } catch (err) {
    // SQLITE_BUSY and the like: the next tick tries again; anything else ends
    // the worker once (no log line every tick), the writer's backstop remains
    if (/busy|locked/i.test(String(err && err.message))) return
    parentPort.postMessage({ error: String(err && err.message ? err.message : err) })
    stop()
  }
}, workerData.intervalMs)
function stop() {
  clearInterval(timer)
  db.close()
  process.exit(0)
}
parentPort.on('message', (m) => {
  if (m === 'stop') stop()
})
`

export interface CheckpointerStats {
  /** Checkpoints that copied pages. */
  runs: number
  /** WAL frames those checkpoints copied (a frame copied again in a later run counts again). */
  pages: number
}

export class Checkpointer {
  private worker: Worker | null = null
  private exited: Promise<void> | null = null
  readonly stats: CheckpointerStats = { runs: 0, pages: 0 }

  constructor(
    private readonly file: string,
    private readonly onError: (message: string) => void = () => undefined,
    private readonly intervalMs = CHECKPOINT_MS,
  ) {}

  /** Starts the worker (once); the database file must exist. */
  start(): void {
    if (this.worker || this.exited) return
    // the module by its resolved path: an eval'd worker resolves bare names from the working directory
    const w = new Worker(WORKER, { eval: true, workerData: { module: require.resolve('better-sqlite3'), file: this.file, intervalMs: this.intervalMs, backstopBytes: WAL_BACKSTOP_BYTES } })
    w.unref()
    w.on('message', (m: { pages?: number; error?: string }) => {
      if (m.error !== undefined) this.onError(m.error)
      else if (m.pages !== undefined) {
        this.stats.runs++
        this.stats.pages += m.pages
      }
    })
    // a worker that failed leaves checkpoints to the writer's backstop
    w.on('error', (err) => this.onError(err.message))
    this.exited = new Promise((resolve) => w.once('exit', () => resolve()))
    this.worker = w
  }

  /** Stops the worker after its current checkpoint and closes its connection. Safe to call twice. */
  async close(): Promise<void> {
    const w = this.worker
    this.worker = null
    if (!w) return
    w.postMessage('stop')
    // a ref'd timer: the worker is unref'd, and the wait must keep the process alive
    let timer: NodeJS.Timeout | undefined
    const stopped = await Promise.race([this.exited!.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))])
    clearTimeout(timer)
    if (!stopped) await w.terminate()
  }
}
