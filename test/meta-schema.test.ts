/**
 * Schema upgrades (docs/meta.md#schema): a database written by main's v6
 * (pins with counts, suspects, repair_queue, node_admin) upgrades to v7
 * (exactly-once requests, session epochs, engine_state) and a v7 one to v8
 * (appended slices) in place, keeping every row, and a migrated database
 * opens again without changes; v13 rebuilds inline_chunks as a rowid table.
 */
import { join } from 'node:path'
import t from 'tap'
import { migrate, SCHEMA_VERSION } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

t.test('a v6 database upgrades to the current version and keeps its rows', async (t) => {
  const file = join(testDir(t), 'meta.db')
  const v6 = await openDatabase(file, (c) => migrate(c, 6))
  t.equal((await v6.read.get<{ user_version: number }>('PRAGMA user_version'))?.user_version, 6)
  await v6.write(async (tx) => {
    await tx.run("INSERT INTO inodes (mode, nlink, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns) VALUES (33188, 1, 0, 0, 1, 0, 1, 0, 1, 0)")
    await tx.run("INSERT INTO dentries (parent, name, ino) VALUES (1, 'f', 2)")
    await tx.run("INSERT INTO blocks (hash, refs, size) VALUES ('h1', 0, 10)")
    await tx.run("INSERT INTO pins (hash, session, since, count) VALUES ('h1', 's1', 5, 2)")
    await tx.run("INSERT INTO sessions (id, host, expires) VALUES ('s1', 'host', 99)")
    await tx.run("INSERT INTO repair_queue (hash, since, parked) VALUES ('h1', 7, 1)")
    await tx.run("INSERT INTO node_admin (id, state, since) VALUES ('n1', 'draining', 8)")
  })
  await v6.close()

  const db = await openDatabase(file, migrate)
  t.teardown(() => db.close())
  t.equal((await db.read.get<{ user_version: number }>('PRAGMA user_version'))?.user_version, SCHEMA_VERSION)
  t.same(await db.read.all('SELECT parent, name, ino FROM dentries'), [{ parent: 1, name: 'f', ino: 2 }])
  t.same(await db.read.all('SELECT hash, session, count FROM pins'), [{ hash: 'h1', session: 's1', count: 2 }])
  t.same(await db.read.all('SELECT hash, parked FROM repair_queue'), [{ hash: 'h1', parked: 1 }])
  t.same(await db.read.all('SELECT id, state FROM node_admin'), [{ id: 'n1', state: 'draining' }])
  // v7: sessions from before epochs have epoch 0 (a renewal naming an epoch is ESTALE) and the default TTL
  t.same(await db.read.all('SELECT id, expires, epoch, ttl_ms FROM sessions'), [{ id: 's1', expires: 99, epoch: 0, ttl_ms: 60000 }])
  t.same(await db.read.all('SELECT * FROM requests'), [])
  t.same(await db.read.all('SELECT * FROM engine_state'), [])
})

t.test('a v7 database upgrades to v8 (slices) and keeps its chunk maps', async (t) => {
  const file = join(testDir(t), 'meta.db')
  const v7 = await openDatabase(file, (c) => migrate(c, 7))
  t.equal((await v7.read.get<{ user_version: number }>('PRAGMA user_version'))?.user_version, 7)
  await v7.write(async (tx) => {
    await tx.run("INSERT INTO inodes (mode, nlink, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns) VALUES (33188, 1, 0, 0, 10, 1, 0, 1, 0, 1, 0)")
    await tx.run("INSERT INTO chunks (ino, idx, hash, len) VALUES (2, 0, 'h1', 10)")
    await tx.run("INSERT INTO blocks (hash, refs, size) VALUES ('h1', 1, 10)")
    await tx.run("INSERT INTO requests (client, n, op, reply, at) VALUES ('c', 1, 'commit', x'00', 5)")
  })
  await v7.close()

  const db = await openDatabase(file, migrate)
  t.teardown(() => db.close())
  t.equal((await db.read.get<{ user_version: number }>('PRAGMA user_version'))?.user_version, SCHEMA_VERSION)
  t.same(await db.read.all('SELECT ino, idx, hash, len FROM chunks'), [{ ino: 2, idx: 0, hash: 'h1', len: 10 }])
  t.same(await db.read.all('SELECT hash, refs FROM blocks'), [{ hash: 'h1', refs: 1 }])
  t.same(await db.read.all('SELECT client, n FROM requests'), [{ client: 'c', n: 1 }])
  // v8: a chunk has no slices until an append adds one
  t.same(await db.read.all('SELECT * FROM slices'), [])
  await db.write((tx) => tx.run("INSERT INTO slices (ino, idx, pos, hash, len) VALUES (2, 0, 10, 'h2', 4)"))
  t.same(await db.read.all('SELECT pos, hash, len FROM slices WHERE ino = 2 AND idx = 0'), [{ pos: 10, hash: 'h2', len: 4 }])
})

t.test('opening a current database again changes nothing', async (t) => {
  const file = join(testDir(t), 'meta.db')
  const a = await openDatabase(file, migrate)
  await a.close()
  const b = await openDatabase(file, migrate)
  t.teardown(() => b.close())
  t.equal((await b.read.get<{ user_version: number }>('PRAGMA user_version'))?.user_version, SCHEMA_VERSION)
})

