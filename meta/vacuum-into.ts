/**
 * `VACUUM INTO` on a worker thread: a consistent, compacted copy of a live
 * database (one read transaction; WAL readers neither wait for nor block the
 * writer). better-sqlite3 runs statements on the calling thread, and a copy
 * takes as long as reading the whole database, so on meta's own thread it
 * would stall every request, lease renewal and log append meanwhile.
 */
import { Worker } from 'node:worker_threads'

/**
 * The worker: opens its own read-only connection, copies, closes, and posts
 * its error (if any) itself, so the message arrives even where a preloaded
 * hook turns an uncaught exception into a bare exit code.
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
try {
  const Database = require(workerData.module)
  const db = new Database(workerData.file, { readonly: true, fileMustExist: true, timeout: 5000 })
  try {
    db.prepare('VACUUM INTO ?').run(workerData.to)
  } finally {
    db.close()
  }
} catch (err) {
  parentPort.postMessage(String(err && err.message ? err.message : err))
}
`

/** Copies the database at `file` into the new file `to` (which must not exist). */
export function vacuumInto(file: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // the module by its resolved path: an eval'd worker resolves bare names from the working directory
    const worker = new Worker(WORKER, { eval: true, workerData: { module: require.resolve('better-sqlite3'), file, to } })
    let failed: Error | undefined
    worker.on('message', (message: string) => (failed = new Error(`VACUUM INTO ${to}: ${message}`)))
    worker.once('error', (err) => (failed ??= err))
    worker.once('exit', (code) => {
      if (code === 0 && failed === undefined) resolve()
      else reject(failed ?? new Error(`VACUUM INTO ${to}: worker exited with code ${code}`))
    })
  })
}
