/**
 * The snapshot store's download (meta/log/snapshot.ts) against a real
 * nats-server. nats.js reads an object's chunks with an ordered consumer on the
 * chunk subject of the version it found when the read began; a put of a newer
 * version purges those chunks, and that read then waits forever. A new replica
 * restoring while the leader stored its next snapshot hung that way (CI:
 * test/meta-snapshot, "berth meta not ready within 60000 ms", twice).
 */
import { writeFileSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { NatsConnection } from 'nats'
import { connectNats } from '../common/nats-connect'
import { SnapshotReplaced, SnapshotStore, snapshotBucket, SNAPSHOT_NAME } from '../meta/log/snapshot'
import { setApplied } from '../meta/log/apply'
import { openDatabase } from '../meta/sqlite'
import { migrate } from '../meta/schema'
import { startNats } from './helpers/cluster'
import { testDir } from './helpers/test-dir'
import { within } from './helpers/lifecycle'

async function metaConnection(t: Test): Promise<NatsConnection> {
  const nats = await startNats(t)
  const nc = await connectNats({ url: nats.url, user: nats.users.meta.user, pass: nats.users.meta.pass, name: 'snapshot-store-test' })
  t.teardown(() => nc.close())
  return nc
}

/** A meta database whose engine_state says it applied `seq`. */
async function databaseAt(file: string, seq: number): Promise<void> {
  const db = await openDatabase(file, migrate, { sync: 'normal', cacheMb: 8 })
  await db.write((tx) => setApplied(tx, seq), { replay: true })
  await db.close()
}

/** Purges the chunks of the stored version of `latest` and leaves its meta: what a reader finds once a newer put replaced it. */
async function purgeChunks(nc: NatsConnection, cluster: string): Promise<void> {
  const os = await nc.jetstream().views.os(snapshotBucket(cluster))
  const info = await os.info(SNAPSHOT_NAME)
  const jsm = await nc.jetstreamManager()
  await jsm.streams.purge(`OBJ_${snapshotBucket(cluster)}`, { filter: `$O.${snapshotBucket(cluster)}.C.${info!.nuid}` })
}

t.test('a restore whose version is replaced mid-read says so at once, and the next one gets the newer snapshot', async (t) => {
  const nc = await metaConnection(t)
  const dir = testDir(t)
  const store = await SnapshotStore.open(nc, 'c1', 1)
  await databaseAt(join(dir, 'v1.db'), 11)
  await databaseAt(join(dir, 'v2.db'), 22)
  t.equal((await store.take(join(dir, 'v1.db'), join(dir, 'tmp'))).seq, 11, 'snapshot at 11 stored')

  // the reader begins on v1 and finds its chunks gone; then v2 is stored
  await purgeChunks(nc, 'c1')
  const target = join(dir, 'restored.db')
  writeFileSync(target, 'the old database')
  const started = performance.now()
  const restoring = store.restore(target, { checkMs: 100, stallMs: 20_000 })
  const outcome = restoring.then(
    () => 'resolved',
    (err: unknown) => err,
  )
  await new Promise((r) => setTimeout(r, 300))
  await store.take(join(dir, 'v2.db'), join(dir, 'tmp'))
  const got = await within(outcome, 10_000, 'still waiting after 10 s')
  t.ok(got instanceof SnapshotReplaced, `the read of the replaced version ends with SnapshotReplaced (got ${String(got)})`)
  t.ok(performance.now() - started < 5000, 'well before the stall deadline')
  t.equal(readFileSync(target, 'utf8'), 'the old database', 'the database file is untouched')
  t.notOk(existsSync(`${target}.snapshot-in`), 'no partial download is left')

  const again = await store.restore(target)
  t.equal(again?.seq, 22, 'the next restore takes the newer snapshot')
})

t.test('a restore whose chunks never come gives up at its stall deadline with a clear error', async (t) => {
  const nc = await metaConnection(t)
  const dir = testDir(t)
  const store = await SnapshotStore.open(nc, 'c2', 1)
  await databaseAt(join(dir, 'v1.db'), 5)
  await store.take(join(dir, 'v1.db'), join(dir, 'tmp'))
  await purgeChunks(nc, 'c2')
  const target = join(dir, 'restored.db')
  writeFileSync(target, 'the old database')
  await t.rejects(store.restore(target, { checkMs: 100, stallMs: 1000 }), /no part of the snapshot .* for 1 s/, 'rejected after 1 s without a chunk')
  t.equal(readFileSync(target, 'utf8'), 'the old database', 'the database file is untouched')
  t.notOk(existsSync(`${target}.snapshot-in`), 'no partial download is left')
})

t.test('restores racing a leader that replaces the snapshot back to back all end: whole, or replaced', async (t) => {
  const nc = await metaConnection(t)
  const dir = testDir(t)
  const store = await SnapshotStore.open(nc, 'c3', 1)
  const versions = [1, 2, 3].map((seq) => join(dir, `v${seq}.db`))
  for (const [i, f] of versions.entries()) await databaseAt(f, i + 1)
  await store.take(versions[0]!, join(dir, 'tmp0'))
  let stop = false
  let puts = 0
  const writer = (async () => {
    while (!stop) await store.take(versions[puts++ % 3]!, join(dir, 'tmp-w'))
  })()
  let whole = 0
  let replaced = 0
  const other: string[] = []
  for (let i = 0; i < 40; i++) {
    const target = join(dir, `r${i}.db`)
    try {
      const got = await within(store.restore(target, { checkMs: 100, stallMs: 5000 }), 15_000, 'hung' as const)
      if (got === 'hung') other.push('hung for 15 s')
      else if (got && got.seq >= 1 && got.seq <= 3) whole++
      else other.push(`resolved with ${JSON.stringify(got)}`)
    } catch (err) {
      if (err instanceof SnapshotReplaced) replaced++
      else other.push((err as Error).message)
    }
  }
  stop = true
  await writer
  t.same(other, [], `each of 40 restores ended whole (${whole}) or replaced (${replaced}) while ${puts} snapshots were stored`)
  t.ok(whole > 0, 'some restores got a whole snapshot')
})
