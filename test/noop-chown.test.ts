/**
 * tar and cp -a as root chown every file they create to the owner it already
 * has, then fchmod it. Such a chown changes nothing but ctime, which the next
 * change of the open file (the fchmod) sets anyway, so the mount sends it to
 * meta only if nothing else changed the file by its close (client/vfs.ts
 * setattr, settleCtime). Counted here on the wire: a copy of every setattr
 * request meta receives.
 */
import { closeSync, fchmodSync, fchownSync, fstatSync, futimesSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

const after = (a: [number, number], b: [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] > b[1])

t.test('a chown to the owner a file has: no meta trip when a change follows, its ctime in meta by close', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const nc = await c.connect('meta')
  t.teardown(() => nc.close())
  let setattrs = 0
  nc.subscribe(`${c.cluster}.meta.setattr`, { callback: () => setattrs++ })
  await nc.flush()
  const mc = await c.metaClient()
  const seen = (n: number) => eventually(() => setattrs >= n, 2000, 20).then(async () => {
    await new Promise((r) => setTimeout(r, 100))
    return setattrs
  })

  // what GNU tar does per file as root: create 0600, write, futimens, fchown, fchmod, close
  for (let i = 0; i < 20; i++) {
    const fd = openSync(join(m.dir, `t${i}`), 'wx', 0o600)
    writeSync(fd, `file ${i}\n`)
    futimesSync(fd, 1_000_000_000, 1_000_000_000)
    fchownSync(fd, 0, 0)
    fchmodSync(fd, 0o644)
    closeSync(fd)
  }
  t.equal(await seen(20), 20, 'one setattr per extracted file (the fchmod), the chown sent none')
  const t0 = (await mc.call('lookup', { parent: ROOT_INO, name: 't0' })).attr
  t.equal(t0.mode & 0o7777, 0o644, 'the fchmod is in meta')

  // a chown that nothing follows: its ctime goes to meta with the close
  const fd = openSync(join(m.dir, 'lone'), 'wx', 0o600)
  writeSync(fd, 'x')
  futimesSync(fd, 1_000_000_000, 1_000_000_000)
  const before = (await mc.call('lookup', { parent: ROOT_INO, name: 'lone' })).attr.ctime
  await new Promise((r) => setTimeout(r, 30))
  const sent = setattrs
  fchownSync(fd, 0, 0)
  t.ok(fstatSync(fd, { bigint: true }).ctimeNs > BigInt(before[0]) * 1_000_000_000n + BigInt(before[1]), 'fstat on the fd shows the new ctime at once')
  // fchownSync held this thread: let a copy of a request, if one was sent, arrive
  await eventually(() => setattrs > sent, 300, 20)
  t.equal(setattrs, sent, 'no trip at the chown')
  closeSync(fd)
  t.equal(await seen(sent + 1), sent + 1, 'one trip at the close')
  const lone = (await mc.call('lookup', { parent: ROOT_INO, name: 'lone' })).attr
  t.ok(after(lone.ctime as [number, number], before as [number, number]), 'meta has the new ctime after the close')
  t.equal(lone.uid, 0, 'owner unchanged')

  // a real change of owner still goes to meta at once
  const fd2 = openSync(join(m.dir, 'given'), 'wx', 0o600)
  const sent2 = setattrs
  fchownSync(fd2, 4242, 4343)
  t.equal(await seen(sent2 + 1), sent2 + 1, 'a chown that changes the owner is sent at once')
  t.equal((await mc.call('lookup', { parent: ROOT_INO, name: 'given' })).attr.uid, 4242, 'and meta has it before the close')
  closeSync(fd2)
})
