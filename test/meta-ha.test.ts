/**
 * Replicated meta (docs/meta.md#replication; issue 9): two metas with --ha on
 * one JetStream: exactly one serves; every acknowledged mutation survives
 * kill -9 of the leader and the follower takes over (failover time reported);
 * the old leader rejoins as a follower and catches up.
 */
import { join } from 'node:path'
import t from 'tap'
import { LOCK_EOF as EOF, ROOT_INO, type MetaReplies, type MetaRequest } from '../common/protocol'
import { request, subjects } from '../common/wire'
import type { ServiceHandle } from '../cli/spawn-service'
import { startCluster } from './helpers/cluster'

const who = { uid: 0, gid: 0 }
const HA = ['--ha', '--lease-ttl-ms', '3000']

t.test('two metas started together: one leads, kill -9 of it loses nothing', async (t) => {
  const c = await startCluster(t, { nodes: 0, metaArgs: HA })
  const second = await c.startMeta({ db: `${c.dir}/meta2.db` })
  const metas: ServiceHandle[] = [c.meta, second]
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const st = await m.call('status', {})
  t.equal(st.replication?.role, 'leader', `${st.metaId} leads`)
  const leader = metas.find((x) => x.ready.metaId === st.metaId)!
  const follower = metas.find((x) => x !== leader)!
  t.ok(leader && follower, 'the leader is one of the two')
  // both answer? only the leader subscribes: many status calls all come from it
  const ids = new Set<unknown>()
  for (let i = 0; i < 20; i++) ids.add((await m.call('status', {})).metaId)
  t.same([...ids], [st.metaId], 'exactly one meta serves')

  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'd', mode: 0o755, ...who })).attr
  const made: number[] = []
  for (let i = 0; i < 50; i++) made.push((await m.call('mknod', { parent: d.ino, name: `f${i}`, mode: 0o100644, ...who })).attr.ino)
  await m.call('commit', { ino: made[0]!, session: 's', size: 3, chunks: [{ idx: 0, hash: null, len: 3, nodes: [], data: Buffer.from('abc') }] })
  await m.call('rename', { parent: d.ino, name: 'f1', newParent: ROOT_INO, newName: 'moved' })
  // a lock is replicated state too (meta/locks.ts): it must hold on the next leader
  await m.call('session', { session: 'locker', ttlMs: 60_000 })
  t.equal((await m.call('lock', { session: 'locker', ino: made[2]!, kind: 'posix', owner: 'a1', type: 'w', start: 0, end: EOF, pid: 7 })).granted, true, 'locked')
  // the last acknowledged mutation, then kill -9 at once
  const killedAt = performance.now()
  await leader.kill()
  await m.call('mkdir', { parent: ROOT_INO, name: 'after', mode: 0o755, ...who })
  const failoverMs = Math.round(performance.now() - killedAt)
  t.comment(`failover: first mutation served by the new leader ${failoverMs} ms after kill -9`)
  t.ok(failoverMs < 15_000, `failover within 15 s (${failoverMs} ms)`)
  const st2 = await m.call('status', {})
  t.equal(st2.metaId, follower.ready.metaId, 'the follower leads now')
  t.equal((await m.call('lookup', { parent: ROOT_INO, name: 'moved' })).attr.ino, made[1], 'the rename is there')
  const { entries } = await m.call('readdir', { ino: d.ino })
  t.equal(entries.length, 49, 'every acknowledged create is there, once')
  const o = await m.call('open', { ino: made[0]!, session: 's' })
  t.equal(Buffer.from(o.chunks[0]!.data!).toString(), 'abc', 'inline bytes replicated')
  t.equal((await m.call('lock', { session: 'other', ino: made[2]!, kind: 'posix', owner: 'b1', type: 'r', start: 5, end: 5, pid: 8 })).granted, false, 'the lock holds on the new leader')
  t.equal((await m.call('getlk', { session: 'other', ino: made[2]!, owner: 'b1', type: 'r', start: 0, end: EOF })).conflict?.session, 'locker', 'held by its session')

  // the old leader comes back as a follower and catches up
  const back = await c.startMeta({ db: `${c.dir}/meta.db` })
  t.teardown(() => back.stop())
  await m.call('mkdir', { parent: ROOT_INO, name: 'after2', mode: 0o755, ...who })
  t.equal((await m.call('status', {})).metaId, follower.ready.metaId, 'leadership stays put when the old leader returns')
  // stop the current leader cleanly: the returned one takes over with everything
  const stoppedAt = performance.now()
  await follower.stop()
  t.ok((await m.call('lookup', { parent: ROOT_INO, name: 'after2' })).attr.ino > 0, 'the rejoined replica has the mutations made while it was away')
  t.comment(`handover after a clean stop: ${Math.round(performance.now() - stoppedAt)} ms`)
  t.equal((await m.call('status', {})).metaId, back.ready.metaId, 'the rejoined replica leads')
})

