/**
 * Snapshots (docs/meta.md#snapshots; issue 9): the leader stores a snapshot
 * of its database in JetStream every few entries and trims the log behind it;
 * a new replica with an empty database starts from the snapshot plus the log
 * tail and, once the leader is gone, serves every acknowledged mutation.
 */
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ROOT_INO } from '../common/protocol'
import { streamName } from '../meta/log/stream'
import { snapshotBucket } from '../meta/log/snapshot'
import { startCluster, type TestCluster } from './helpers/cluster'
import type { MetaClient } from '../common/meta-client'
import type { ReplicationReport } from '../common/protocol'
import type { ServiceHandle } from '../cli/spawn-service'
import { trimPoint } from '../meta/replica'
import { listDir } from './helpers/list-dir'

const who = { uid: 0, gid: 0 }
// small numbers so a short test snapshots and trims several times
const HA = ['--ha', '--lease-ttl-ms', '3000', '--snapshot-entries', '20', '--snapshot-keep', '5', '--snapshot-interval-ms', '1000']

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A replicated meta (snapshots every second, 5 entries kept) and directory `d` with `files` files a0.. made through it. */
async function leaderWithFiles(t: Test, files: number) {
  const c = await startCluster(t, { nodes: 0, metaArgs: HA })
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'd', mode: 0o755, ...who })).attr
  for (let i = 0; i < files; i++) await m.call('mknod', { parent: d.ino, name: `a${i}`, mode: 0o100644, ...who })
  const jsm = await (await c.connect('meta')).jetstreamManager()
  return { c, m, d, jsm }
}

/**
 * Replication status until both replicas report lag 0; on failure the last
 * status and both replicas' logs go into the message, and a replica that
 * exits meanwhile fails it at once.
 */
async function bothCaughtUp(c: TestCluster, m: MetaClient, fresh: ServiceHandle, ms = 60_000): Promise<ReplicationReport> {
  let seen = ''
  let exited: string | null = null
  const gone = (code: number | null) => (exited = `the new replica exited (${code})`)
  if (fresh.child.exitCode !== null) gone(fresh.child.exitCode)
  else fresh.child.once('exit', gone)
  try {
    return await eventually('status lists both replicas, none lagging', async () => {
      if (exited) throw new Error(exited)
      const r = (await m.call('status', {})).replication
      seen = JSON.stringify(r)
      return r?.replicas?.length === 2 && r.replicas.every((p) => p.lag === 0) ? r : null
    }, ms)
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast status: ${seen}\nleader's log:\n${c.meta.stderr()}\nnew replica's log:\n${fresh.stderr()}`)
  }
}

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
  const rep = await bothCaughtUp(c, m, fresh)
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

t.test('a new replica whose restored snapshot the leader trims past at once restores the newer one', async (t) => {
  const { c, m, d, jsm } = await leaderWithFiles(t, 30)
  const snapSeq = async () => (await m.call('status', {})).replication?.snapshotSeq ?? 0
  const lastSeq = async () => (await jsm.streams.info(streamName(c.cluster))).state.last_seq
  // the leader's snapshot has caught up with the log, and the log is trimmed behind it
  await eventually('a snapshot of the whole log', async () => (await snapSeq()) >= (await lastSeq()) - 1 && (await jsm.streams.info(streamName(c.cluster))).state.first_seq > 1)
  const restored = await snapSeq()

  // the new replica restores that snapshot and stops at the gate
  const gate = join(c.dir, 'restore-gate')
  const fresh = c.startMeta({ db: `${c.dir}/fresh/meta.db`, env: { BERTH_TEST_RESTORE_GATE: gate } })
  fresh.catch(() => undefined)
  await eventually('the new replica restored the snapshot', async () => existsSync(`${gate}.reached`))
  // meanwhile the leader writes on, stores a newer snapshot and trims the log past the restored one
  for (let i = 0; i < 30; i++) await m.call('mknod', { parent: d.ino, name: `b${i}`, mode: 0o100644, ...who })
  const first = await eventually('the log trimmed past the restored snapshot', async () => {
    const f = (await jsm.streams.info(streamName(c.cluster))).state.first_seq
    return f > restored + 1 ? f : null
  })
  t.ok(first > restored + 1, `the log starts at ${first}, past the restored snapshot's ${restored} + 1`)
  writeFileSync(gate, '')
  const replica = await fresh // before: exit 70, "the log starts at N but this replica has applied only M"
  t.ok(replica.pid > 0, 'the new replica took the newer snapshot and came up')
  await bothCaughtUp(c, m, replica)
  await c.meta.kill()
  const { entries } = await m.call('readdir', { ino: d.ino })
  t.equal(entries.length, 60, 'led by the new replica, the directory holds all 60 files')
})

t.test('a new replica started while the leader writes without pause (a snapshot every second, 5 entries kept) catches up and is never trimmed past', async (t) => {
  // before: the leader's trims kept 5 entries behind each snapshot whatever a
  // running follower had applied; the new replica, a few entries behind at one
  // of them, exited (70, "the log starts at N but this replica has applied
  // only M"): 7 of 8 runs of this case
  const { c, m, d, jsm } = await leaderWithFiles(t, 30)
  await eventually('the log is trimmed behind a snapshot', async () => (await jsm.streams.info(streamName(c.cluster))).state.first_seq > 1)
  let writing = true
  let n = 0
  const writer = (async () => {
    while (writing) await m.call('mknod', { parent: d.ino, name: `w${n++}`, mode: 0o100644, ...who })
  })()
  const fresh = await c.startMeta({ db: `${c.dir}/fresh/meta.db` })
  await sleep(3000)
  writing = false
  await writer
  await bothCaughtUp(c, m, fresh, 30_000)
  const trimmed = (await jsm.streams.info(streamName(c.cluster))).state.first_seq
  t.ok(trimmed > 1, `caught up after ${n} creates written while it started; the log is trimmed (first entry ${trimmed})`)
  await c.meta.kill()
  t.equal((await listDir(m, d.ino)).length, 30 + n, `led by the new replica, the directory holds all ${30 + n} files`)
})

t.test('trimPoint: keeps entries a running follower still needs, up to a bound', async (t) => {
  t.equal(trimPoint(100, 5, null), 96, 'no follower heard: keep entries behind the snapshot')
  t.equal(trimPoint(100, 5, 98), 96, 'a follower within them changes nothing')
  t.equal(trimPoint(100, 5, 60), 61, 'a follower behind them: the log keeps every entry after what it applied')
  t.equal(trimPoint(500_000, 5, 10), 500_001 - 5 - 100_000, 'one that would keep more than 100,000 more is left to restart from the snapshot')
})
