/**
 * The client's Vfs over a real meta engine (SQLite), with its `ahead`
 * requests held at a gate the test opens, so that the answers to changes sent
 * ahead arrive in the exact interleaving that once broke a directory's
 * attributes: a mkdir's own answer (meta's inode as it was made, nlink 2)
 * arriving after a mkdir inside it was predicted (nlink 3).
 */
import t from 'tap'
import { metaRequests, ROOT_INO, type MetaParsed } from '../common/protocol'
import { engineCluster, until } from './helpers/vfs-engine'

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
