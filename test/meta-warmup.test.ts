/**
 * meta/warmup.ts: a fresh meta runs its request path on a scratch database
 * after start. What must hold: nothing of it reaches the real database, its
 * temporary directory goes, a stop ends it early, and a real meta warming up
 * serves a mount meanwhile with a namespace that shows only the mount's own
 * changes.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { metaRequests, ROOT_INO, type MetaParsed } from '../common/protocol'
import type { MetaEnv } from '../meta/context'
import { sqliteEngine } from '../meta/engine'
import { NodeTable } from '../meta/nodes'
import { migrate } from '../meta/schema'
import { openDatabase, type Database } from '../meta/sqlite'
import { DEFAULT_WARMUP_OPS, warmUp } from '../meta/warmup'
import { parseConfig } from '../meta/config'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { testDir } from './helpers/test-dir'

/** Every row of every table, in a stable order: the database's whole content. */
async function contents(db: Database): Promise<string> {
  const tables = await db.read.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
  const out: string[] = []
  for (const { name } of tables) {
    const rows = await db.read.all<Record<string, unknown>>(`SELECT * FROM "${name}" ORDER BY 1`)
    out.push(`${name}: ${JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`)
  }
  return out.join('\n')
}

t.test('--warmup-ops: default, 0 turns it off, env BERTH_META_WARMUP_OPS, bounds checked', async (t) => {
  const base = ['--nats', 'nats://127.0.0.1:4222', '--db', '/tmp/x.db']
  const env = { BERTH_SECRET: 'a-secret-of-enough-length' }
  t.equal(parseConfig(base, env)!.warmupOps, DEFAULT_WARMUP_OPS)
  t.equal(parseConfig([...base, '--warmup-ops', '0'], env)!.warmupOps, 0)
  t.equal(parseConfig(base, { ...env, BERTH_META_WARMUP_OPS: '500' })!.warmupOps, 500)
  t.equal(parseConfig([...base, '--warmup-ops', '700'], { ...env, BERTH_META_WARMUP_OPS: '500' })!.warmupOps, 700, 'the flag wins')
  t.throws(() => parseConfig([...base, '--warmup-ops=-1'], env), { code: 'EINVAL' })
  t.throws(() => parseConfig([...base, '--warmup-ops', 'many'], env), { code: 'EINVAL' })
})

t.test('the scratch run leaves the real database and the temporary folder as they were', async (t) => {
  const dir = testDir(t)
  const tmp = join(dir, 'tmp')
  mkdirSync(tmp)
  const before = process.env.TMPDIR
  process.env.TMPDIR = tmp
  t.teardown(() => {
    if (before === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = before
  })
  const db = await openDatabase(join(dir, 'meta.db'), migrate, { sync: 'normal' })
  t.teardown(() => db.close())
  const env: MetaEnv = { db, cluster: 't', metaId: 'm', startedAt: Date.now(), secret: 's', chunkSize: 1 << 20, replicas: 2, nodes: new NodeTable() }
  const published: unknown[] = []
  const engine = sqliteEngine(env, (ch) => published.push(ch))
  await engine.call('mkdir', metaRequests.mkdir.parse({ parent: ROOT_INO, name: 'kept', mode: 0o40755, uid: 0, gid: 0 }) as MetaParsed<'mkdir'>)
  published.length = 0
  const was = await contents(db)

  // a folder left by a meta killed while warming up goes; a live process's stays
  const dead = spawnSync('true').pid!
  const abandoned = join(tmp, `berth-meta-warmup-${dead}-AbCdEf`)
  const live = join(tmp, `berth-meta-warmup-${process.ppid}-GhIjKl`)
  for (const d of [abandoned, live]) {
    mkdirSync(d)
    writeFileSync(join(d, 'scratch.db-wal'), 'x')
  }

  const r = await warmUp(env, 1500)
  t.ok(r.ops >= 1500, `ran ${r.ops} requests`)
  t.equal(await contents(db), was, 'the real database is unchanged')
  t.same(published, [], 'the real engine published nothing')
  t.same(readdirSync(tmp), [`berth-meta-warmup-${process.ppid}-GhIjKl`], 'the scratch database is gone, and the abandoned one; the live process\'s is kept')
  rmSync(live, { recursive: true })

  let calls = 0
  const early = await warmUp(env, 1_000_000, () => ++calls > 50)
  t.ok(early.ops < 1000, `a stop ends it early (${early.ops} requests)`)
  t.same(readdirSync(tmp), [], 'also then')
})

t.test('a meta warming up serves a mount, whose namespace holds only its own changes', async (t) => {
  // not in the test's folder: startCluster takes that one (tap would empty it)
  const tmp = mkdtempSync(join(tmpdir(), 'berth-warmup-test-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const cl = await startCluster(t, { metaEnv: { BERTH_META_WARMUP_OPS: '20000', BERTH_LOG: 'info', TMPDIR: tmp } })
  const m = await mountCluster(t, cl)
  // while meta warms up: the mount's creates are answered (and are its only files)
  const names = Array.from({ length: 50 }, (_, i) => `f${i}`)
  for (const n of names) writeFileSync(join(m.dir, n), n)
  t.ok(await eventually(() => /warm-up: \d+ requests on a scratch database/.test(cl.meta.stderr()), 60_000), 'meta finished its warm-up')
  t.same(readdirSync(m.dir).sort(), [...names].sort(), 'the root holds the mount\'s files and nothing of the warm-up')
  t.same(readdirSync(tmp), [], 'the scratch folder is gone')
})

t.test('a --ha replica warms up when it first leads, not while it follows', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'berth-warmup-test-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const warmed = /warm-up: \d+ requests on a scratch database/
  const times = (log: string) => log.match(new RegExp(warmed.source, 'g'))?.length ?? 0
  const cl = await startCluster(t, { nodes: 0, metaArgs: ['--ha', '--lease-ttl-ms', '3000'], metaEnv: { BERTH_META_WARMUP_OPS: '300', BERTH_LOG: 'info', TMPDIR: tmp } })
  t.ok(await eventually(() => warmed.test(cl.meta.stderr()), 60_000), 'the first replica leads and warms up')
  const follower = await cl.startMeta({ db: `${cl.dir}/second/meta.db` })
  const m = await cl.metaClient({ deadlineMs: 30_000 })
  t.ok(
    await eventually(async () => (await m.call('status', {})).replication?.replicas?.length === 2, 30_000),
    'both replicas report',
  )
  // a follower serves nothing: the warm-up would take CPU from the leader's host for nothing
  await new Promise((r) => setTimeout(r, 2000))
  t.notMatch(follower.stderr(), warmed, 'the follower did not warm up')
  await cl.meta.kill()
  await m.call('mkdir', { parent: ROOT_INO, name: 'after', mode: 0o755, uid: 0, gid: 0 })
  t.equal((await m.call('status', {})).metaId, follower.ready.metaId, 'the second replica leads')
  t.ok(await eventually(() => times(follower.stderr()) === 1, 60_000), 'and warmed up once, on taking the lead')
})
