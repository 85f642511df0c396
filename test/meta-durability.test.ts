/**
 * Durability of acknowledged mutations across `kill -9`, and the refusal of a
 * second meta for the same cluster (DESIGN.md "Metadata durability").
 */
import { join } from 'node:path'
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'

const who = { uid: 0, gid: 0 }

t.test('a mutation acknowledged before kill -9 survives a restart', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m = await c.metaClient({ deadlineMs: 20_000 })
  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'kept', mode: 0o750, ...who })).attr
  const f = (await m.call('mknod', { parent: d.ino, name: 'file', mode: 0o100600, ...who })).attr
  await m.call('pin', { session: 's1', hashes: ['a'.repeat(64)] })
  await m.call('commit', { ino: f.ino, session: 's1', size: 123, chunks: [{ idx: 0, hash: 'a'.repeat(64), len: 123, nodes: ['n1'] }] })
  await m.call('setxattr', { ino: f.ino, name: 'user.k', value: Buffer.from('v') })
  // The very last acknowledged mutation, then kill -9 with no pause in between.
  await m.call('rename', { parent: d.ino, name: 'file', newParent: d.ino, newName: 'renamed' })
  await c.meta.kill()

  c.meta = await c.startMeta()
  const got = (await m.call('lookup', { parent: d.ino, name: 'renamed' })).attr
  t.equal(got.ino, f.ino)
  t.equal(got.size, 123)
  await t.rejects(m.call('lookup', { parent: d.ino, name: 'file' }), { code: 'ENOENT' })
  t.same((await m.call('chunks', { ino: f.ino })).chunks, [{ idx: 0, hash: 'a'.repeat(64), len: 123, nodes: ['n1'] }])
  t.equal(Buffer.from((await m.call('getxattr', { ino: f.ino, name: 'user.k' })).value).toString(), 'v')
  t.equal((await m.call('getattr', { ino: d.ino })).attr.mode, 0o40750)
  const next = (await m.call('mknod', { parent: d.ino, name: 'after', mode: 0o100600, ...who })).attr
  t.ok(next.ino > f.ino, 'inode numbers are not reused after a restart')
})

t.test('a second meta for the same cluster refuses to start', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m = await c.metaClient()
  await m.call('mkdir', { parent: ROOT_INO, name: 'first', mode: 0o755, ...who })
  let err: Error | undefined
  try {
    await c.startMeta({ db: join(c.dir, 'other.db') })
  } catch (e) {
    err = e as Error
  }
  t.ok(err, 'second meta did not become ready')
  t.match(err?.message ?? '', /exited \(1\)/, 'non-zero exit code')
  t.match(err?.message ?? '', new RegExp(`another berth meta \\(id ${String(c.meta.ready.metaId)}\\) already serves cluster berth; refusing to split the namespace`))
  t.doesNotThrow(() => process.kill(c.meta.pid, 0), 'first meta still running')
  t.equal((await m.call('lookup', { parent: ROOT_INO, name: 'first' })).attr.mode, 0o40755, 'first meta still serves')
  const s = await m.call('status', {})
  t.equal(s.metaId, c.meta.ready.metaId, 'answers come from the first meta')
})
