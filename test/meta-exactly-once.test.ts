/**
 * Exactly-once mutations and session epochs (docs/meta.md#exactly-once,
 * #sessions; issue 9): a mutation whose reply was lost and that is retried
 * after meta restarted is applied once (rename and release); a renewal after
 * the session expired is ESTALE and sessionRestore reports freed inodes; a
 * restarted meta expires no session before it had one full TTL.
 */
import t from 'tap'
import type { MetaOp, MetaReplies, MetaRequest } from '../common/protocol'
import { ROOT_INO } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { startCluster, type TestCluster } from './helpers/cluster'
import type { NatsConnection } from 'nats'

const who = { uid: 0, gid: 0 }

/** One request with a fixed request id, as a client retrying after a lost reply sends it. */
function send<Op extends MetaOp>(nc: NatsConnection, op: Op, body: MetaRequest<Op>): Promise<MetaReplies[Op]> {
  return request<MetaReplies[Op]>(nc, subjects('berth').meta(op), body, { timeoutMs: 3000, deadlineMs: 30_000, retryTimeouts: true })
}

async function restartMeta(c: TestCluster, how: 'kill' | 'stop'): Promise<void> {
  if (how === 'kill') await c.meta.kill()
  else await c.meta.stop()
  c.meta = await c.startMeta()
}

t.test('a retried rename after kill -9 of meta is applied once', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const nc = await c.connect('client')
  const d = (await send(nc, 'mkdir', { rid: 'tc1.1.1', parent: ROOT_INO, name: 'd', mode: 0o755, ...who })).attr
  const a = (await send(nc, 'mknod', { rid: 'tc1.2.2', parent: d.ino, name: 'a', mode: 0o100644, ...who })).attr
  const first = await send(nc, 'rename', { rid: 'tc1.3.3', parent: d.ino, name: 'a', newParent: d.ino, newName: 'b' })
  // someone creates a new "a"; then the reply of the rename is "lost" and meta dies
  const a2 = (await send(nc, 'mknod', { rid: 'tc2.1.1', parent: d.ino, name: 'a', mode: 0o100644, ...who })).attr
  await restartMeta(c, 'kill')
  t.same(await send(nc, 'rename', { rid: 'tc1.3.3', parent: d.ino, name: 'a', newParent: d.ino, newName: 'b' }), first, 'the retry gets the first answer')
  t.equal((await send(nc, 'lookup', { parent: d.ino, name: 'a' })).attr.ino, a2.ino, 'the new "a" was not moved by the retry')
  t.equal((await send(nc, 'lookup', { parent: d.ino, name: 'b' })).attr.ino, a.ino, '"b" is still the renamed file')
  await t.rejects(send(nc, 'mkdir', { rid: 'tc1.3.3', parent: ROOT_INO, name: 'd2', mode: 0o755, ...who }), { code: 'EINVAL' }, 'a request id reused for another op is refused')
  // a refusal is remembered too: the retry of a failed mkdir fails the same way even if it could succeed now
  await t.rejects(send(nc, 'mkdir', { rid: 'tc1.4.4', parent: d.ino, name: 'a', mode: 0o755, ...who }), { code: 'EEXIST' })
  await send(nc, 'unlink', { rid: 'tc1.5.4', parent: d.ino, name: 'a' }) // tc1.4 not acknowledged yet
  await restartMeta(c, 'stop')
  await t.rejects(send(nc, 'mkdir', { rid: 'tc1.4.4', parent: d.ino, name: 'a', mode: 0o755, ...who }), { code: 'EEXIST' }, 'the refusal is answered again after a restart')
  // acknowledged answers are forgotten: tc1.1 .. tc1.4 are below ack 5
  await send(nc, 'mkdir', { rid: 'tc1.6.6', parent: d.ino, name: 'x', mode: 0o755, ...who })
  const again = await send(nc, 'mkdir', { rid: 'tc1.4.6', parent: d.ino, name: 'a', mode: 0o755, ...who }).then(
    () => 'ran again',
    (e: { code?: string }) => e.code,
  )
  t.equal(again, 'ran again', 'an acknowledged request id is forgotten (the table stays bounded)')
})