t.test('a v10 database upgrades to v11: alloc counts the bytes each file holds, and triggers keep it', async (t) => {
  const file = join(testDir(t), 'meta.db')
  const v10 = await openDatabase(file, (c) => migrate(c, 10))
  await v10.write(async (tx) => {
    // ino 2: a 4 MiB block and a 100 kB slice in chunk 0, chunk 1 a hole, 10 bytes in chunk 2; ino 3: 5 inline bytes; ino 4: empty
    for (const size of [8 * 2 ** 20 + 10, 5, 0]) {
      await tx.run('INSERT INTO inodes (mode, nlink, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns) VALUES (33188, 1, 0, 0, ?, 1, 0, 1, 0, 1, 0)', [size])
    }
    await tx.run("INSERT INTO chunks (ino, idx, hash, len) VALUES (2, 0, 'h1', 4194304), (2, 2, 'h2', 10)")
    await tx.run("INSERT INTO slices (ino, idx, pos, hash, len) VALUES (2, 0, 4194304, 'h3', 100000)")
    await tx.run("INSERT INTO inline_chunks (ino, idx, data) VALUES (3, 0, x'0102030405')")
  })
  await v10.close()

  const db = await openDatabase(file, migrate)
  t.teardown(() => db.close())
  const alloc = async () => Object.fromEntries((await db.read.all<{ ino: number; alloc: number }>('SELECT ino, alloc FROM inodes WHERE ino > 1')).map((r) => [r.ino, r.alloc]))
  t.same(await alloc(), { 2: 4194304 + 100000 + 10, 3: 5, 4: 0 }, 'computed from the rows at the upgrade')
  await db.write(async (tx) => {
    await tx.run("INSERT INTO chunks (ino, idx, hash, len) VALUES (4, 0, 'h4', 7) ON CONFLICT (ino, idx) DO UPDATE SET hash = excluded.hash, len = excluded.len")
    await tx.run("INSERT INTO chunks (ino, idx, hash, len) VALUES (4, 0, 'h5', 9) ON CONFLICT (ino, idx) DO UPDATE SET hash = excluded.hash, len = excluded.len")
    await tx.run('UPDATE chunks SET len = min(len, 1000) WHERE ino = 2 AND idx = 0')
    await tx.run('DELETE FROM slices WHERE ino = 2')
    await tx.run('UPDATE inline_chunks SET data = substr(data, 1, 2) WHERE ino = 3')
  })
  t.same(await alloc(), { 2: 1000 + 10, 3: 2, 4: 9 }, 'an insert, an upsert, a clip, a delete and an inline cut each move it')
  await db.write(async (tx) => {
    await tx.run('DELETE FROM chunks WHERE ino = 2')
    await tx.run('DELETE FROM inline_chunks WHERE ino = 3')
  })
  t.same(await alloc(), { 2: 0, 3: 0, 4: 9 }, 'a file whose rows are gone holds nothing')
})

t.test('a v12 database upgrades to v13: inline_chunks becomes a rowid table with its rows, alloc and triggers', async (t) => {
  const file = join(testDir(t), 'meta.db')
  const v12 = await openDatabase(file, (c) => migrate(c, 12))
  await v12.write(async (tx) => {
    for (const size of [5, 4096 + 3]) {
      await tx.run('INSERT INTO inodes (mode, nlink, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns) VALUES (33188, 1, 0, 0, ?, 1, 0, 1, 0, 1, 0)', [size])
    }
    await tx.run("INSERT INTO inline_chunks (ino, idx, data) VALUES (2, 0, x'0102030405')")
    await tx.run('INSERT INTO inline_chunks (ino, idx, data) VALUES (3, 1, ?), (3, 0, ?)', [Buffer.alloc(3, 7), Buffer.alloc(4096, 9)])
  })
  await v12.close()

  const db = await openDatabase(file, migrate)
  t.teardown(() => db.close())
  const sql = (await db.read.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inline_chunks'"))?.sql ?? ''
  t.notMatch(sql, /WITHOUT ROWID/i, 'a rowid table')
  t.match(sql, /PRIMARY KEY \(ino, idx\)/, 'keyed by (ino, idx) as before')
  const rows = await db.read.all<{ ino: number; idx: number; data: Buffer }>('SELECT ino, idx, data FROM inline_chunks ORDER BY ino, idx')
  t.same(
    rows.map((r) => [r.ino, r.idx, Buffer.from(r.data).toString('hex')]),
    [
      [2, 0, '0102030405'],
      [3, 0, Buffer.alloc(4096, 9).toString('hex')],
      [3, 1, '070707'],
    ],
    'every row, byte for byte',
  )
  const alloc = async () => Object.fromEntries((await db.read.all<{ ino: number; alloc: number }>('SELECT ino, alloc FROM inodes WHERE ino > 1')).map((r) => [r.ino, r.alloc]))
  t.same(await alloc(), { 2: 5, 3: 4099 }, 'alloc as it was: the copy fired no trigger')
  await t.rejects(db.write((tx) => tx.run("INSERT INTO inline_chunks (ino, idx, data) VALUES (2, 0, x'00')")), /UNIQUE/, '(ino, idx) stays unique')
  await db.write(async (tx) => {
    await tx.run("INSERT INTO inline_chunks (ino, idx, data) VALUES (2, 1, x'0000')")
    await tx.run('UPDATE inline_chunks SET data = substr(data, 1, 10) WHERE ino = 3 AND idx = 0')
    await tx.run('DELETE FROM inline_chunks WHERE ino = 3 AND idx = 1')
  })
  t.same(await alloc(), { 2: 7, 3: 10 }, 'the triggers keep alloc on insert, update and delete')
  t.same(
    (await db.read.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'inline_chunks' ORDER BY name")).map((r) => r.name),
    ['inline_chunks_alloc_delete', 'inline_chunks_alloc_insert', 'inline_chunks_alloc_update'],
    'the three triggers, once each',
  )
})
