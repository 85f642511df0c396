/**
 * Hostile bodies on every meta subject: random bytes, wrong types, missing
 * fields, payloads just under NATS max_payload, oversize fields. Each gets an
 * `{ok:false, code}` reply; meta keeps running and stored entries stay as they were.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { metaRequests, ROOT_INO } from '../common/protocol'
import { decode, encode } from '../common/wire'
import { startCluster } from './helpers/cluster'

t.test('meta answers garbage with error replies and keeps serving', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m = await c.metaClient()
  const nc = m.nc
  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'stable', mode: 0o755, uid: 1, gid: 2 })).attr
  const f = (await m.call('mknod', { parent: d.ino, name: 'file', mode: 0o100644, uid: 1, gid: 2 })).attr
  await m.call('setxattr', { ino: f.ino, name: 'user.x', value: Buffer.from('keep') })
  await m.call('pin', { session: 's', hashes: ['b'.repeat(64)] })
  await m.call('commit', { ino: f.ino, session: 's', size: 10, chunks: [{ idx: 0, hash: 'b'.repeat(64), len: 10, nodes: ['n'] }] })
  const snapshot = async () => ({
    root: (await m.call('readdir', { ino: ROOT_INO })).entries,
    dir: (await m.call('readdir', { ino: d.ino })).entries,
    file: (await m.call('getattr', { ino: f.ino })).attr,
    xattr: Buffer.from((await m.call('getxattr', { ino: f.ino, name: 'user.x' })).value).toString(),
    chunks: (await m.call('chunks', { ino: f.ino })).chunks,
  })
  const before = await snapshot()

  const maxPayload = nc.info?.max_payload ?? 1024 * 1024
  const bodies: Array<[string, Uint8Array, (op: string) => boolean]> = [
    ['invalid msgpack', Buffer.from([0xc1, 0xc1, 0xff]), () => true],
    ['random bytes', randomBytes(200), () => true],
    ['empty body', Buffer.alloc(0), () => true],
    ['a number', encode(42), () => true],
    ['an array', encode([1, 'two', null]), () => true],
    ['wrong types', encode({ rid: 5, ino: 'one', parent: [], name: 7, newParent: {}, newName: true, session: 9, mode: -1, size: 'big', chunks: 'x', value: 'not bytes', ttlMs: 'x', flags: 'x', uid: -5, gid: 1.5 }), () => true],
    ['missing fields', encode({}), (op) => !Object.hasOwn(metaRequests, op) || !metaRequests[op as keyof typeof metaRequests].safeParse({}).success],
    ['just under max_payload', Buffer.concat([encode({ name: 'x'.repeat(maxPayload - 1024) })]), () => true],
    ['oversize fields', encode({ ino: 1, parent: 1, name: 'n'.repeat(5000), newParent: 1, newName: 'm', target: 't'.repeat(10_000), session: 's'.repeat(500), rid: 'r'.repeat(500), value: Buffer.alloc(200_000), mode: 0o644, uid: 0, gid: 0, ttlMs: 5000, size: 0, chunks: [] }), () => true],
    ['negative and fractional numbers', encode({ rid: -1.5, ino: -1, parent: 1.5, name: 'x', session: 's', size: -10, ttlMs: 10, mode: 2 ** 40, uid: 0, gid: 0, target: 'x', value: Buffer.alloc(1), newParent: 0, newName: 'y', cursor: 5, limit: 1_000_000, from: -1, chunks: [] }), () => true],
  ]
  t.ok(bodies[7]![1].length > 1024 * 1024 && bodies[7]![1].length < maxPayload, 'oversize body is deliverable by NATS')

  const ops = [...Object.keys(metaRequests), 'nosuchop', 'constructor', '__proto__', 'toString']
  for (const op of ops) {
    for (const [what, data, expectError] of bodies) {
      if (!expectError(op)) continue
      const msg = await nc.request(`${c.cluster}.meta.${op}`, data, { timeout: 5000 })
      const reply = decode(msg.data) as { ok: boolean; code?: string }
      if (reply.ok !== false || typeof reply.code !== 'string') {
        t.fail(`${op} / ${what}: expected an error reply, got ${JSON.stringify(reply)}`)
      }
      if (op === 'nosuchop' || op === 'constructor' || op === '__proto__' || op === 'toString') {
        if (reply.code !== 'ENOSYS') t.fail(`${op}: expected ENOSYS, got ${reply.code}`)
      }
    }
  }
  t.pass(`${ops.length} subjects x ${bodies.length} bodies answered with errors`)

  t.doesNotThrow(() => process.kill(c.meta.pid, 0), 'meta is still running')
  t.equal((await m.call('getattr', { ino: ROOT_INO })).attr.ino, ROOT_INO, 'and still answers')
  t.same(await snapshot(), before, 'stored entries are unchanged')
})
