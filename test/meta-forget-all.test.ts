/**
 * The one case the client's metadata cache TTL used to guard, driven through
 * real mounts: meta commits a mutation and dies before publishing its
 * invalidation (the client's retry would be answered from the request table,
 * which publishes nothing), so other mounts keep a stale listing and stale
 * attributes. BERTH_TEST_DROP_INVALIDATIONS=1 (test only, meta/config.ts)
 * makes every meta publish no mutation's invalidation, which holds that
 * state as long as we like; then meta is killed with -9 and started again
 * (single meta) or a follower takes over (--ha). The meta that starts serving
 * publishes the forget-everything invalidation (meta/serving.ts) and the
 * mounts must see the change within 3 s, while their cache TTL is 300 s.
 *
 * Mount A has the kernel's default 1 s timeouts; mount C keeps the kernel's
 * entries and attributes 60 s, so only the pushed invalidation of its known
 * directories (Vfs.clearCache) can refresh its cached listing that soon.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { ServiceHandle } from '../cli/spawn-service'
import { startCluster, type TestCluster } from './helpers/cluster'
import { eventually, sleep } from './helpers/lifecycle'
import { mountCluster, type TestMount } from './helpers/mount'

const DROP = { BERTH_TEST_DROP_INVALIDATIONS: '1' }
const HA = ['--ha', '--lease-ttl-ms', '3000']
/** Well under the TTL (300 s): the forget-everything message, not the TTL, refreshed the mounts. */
const PROMPT_MS = 3000
/** Longer than the kernel's 1 s timeouts on A, so a stale view there is the client's cache. */
const STALE_FOR_MS = 2500
const LONG_KERNEL = ['-o', 'entry_timeout=60,attr_timeout=60']

const sorted = (dir: string) => readdirSync(dir).sort()
const mode = (path: string) => statSync(path).mode & 0o7777

interface Mounts {
  a: TestMount
  b: TestMount
  c: TestMount
}

async function mountThree(t: Test, cl: TestCluster): Promise<Mounts> {
  return { a: await mountCluster(t, cl), b: await mountCluster(t, cl), c: await mountCluster(t, cl, { args: LONG_KERNEL }) }
}

/**
 * A and C cache the listing of `name` and an attribute of its file, B then
 * adds a file and changes the mode (no invalidation is published), and both
 * A and C are shown still stale after the kernel's own timeouts.
 */
async function staleView(t: Test, m: Mounts, name: string): Promise<void> {
  mkdirSync(join(m.b.dir, name))
  writeFileSync(join(m.b.dir, name, 'f1'), 'one\n')
  for (const x of [m.a, m.c]) {
    t.same(sorted(join(x.dir, name)), ['f1'], 'listed whole before the change')
    t.equal(mode(join(x.dir, name, 'f1')), 0o644, 'mode cached before the change')
  }
  writeFileSync(join(m.b.dir, name, 'f2'), 'two\n')
  chmodSync(join(m.b.dir, name, 'f1'), 0o600)
  t.same(sorted(join(m.b.dir, name)), ['f1', 'f2'], 'B sees its own change')
  await sleep(STALE_FOR_MS)
  t.same(sorted(join(m.a.dir, name)), ['f1'], `A's listing is stale ${STALE_FOR_MS} ms later (no invalidation came)`)
  t.notOk(existsSync(join(m.a.dir, name, 'f2')), "A's lookup of the new name answers from its complete directory")
  t.equal(mode(join(m.a.dir, name, 'f1')), 0o644, "A's attributes are stale")
  t.same(sorted(join(m.c.dir, name)), ['f1'], "C's listing is stale")
}

/** After a meta started serving: A and C see B's change within PROMPT_MS. */
async function freshView(t: Test, m: Mounts, name: string, servingAt: number): Promise<void> {
  const dir = (x: TestMount) => join(x.dir, name)
  const aFresh = await eventually(() => sorted(dir(m.a)).length === 2 && existsSync(join(dir(m.a), 'f2')) && mode(join(dir(m.a), 'f1')) === 0o600, PROMPT_MS, 50)
  t.ok(aFresh, `A sees the new file and the new mode within ${PROMPT_MS} ms of the new meta serving`)
  const cFresh = await eventually(() => sorted(dir(m.c)).length === 2, PROMPT_MS, 50)
  t.ok(cFresh, `C (kernel timeouts 60 s) lists the new file within ${PROMPT_MS} ms: its directory was pushed out of the kernel`)
  t.comment(`${name}: A and C fresh ${Math.round(performance.now() - servingAt)} ms after the new meta was ready`)
  t.same(sorted(dir(m.a)), ['f1', 'f2'], 'A lists both files')
}

t.test('single meta: kill -9 and restart: mounts forget the change they never heard of', async (t) => {
  const cl = await startCluster(t, { nodes: 1, replicas: 1, metaEnv: DROP })
  const m = await mountThree(t, cl)
  await staleView(t, m, 'd')

  await cl.meta.kill()
  // the same hook: the restarted meta too publishes no mutation's invalidation,
  // only the forget-everything message when it starts serving
  cl.meta = await cl.startMeta()
  const servingAt = performance.now()
  await freshView(t, m, 'd', servingAt)
})

t.test('--ha: kill -9 of the leader: the follower that takes over makes the mounts forget', async (t) => {
  const cl = await startCluster(t, { nodes: 1, replicas: 1, metaArgs: HA, metaEnv: DROP })
  const metas: ServiceHandle[] = [cl.meta, await cl.startMeta({ db: join(cl.dir, 'meta2.db') })]
  const mc = await cl.metaClient({ deadlineMs: 30_000 })
  const leaderId = (await mc.call('status', {})).metaId
  const leader = metas.find((x) => x.ready.metaId === leaderId)
  t.ok(leader, `the leader (${leaderId}) is one of the two`)
  const m = await mountThree(t, cl)
  await staleView(t, m, 'h')

  await leader!.kill()
  // the first answer after the kill comes from the new leader, which published before serving
  const st = await mc.call('status', {})
  const servingAt = performance.now()
  t.not(st.metaId, leaderId, 'a follower took over')
  await freshView(t, m, 'h', servingAt)
})
