/**
 * meta/sqlite.ts on better-sqlite3 keeps the contract of the sqlite3-package
 * layer it replaced: whole numbers bind as INTEGER (better-sqlite3 alone binds
 * every number as REAL), a statement that returns no rows answers [] from all(),
 * errors reject (never throw synchronously), capture records the writes a
 * replicated group carries, a failing operation of a group rolls back alone,
 * and VACUUM INTO on a worker thread gives a consistent copy.
 */
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { vacuumInto } from '../meta/vacuum-into'
import { openDatabase, openReadOnly, type Write } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

async function scratch(t: Test) {
  const dir = testDir(t)
  const file = join(dir, 'meta.db')
  const db = await openDatabase(file, (c) => c.exec('CREATE TABLE kv (k TEXT PRIMARY KEY, v)'), { sync: 'normal' })
  t.teardown(() => db.close())
  return { dir, file, db }
}

t.test('whole numbers bind as INTEGER, fractions as REAL', async (t) => {
  const { db } = await scratch(t)
  t.same(await db.read.get('SELECT typeof(?) AS a, typeof(?) AS b, ? / 2 AS half, \'n\' || ? AS name', [4, 2.5, 5, 3]), { a: 'integer', b: 'real', half: 2, name: 'n3' })
  await db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?), (?, ?)', ['int', 1_700_000_000_123, 'real', 0.5]))
  t.same(await db.read.all('SELECT k, typeof(v) AS type, v FROM kv ORDER BY k'), [
    { k: 'int', type: 'integer', v: 1_700_000_000_123 },
    { k: 'real', type: 'real', v: 0.5 },
  ])
})

t.test('all() of a statement without rows answers []; run() reports changes and lastID', async (t) => {
  const { db } = await scratch(t)
  const r = await db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1]))
  t.same(r, { changes: 1, lastID: 1 })
  t.same(await db.write((tx) => tx.all('UPDATE kv SET v = v + 1')), [])
  t.equal((await db.read.get<{ v: number }>('SELECT v FROM kv WHERE k = ?', ['a']))?.v, 2)
})

t.test('errors reject; a failed operation of a group rolls back alone', async (t) => {
  const { db } = await scratch(t)
  const bad = db.read.all('SELECT nope FROM kv')
  t.type(bad, Promise, 'a bad statement still answers with a promise')
  await t.rejects(bad, /no such column/)
  // queued in one turn: one group, each operation in its own savepoint
  const ok1 = db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['x', 1]))
  const dup = db.write(async (tx) => {
    await tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['y', 1])
    await tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['x', 2])
  })
  const ok2 = db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['z', 1]))
  await t.resolves(ok1)
  await t.rejects(dup, /UNIQUE/)
  await t.resolves(ok2)
  t.same(await db.read.all('SELECT k, v FROM kv ORDER BY k'), [{ k: 'x', v: 1 }, { k: 'z', v: 1 }], "the failed operation's first insert is gone too")
})

t.test('the commit hook gets each operation\'s writes with the values as given', async (t) => {
  const { db } = await scratch(t)
  const seen: Write[][][] = []
  db.setCommitHook(async (_tx, writes) => {
    seen.push(writes)
  })
  await Promise.all([
    db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1])),
    db.write(async (tx) => {
      await tx.get('SELECT v FROM kv WHERE k = ?', ['a'])
      await tx.exec("UPDATE kv SET v = 7 WHERE k = 'a'")
    }),
  ])
  t.same(seen, [[[['run', 'INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1]]], [['exec', "UPDATE kv SET v = 7 WHERE k = 'a'"]]]], 'reads are not captured; numbers stay numbers')
})

t.test('VACUUM INTO on a worker thread copies the committed state', async (t) => {
  const { dir, file, db } = await scratch(t)
  await db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', Buffer.from('blob')]))
  const to = join(dir, 'copy.db')
  await vacuumInto(file, to)
  const copy = await openReadOnly(to)
  t.teardown(() => copy.close())
  t.same(await copy.all('SELECT k, v FROM kv'), [{ k: 'a', v: Buffer.from('blob') }])
  await t.rejects(vacuumInto(join(dir, 'missing.db'), join(dir, 'x.db')), /unable to open|no such file|SQLITE_CANTOPEN/i, 'a missing database fails the copy, saying why')
})

t.test('scans run on a worker thread and see the committed state', async (t) => {
  const { db } = await scratch(t)
  t.same(await db.scan.get('SELECT COUNT(*) AS n FROM kv'), { n: 0 })
  await db.write((tx) => tx.run('INSERT INTO kv (k, v) VALUES (?, ?), (?, ?)', ['a', 3, 'b', 4]))
  t.same(await db.scan.get('SELECT COUNT(*) AS n, SUM(v) AS s, typeof(?) AS bound FROM kv', [7]), { n: 2, s: 7, bound: 'integer' })
  await t.rejects(db.scan.all('SELECT nope FROM kv'), /no such column/)
  t.same(await db.scan.all('SELECT k FROM kv ORDER BY k'), [{ k: 'a' }, { k: 'b' }], 'a failed query leaves the worker serving')
})
