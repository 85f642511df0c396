/**
 * The client's Vfs over a real meta engine (SQLite), with its `ahead`
 * requests held at a gate the test opens, so that the answers to changes sent
 * ahead arrive in the exact interleaving that once broke a directory's
 * attributes: a mkdir's own answer (meta's inode as it was made, nlink 2)
 * arriving after a mkdir inside it was predicted (nlink 3).
 */
import t from 'tap'
import { metaRequests, ROOT_INO, type MetaParsed } from '../common/protocol'
import { constants } from 'node:fs'
import { engineCluster, until } from './helpers/vfs-engine'

const { O_WRONLY, O_CREAT } = constants

const USER = { uid: 1000, gid: 1000 }

t.test('a mkdir\'s own answer, arriving after a mkdir inside it was predicted, does not undo its link', async (t) => {
  const { engine, mount } = await engineCluster(t)
  const { meta, vfs } = await mount('ahead-test')
  const top = await vfs.mkdir(ROOT_INO, 'top', 0o755, USER)
  await vfs.readdir(top.ino, 0, 1)
  await vfs.mkdir(top.ino, 'primer', 0o755, USER)
  await until(() => meta.reserved > 0)

  meta.close()
  const sentBefore = meta.aheadSent
  const d = await vfs.mkdir(top.ino, 'd', 0o750, USER)
  await until(() => meta.aheadSent > sentBefore)
  await vfs.mkdir(d.ino, 'sub', 0o755, USER)
  await until(() => meta.aheadSent > sentBefore + 1) // sub's request is out too (two may be)
  // d's request through alone; look once its answer is in, before sub's is
  const answered = meta.aheadAnswered
  meta.pass(1)
  await until(() => meta.aheadAnswered > answered)
  await new Promise((resolve) => setImmediate(resolve)) // the pipeline hands each change its outcome (microtasks)
  t.equal((await vfs.getattr(d.ino)).nlink, 3, 'd\'s answer did not replace the prediction')
  meta.open()
  await vfs.fsyncdir(d.ino)
  t.equal((await vfs.getattr(d.ino)).nlink, 3, 'and meta\'s count once sub is answered')
  t.equal((await engine.call('getattr', metaRequests.getattr.parse({ ino: d.ino }) as MetaParsed<'getattr'>)).attr.nlink, 3, 'meta agrees')
})

t.test('a directory\'s chmod, chown and utimens go ahead; an earlier answer does not undo a later prediction', async (t) => {
  const { engine, mount } = await engineCluster(t)
  const { meta, vfs } = await mount('setattr-ahead')
  const d = await vfs.mkdir(ROOT_INO, 'd', 0o755, USER)
  await vfs.getattr(d.ino)

  meta.close()
  const sentBefore = meta.aheadSent
  // each is held for company, then goes alone: two requests out, the third change queued
  t.equal((await vfs.setattr(d.ino, { mode: 0o700 })).mode, 0o40700, 'chmod 700 answered with meta stopped')
  await until(() => meta.aheadSent > sentBefore)
  t.equal((await vfs.setattr(d.ino, { mode: 0o755 })).mode, 0o40755, 'chmod 755 too')
  await until(() => meta.aheadSent > sentBefore + 1)
  const seen = await vfs.setattr(d.ino, { uid: 1000, gid: 1000, mtime: [1_000_000_000, 5] })
  t.same([seen.uid, seen.gid, seen.mtime, seen.mode], [1000, 1000, [1_000_000_000, 5], 0o40755], 'chown and utimens: the attributes as predicted')

  const answered = meta.aheadAnswered
  meta.pass(1) // chmod 700 answered first: meta's attributes then say 700
  await until(() => meta.aheadAnswered > answered)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal((await vfs.getattr(d.ino)).mode, 0o40755, 'the answer to chmod 700 did not replace the later prediction')

  meta.open()
  await vfs.fsyncdir(d.ino)
  const mine = await vfs.getattr(d.ino)
  t.same([mine.mode, mine.uid, mine.mtime], [0o40755, 1000, [1_000_000_000, 5]], 'all three applied, the cache has meta\'s')
  const metas = (await engine.call('getattr', metaRequests.getattr.parse({ ino: d.ino }) as MetaParsed<'getattr'>)).attr
  t.same([metas.mode, metas.uid, metas.gid, metas.mtime], [0o40755, 1000, 1000, [1_000_000_000, 5]], 'meta agrees')
  t.same(mine.ctime, metas.ctime, 'and so does ctime, meta\'s clock')
})

t.test('tar x: a directory\'s chown, chmod and utimens wait for the next file\'s create and commit and go in one request with them', async (t) => {
  const { engine, mount } = await engineCluster(t)
  // held for a minute: only company or a waiter sends them, whatever this machine's load
  const { meta, vfs } = await mount('tar', { aheadHoldMs: 60_000 })
  const top = await vfs.mkdir(ROOT_INO, 'top', 0o755, USER)
  await vfs.readdir(top.ino, 0, 1)
  await vfs.mkdir(top.ino, 'primer', 0o755, USER)
  await until(() => meta.reserved > 0)
  const d = await vfs.mkdir(top.ino, 'd', 0o700, USER)
  await vfs.fsyncdir(top.ino)

  const sentBefore = meta.aheadSent
  await vfs.setattr(d.ino, { uid: 1000, gid: 1000 })
  await vfs.setattr(d.ino, { mode: 0o750 })
  await vfs.setattr(d.ino, { atime: [1_000_000_000, 1], mtime: [1_000_000_000, 2] })
  const { fh, attr } = await vfs.create(top.ino, 'next', 0o644, O_WRONLY | O_CREAT, USER)
  await vfs.write(fh, Buffer.from('tar\n'), 0)
  t.equal(meta.aheadSent, sentBefore, 'nothing sent yet: the setattrs and the create are held')
  await vfs.flush(fh)
  await vfs.release(fh)
  t.equal(meta.aheadSent, sentBefore + 1, 'three setattrs, the create and its commit: one request')

  const metas = (await engine.call('getattr', metaRequests.getattr.parse({ ino: d.ino }) as MetaParsed<'getattr'>)).attr
  t.same([metas.mode, metas.uid, metas.atime, metas.mtime], [0o40750, 1000, [1_000_000_000, 1], [1_000_000_000, 2]], 'meta applied the setattrs')
  const file = (await engine.call('getattr', metaRequests.getattr.parse({ ino: attr.ino }) as MetaParsed<'getattr'>)).attr
  t.equal(file.size, 4, 'and the file with its content')
})

t.test('a directory\'s setattr ahead that finds it removed by another mount is no error', async (t) => {
  const { mount } = await engineCluster(t)
  const a = await mount('A')
  const b = await mount('B')
  const top = await a.vfs.mkdir(ROOT_INO, 'top', 0o755, USER)
  const d = await a.vfs.mkdir(top.ino, 'gone', 0o755, USER)
  await a.vfs.getattr(d.ino)
  a.meta.close()
  await a.vfs.setattr(d.ino, { mode: 0o700 })
  await b.vfs.rmdir(top.ino, 'gone')
  await b.vfs.fsyncdir(top.ino)
  a.meta.open()
  await t.resolves(a.vfs.fsyncdir(d.ino), 'fsync of the directory reports nothing')
  await t.resolves(a.vfs.fsyncdir(top.ino), 'nor of its parent')
})
