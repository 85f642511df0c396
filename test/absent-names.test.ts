/**
 * Names meta said are not there are kept absent by the mount (client/meta-cache.ts
 * `missing`) until another client changes the directory: SQLite's journal
 * check before every transaction, Python's imports and a compiler's include
 * paths probe such names, each a meta trip before. Counted on the wire: a
 * copy of every lookup request meta gets.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { MetaCache } from '../client/meta-cache'
import { subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

t.test('a missing name is asked of meta once, and seen when another mount makes it', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const a = await mountCluster(t, c)
  const b = await mountCluster(t, c)
  mkdirSync(join(b.dir, 'd'))
  const nc = await c.connect('meta')
  t.teardown(() => nc.close())
  const asked: string[] = []
  const s = subjects(c.cluster)
  for (const subject of [s.meta('lookup'), s.metaAt('*', 'lookup')]) nc.subscribe(subject, { callback: () => asked.push(subject) })
  await nc.flush()
  const settle = () => new Promise((r) => setTimeout(r, 300))

  t.ok(existsSync(join(a.dir, 'd')), 'mount A finds the directory B made')
  await settle()
  asked.length = 0
  for (let i = 0; i < 50; i++) t.notOk(existsSync(join(a.dir, 'd', 'db-journal')), `probe ${i}: absent`)
  await settle()
  t.equal(asked.length, 1, `50 probes of a missing name: ${asked.length} lookup(s) reached meta (before: 50)`)

  // a create there still waits for meta (its O_EXCL holds across mounts): only a directory this
  // mount listed whole or made lets a create go ahead (docs/semantics.md#mkdir)
  const created: string[] = []
  for (const subject of [s.meta('mknod'), s.metaAt('*', 'mknod'), s.meta('ahead'), s.metaAt('*', 'ahead')]) nc.subscribe(subject, { callback: () => created.push(subject.split('.').pop()!) })
  await nc.flush()
  // (several: the first of a session may wait for its reserved inode numbers anyway)
  for (let i = 0; i < 5; i++) {
    t.notOk(existsSync(join(a.dir, 'd', `new${i}`)), `new${i} is missing`)
    writeFileSync(join(a.dir, 'd', `new${i}`), 'y', { flag: 'wx' })
    await settle()
  }
  t.same(created, ['mknod', 'mknod', 'mknod', 'mknod', 'mknod'], 'each create of a name known only missing went to meta by itself')

  // B makes it: A sees it once meta's invalidation of the directory arrives, not after the cache's TTL
  writeFileSync(join(b.dir, 'd', 'db-journal'), 'x')
  const t0 = Date.now()
  while (!existsSync(join(a.dir, 'd', 'db-journal')) && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 5))
  const ms = Date.now() - t0
  t.ok(existsSync(join(a.dir, 'd', 'db-journal')), `mount A sees the name B made after ${ms} ms (the cache's TTL is minutes)`)
})

t.test('an ENOENT whose lookup an invalidation crossed is not kept', async (t) => {
  const cache = new MetaCache({ ttlMs: 60_000, maxAttrs: 100, maxDirs: 100 })
  // the reply came after the invalidation of a create in the directory was applied
  const since = cache.generation()
  cache.apply({ inos: [], dirs: [7] })
  cache.setAbsent(7, 'x', since)
  t.notOk(cache.absent(7, 'x'), 'not kept: the name may have been made meanwhile')
  // nothing crossed it
  cache.setAbsent(7, 'x', cache.generation())
  t.ok(cache.absent(7, 'x'), 'kept')
  // any other client's change to the directory drops it
  cache.apply({ inos: [], dirs: [7] })
  t.notOk(cache.absent(7, 'x'), 'dropped by the directory invalidation')
  // this mount's own create replaces it
  cache.setAbsent(7, 'y', cache.generation())
  cache.setEntry(7, 'y', { ino: 9, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: 0, rdev: 0, atime: [0, 0], mtime: [0, 0], ctime: [0, 0], gen: 0 })
  t.notOk(cache.absent(7, 'y'), 'a name this mount made is not absent')
  t.equal(cache.entry(7, 'y'), 9)
})
