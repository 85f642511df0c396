/**
 * A file this mount created and has not committed yet (tar x and cp -a as
 * root: create 0600, write, futimens, fchown, fchmod, close) is empty in meta,
 * so its attribute changes cost no meta trip of their own: they go with its
 * first commit at close (client/open-file.ts defer). A file that is not fresh
 * gets its changes, a chown to the same owner included, at once. Counted on
 * the wire: a copy of every setattr and commit request meta gets.
 */
import { closeSync, fchmodSync, fchownSync, fstatSync, futimesSync, openSync, statSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { decode, subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

const after = (a: readonly number[], b: readonly number[]) => a[0]! > b[0]! || (a[0] === b[0] && a[1]! > b[1]!)

t.test('attribute changes without a meta trip of their own: fresh files, and chown to the same owner', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const other = await mountCluster(t, c)
  const nc = await c.connect('meta')
  t.teardown(() => nc.close())
  const count = { setattr: 0, commit: 0 }
  // both ways a request reaches meta: the queue group, and meta's own subject once the
  // client knows who serves (common/meta-route.ts)
  const s = subjects(c.cluster)
  for (const op of ['setattr', 'commit'] as const) {
    for (const subject of [s.meta(op), s.metaAt('*', op)]) nc.subscribe(subject, { callback: () => count[op]++ })
  }
  // and inside the batches a mount sends ahead (a create in a directory where the name is
  // known absent rides with its file's commit: client/ahead-pipeline.ts)
  for (const subject of [s.meta('ahead'), s.metaAt('*', 'ahead')]) {
    nc.subscribe(subject, {
      callback: (_e, msg) => {
        for (const item of (decode(msg.data) as { items: Array<{ op: string }> }).items) if (item.op === 'setattr' || item.op === 'commit') count[item.op]++
      },
    })
  }
  await nc.flush()
  const mc = await c.metaClient()
  /** Lets copies of requests already sent arrive (a sync fs call held this thread). */
  const settle = () => new Promise((r) => setTimeout(r, 300))
  const lookup = async (name: string) => (await mc.call('lookup', { parent: ROOT_INO, name })).attr

  // what GNU tar does per file as root
  for (let i = 0; i < 20; i++) {
    const fd = openSync(join(m.dir, `t${i}`), 'wx', 0o600)
    writeSync(fd, `file ${i}\n`)
    futimesSync(fd, 1_000_000_000, 1_000_000_001)
    fchownSync(fd, 0, 0)
    fchmodSync(fd, 0o644)
    const onFd = fstatSync(fd)
    if (i === 0) t.equal(`${(onFd.mode & 0o7777).toString(8)} ${onFd.mtimeMs}`, '644 1000000001000', 'fstat shows the deferred mode and times')
    closeSync(fd)
  }
  await settle()
  t.same(count, { setattr: 0, commit: 20 }, 'one commit per extracted file and no setattr')
  const t0 = await lookup('t0')
  t.equal((t0.mode & 0o7777).toString(8), '644', 'the fchmod is in meta after the close')
  t.same(t0.mtime, [1_000_000_001, 0], 'and the futimens mtime')
  t.same(t0.atime, [1_000_000_000, 0], 'and the futimens atime')
  t.equal(statSync(join(other.dir, 't0')).mode & 0o7777, 0o644, 'another mount sees the mode after the close')

  // a deferred mtime is replaced by a later write's time, as on a local disk
  const w = openSync(join(m.dir, 'later-write'), 'wx', 0o600)
  futimesSync(w, 1_000_000_000, 1_000_000_000)
  writeSync(w, 'x')
  closeSync(w)
  t.ok((await lookup('later-write')).mtime[0] > 1_000_000_000, 'a write after futimens sets mtime')

  // touch of a new file: create, utimens, close without a write
  const tf = openSync(join(m.dir, 'touched'), 'wx', 0o644)
  futimesSync(tf, 1_100_000_000, 1_100_000_000)
  closeSync(tf)
  t.same((await lookup('touched')).mtime, [1_100_000_000, 0], 'the times of a file closed without a write reach meta at its close')

  // a chown to the same owner of a file that is not fresh: sent at once, ctime moves in meta
  const base = count.setattr
  const fd = openSync(join(m.dir, 't1'), 'r+')
  writeSync(fd, 'x', 0)
  const before = (await lookup('t1')).ctime
  await new Promise((r) => setTimeout(r, 30))
  fchownSync(fd, 0, 0)
  t.ok(fstatSync(fd, { bigint: true }).ctimeNs > BigInt(before[0]) * 1_000_000_000n + BigInt(before[1]), 'fstat on the fd shows the new ctime at once')
  await settle()
  t.equal(count.setattr, base + 1, 'the chown of a file that is not fresh is sent at once')
  const t1 = await lookup('t1')
  t.ok(after(t1.ctime, before), 'meta has the new ctime before the close')
  t.equal(t1.uid, 0, 'owner unchanged')
  closeSync(fd)

  // a real change of owner of a file that is not fresh still goes to meta at once
  const given = openSync(join(m.dir, 't3'), 'r+')
  const base3 = count.setattr
  fchownSync(given, 4242, 4343)
  await settle()
  t.equal(count.setattr, base3 + 1, 'a chown that changes the owner is sent at once')
  t.equal((await lookup('t3')).uid, 4242, 'and meta has it before the close')
  closeSync(given)
})