t.test('a retried release after a meta restart is applied once', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const nc = await c.connect('client')
  const f = (await send(nc, 'mknod', { rid: 'rc.1.1', parent: ROOT_INO, name: 'f', mode: 0o100644, session: 'S1', ...who })).attr
  await send(nc, 'open', { rid: 'rc.2.2', ino: f.ino, session: 'S1' }) // open twice by S1
  await send(nc, 'unlink', { rid: 'rc.3.3', parent: ROOT_INO, name: 'f' })
  await send(nc, 'release', { rid: 'rc.4.4', session: 'S1', inos: [f.ino] })
  await restartMeta(c, 'kill')
  await send(nc, 'release', { rid: 'rc.4.4', session: 'S1', inos: [f.ino] })
  t.equal((await send(nc, 'getattr', { ino: f.ino })).attr.nlink, 0, 'the unlinked file is still there: one open remains')
  await send(nc, 'release', { rid: 'rc.5.5', session: 'S1', inos: [f.ino] })
  await t.rejects(send(nc, 'getattr', { ino: f.ino }), { code: 'ENOENT' }, 'the last release frees it')
})

t.test('session epochs: renewal after expiry is ESTALE, restore reports what was freed', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const nc = await c.connect('client')
  const { epoch } = await send(nc, 'session', { rid: 'se.1.1', session: 'S', ttlMs: 60_000, host: 'h' })
  t.ok(epoch > 0, `registered with epoch ${epoch}`)
  t.same(await send(nc, 'session', { rid: 'se.2.2', session: 'S', ttlMs: 60_000, epoch }), { ok: true, epoch }, 'renewal keeps the epoch')
  const keep = (await send(nc, 'mknod', { rid: 'se.3.3', parent: ROOT_INO, name: 'keep', mode: 0o100644, session: 'S', ...who })).attr
  const gone = (await send(nc, 'mknod', { rid: 'se.4.4', parent: ROOT_INO, name: 'gone', mode: 0o100644, session: 'S', ...who })).attr
  await send(nc, 'unlink', { rid: 'se.5.5', parent: ROOT_INO, name: 'gone' })
  // the lease lapses (as expiry does it): open files released, the unlinked one freed
  await send(nc, 'sessionEnd', { rid: 'se.6.6', session: 'S' })
  await t.rejects(send(nc, 'session', { rid: 'se.7.7', session: 'S', ttlMs: 60_000, epoch }), { code: 'ESTALE' }, 'a renewal after the lapse is refused, not silently re-created')
  // an open in between re-creates the row implicitly (epoch 0): still ESTALE
  await send(nc, 'open', { rid: 'se.8.8', ino: keep.ino, session: 'S' })
  await t.rejects(send(nc, 'session', { rid: 'se.9.9', session: 'S', ttlMs: 60_000, epoch }), { code: 'ESTALE' })
  const r = await send(nc, 'sessionRestore', { rid: 'se.a.a', session: 'S', ttlMs: 60_000, open: [{ ino: keep.ino, count: 1 }, { ino: gone.ino, count: 1 }] })
  t.ok(r.epoch > epoch, 'a new epoch')
  t.same(r.lost, [gone.ino], 'the freed inode is reported lost')
  t.same(await send(nc, 'session', { rid: 'se.b.b', session: 'S', ttlMs: 60_000, epoch: r.epoch }), { ok: true, epoch: r.epoch }, 'the new epoch renews')
  const st = await send(nc, 'status', {})
  t.equal(st.openFiles, 1, 'exactly the restored registration is held')
})

t.test('after a restart no session expires before one full TTL', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const nc = await c.connect('client')
  const ttlMs = 3000
  const { epoch } = await send(nc, 'session', { rid: 'gr.1.1', session: 'G', ttlMs, host: 'h' })
  await c.meta.stop()
  await new Promise((r) => setTimeout(r, ttlMs + 1000)) // the lease ran out while meta was down
  c.meta = await c.startMeta()
  const started = Date.now()
  // meta checks expiry every second: without the grace the session would be gone by now
  await new Promise((r) => setTimeout(r, 1500))
  t.same(await send(nc, 'session', { rid: 'gr.2.2', session: 'G', ttlMs, epoch }), { ok: true, epoch }, `renewal ${Date.now() - started} ms after the restart succeeds (grace)`)
  // without renewals it expires after its TTL, not before
  await new Promise((r) => setTimeout(r, ttlMs + 1500))
  await t.rejects(send(nc, 'session', { rid: 'gr.3.3', session: 'G', ttlMs, epoch }), { code: 'ESTALE' }, 'then it expires')
})
