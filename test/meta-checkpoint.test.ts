/**
 * WAL checkpoints run on a worker thread (meta/checkpointer.ts), not in the
 * COMMIT of a request: the worker copies committed pages into the database
 * file while the writer keeps committing, the writer's own checkpoint is only
 * the WAL's size bound, nothing committed is lost across a close and reopen,
 * and close() stops the worker (twice is fine).
 */
import { statSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { WAL_BACKSTOP_PAGES } from '../meta/checkpointer'
import { openDatabase } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

const schema = (c: { exec(sql: string): Promise<void> }) => c.exec('CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v BLOB)')

async function scratch(t: Test) {
  const file = join(testDir(t), 'meta.db')
  const db = await openDatabase(file, schema, { sync: 'normal' })
  t.teardown(() => db.close())
  return { file, db }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('the worker copies committed pages into the database file; the writer checkpoints only at the backstop', async (t) => {
  const { file, db } = await scratch(t)
  t.equal((await db.write((tx) => tx.get<{ wal_autocheckpoint: number }>('PRAGMA wal_autocheckpoint')))?.wal_autocheckpoint, WAL_BACKSTOP_PAGES)
  const before = statSync(file).size
  // more pages than SQLite's default automatic checkpoint (1000), one commit each
  for (let i = 0; i < 300; i++) await db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', [i, Buffer.alloc(16 * 1024, i)]))
  for (let waited = 0; db.checkpoints.runs === 0 && waited < 5000; waited += 50) await sleep(50)
  t.ok(db.checkpoints.runs > 0, `the worker checkpointed (${db.checkpoints.runs} runs, ${db.checkpoints.pages} pages)`)
  t.ok(statSync(file).size > before + 1024 * 1024, 'the committed pages reached the database file')
  t.equal((await db.read.get<{ n: number }>('SELECT count(*) AS n FROM kv'))?.n, 300)
})

t.test('with the default sync the WAL file is cut to nothing when it restarts (every write appends); with --sync full it keeps the backstop size', async (t) => {
  const { file, db } = await scratch(t)
  t.equal((await db.write((tx) => tx.get<{ journal_size_limit: number }>('PRAGMA journal_size_limit')))?.journal_size_limit, 0)
  for (let i = 0; i < 200; i++) await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [i % 20, Buffer.alloc(16 * 1024, i)]))
  const grown = statSync(`${file}-wal`).size
  // the worker copies everything; the next commit restarts the WAL from its start
  let small = grown
  for (let waited = 0; waited < 5000 && small >= grown; waited += 50) {
    await sleep(50)
    await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [0, Buffer.alloc(100)]))
    small = statSync(`${file}-wal`).size
  }
  t.ok(small < grown / 4, `the WAL file went from ${grown} to ${small} bytes at a restart`)

  const fullFile = join(testDir(t), 'full.db')
  const full = await openDatabase(fullFile, schema, { sync: 'full' })
  t.teardown(() => full.close())
  t.equal((await full.write((tx) => tx.get<{ journal_size_limit: number }>('PRAGMA journal_size_limit')))?.journal_size_limit, WAL_BACKSTOP_PAGES * 4096)
})

t.test('under continuous commits the writer backstop bounds the WAL; everything committed survives close and reopen', async (t) => {
  // the worker idle: the bound is the writer's alone (the worker leaves a WAL
  // past the backstop to it, meta/checkpointer.ts, but one of its checkpoints
  // that began below the backstop may still be copying, for as long as a
  // loaded machine takes: with it running, CI once saw 1.5x)
  const file = join(testDir(t), 'meta.db')
  const db = await openDatabase(file, schema, { sync: 'normal', checkpointMs: 3_600_000 })
  t.teardown(() => db.close())
  const blob = Buffer.alloc(512 * 1024, 7)
  // 1.5x the backstop's bytes, in commits that never pause for the worker
  const commits = Math.ceil((WAL_BACKSTOP_PAGES * 4096 * 1.5) / blob.length)
  let maxWal = 0
  for (let i = 0; i < commits; i++) {
    await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [i % 50, blob]))
    maxWal = Math.max(maxWal, statSync(`${file}-wal`).size)
  }
  // one commit's pages past the bound at most (SQLite checks after the commit that crosses it)
  t.ok(maxWal <= (WAL_BACKSTOP_PAGES + 2 * (blob.length / 4096 + 16)) * 4120, `WAL at most ${maxWal} bytes`)
  await db.close()
  await db.close() // twice is fine
  const again = await openDatabase(file, schema, { sync: 'normal' })
  t.teardown(() => again.close())
  t.equal((await again.read.get<{ n: number }>('SELECT count(*) AS n FROM kv'))?.n, 50)
})

t.test('a database that is only read starts no worker', async (t) => {
  const { db } = await scratch(t)
  await db.read.all('SELECT * FROM kv')
  await sleep(250)
  t.equal(db.checkpoints.runs, 0)
})

t.test('after a burst past the backstop the WAL file is cut back and the worker checkpoints again', async (t) => {
  const { file, db } = await scratch(t)
  const blob = Buffer.alloc(512 * 1024, 9)
  // a burst of 1.5x the backstop's bytes, faster than the worker copies
  const commits = Math.ceil((WAL_BACKSTOP_PAGES * 4096 * 1.5) / blob.length)
  for (let i = 0; i < commits; i++) await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [i % 50, blob]))
  // then an ordinary trickle: the worker takes the checkpoints over again
  const runs = db.checkpoints.runs
  for (let i = 0; i < 40 && db.checkpoints.runs === runs; i++) {
    await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [1000 + i, Buffer.alloc(8192, i)]))
    await sleep(100)
  }
  t.ok(db.checkpoints.runs > runs, `the worker checkpointed after the burst (${db.checkpoints.runs - runs} runs)`)
  // SQLite cuts the file back at the first commit that starts the WAL over
  // after a complete checkpoint (journal_size_limit), not at the checkpoint
  // itself: the trickle goes on until one has (CI once checked in between)
  for (let i = 0; i < 40 && statSync(`${file}-wal`).size > WAL_BACKSTOP_PAGES * 4120; i++) {
    await db.write((tx) => tx.run('INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)', [2000 + i, Buffer.alloc(8192, i)]))
    await sleep(100)
  }
  t.ok(statSync(`${file}-wal`).size <= WAL_BACKSTOP_PAGES * 4120, `the WAL file was cut back (${statSync(`${file}-wal`).size} bytes)`)
})