t.test('metas started at the same instant: exactly one serves; a retry after failover is applied once', async (t) => {
  const c = await startCluster(t, { nodes: 0, metaArgs: HA })
  await c.meta.stop() // the helper's first meta: start three afresh, at once
  const metas = await Promise.all([0, 1, 2].map((i) => c.startMeta({ db: `${c.dir}/same-${i}.db` })))
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const ids = new Set<unknown>()
  for (let i = 0; i < 30; i++) ids.add((await m.call('status', {})).metaId)
  t.equal(ids.size, 1, `one meta answers everything (${[...ids].join(', ')})`)
  const leaderId = [...ids][0]
  const roles = metas.map((x) => (x.ready.metaId === leaderId ? 'leader' : 'follower'))
  t.same(roles.filter((r) => r === 'leader').length, 1, 'exactly one of the three leads')

  // a rename whose reply is lost, retried after the leader died: applied once
  const nc = await c.connect('client')
  const send = <Op extends 'rename' | 'mknod'>(op: Op, body: MetaRequest<Op>) =>
    request<MetaReplies[Op]>(nc, subjects('berth').meta(op), body, { timeoutMs: 3000, deadlineMs: 30_000, retryTimeouts: true })
  const a = (await send('mknod', { rid: 'ha1.1.1', parent: ROOT_INO, name: 'a', mode: 0o100644, ...who })).attr
  const first = await send('rename', { rid: 'ha1.2.2', parent: ROOT_INO, name: 'a', newParent: ROOT_INO, newName: 'b' })
  const a2 = (await send('mknod', { rid: 'ha2.1.1', parent: ROOT_INO, name: 'a', mode: 0o100644, ...who })).attr
  await metas.find((x) => x.ready.metaId === leaderId)!.kill()
  t.same(await send('rename', { rid: 'ha1.2.2', parent: ROOT_INO, name: 'a', newParent: ROOT_INO, newName: 'b' }), first, 'the new leader answers the retry from the replicated request table')
  t.equal((await m.call('lookup', { parent: ROOT_INO, name: 'a' })).attr.ino, a2.ino, 'the new "a" was not moved')
  t.equal((await m.call('lookup', { parent: ROOT_INO, name: 'b' })).attr.ino, a.ino, '"b" is the renamed file')
  t.not((await m.call('status', {})).metaId, leaderId, 'a follower took over')
})

t.test('a database made without --ha is refused by a --ha replica, and left as it was', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m = await c.metaClient()
  const made = await m.call('mknod', { parent: ROOT_INO, name: 'kept', mode: 0o100644, ...who })
  await c.meta.stop()
  // it would lead with a file the log never had, or follow with it beside the log
  await t.rejects(c.startMeta({ args: HA }), /not in the replicated log/, 'meta --ha on it exits with the reason')
  await c.startMeta({ db: join(c.dir, 'meta.db') })
  const m2 = await c.metaClient()
  t.equal((await m2.call('getattr', { ino: made.attr.ino })).attr.ino, made.attr.ino, 'a meta without --ha still serves the file')
})
