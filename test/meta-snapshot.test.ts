/**
 * Snapshots (docs/meta.md#snapshots; issue 9): the leader stores a snapshot
 * of its database in JetStream every few entries and trims the log behind it;
 * a new replica with an empty database starts from the snapshot plus the log
 * tail and, once the leader is gone, serves every acknowledged mutation.
 */
import t from 'tap'
import { ROOT_INO } from '../common/protocol'
import { streamName } from '../meta/log/stream'
import { snapshotBucket } from '../meta/log/snapshot'
import { startCluster } from './helpers/cluster'

const who = { uid: 0, gid: 0 }
// small numbers so a short test snapshots and trims several times
const HA = ['--ha', '--lease-ttl-ms', '3000', '--snapshot-entries', '20', '--snapshot-keep', '5', '--snapshot-interval-ms', '1000']

async function eventually<T>(what: string, fn: () => Promise<T | null | undefined | false>, ms = 60_000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > until) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 250))
  }
}

t.test('a new replica starts from the snapshot and the log tail', async (t) => {
  const c = await startCluster(t, { nodes: 0, metaArgs: HA })
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'd', mode: 0o755, ...who })).attr
  const made = new Map<string, number>()
  for (let i = 0; i < 80; i++) made.set(`f${i}`, (await m.call('mknod', { parent: d.ino, name: `f${i}`, mode: 0o100644, ...who })).attr.ino)
  await m.call('rename', { parent: d.ino, name: 'f1', newParent: ROOT_INO, newName: 'moved' })
  made.delete('f1')

  const jsm = await (await c.connect('meta')).jetstreamManager()
  const first = await eventually('the log is trimmed behind a snapshot', async () => {
    const info = await jsm.streams.info(streamName(c.cluster))
    return info.state.first_seq > 1 ? info.state.first_seq : null
  })
  t.ok(first > 1, `the log starts at ${first} now`)
  const snap = await jsm.streams.info(`OBJ_${snapshotBucket(c.cluster)}`)
  t.ok(snap.state.messages > 0, 'a snapshot is stored')

  // a replica that never saw the start of the log
  const fresh = await c.startMeta({ db: `${c.dir}/fresh/meta.db` })
  await m.call('mknod', { parent: d.ino, name: 'late', mode: 0o100644, ...who })
  // berth status: both replicas with their applied sequence; the fresh one catches up (lag 0)
  const rep = await eventually('status lists both replicas, none lagging', async () => {
    const r = (await m.call('status', {})).replication
    return r?.replicas?.length === 2 && r.replicas.every((p) => p.lag === 0) ? r : null
  })
  t.same(rep.replicas!.map((p) => p.role).sort(), ['follower', 'leader'], 'status shows one leader and one follower')
  t.ok(rep.snapshotSeq !== null && rep.snapshotSeq! >= first - 1, `status shows the snapshot (${rep.snapshotSeq}) and the log (${rep.logFirstSeq}..${rep.lastLogSeq})`)
  await c.meta.kill()
  // the client retries until the fresh replica leads
  await m.call('mkdir', { parent: ROOT_INO, name: 'after', mode: 0o755, ...who })
  t.equal((await m.call('status', {})).metaId, fresh.ready.metaId, 'the fresh replica leads')
  const { entries } = await m.call('readdir', { ino: d.ino })
  const names = new Map(entries.map((e) => [e.name, e.attr.ino]))
  let same = true
  for (const [name, ino] of made) if (names.get(name) !== ino) same = false
  t.ok(same, 'every create before the snapshot is there with its inode')
  t.equal(names.size, made.size + 1, 'and nothing else but the one after it')
  t.ok(names.has('late'), 'the create after the snapshot (log tail) is there')
  t.ok((await m.call('lookup', { parent: ROOT_INO, name: 'moved' })).attr.ino > 0, 'the rename is there')
})
