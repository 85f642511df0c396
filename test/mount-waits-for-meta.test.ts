/**
 * A mount started while meta is not serving yet (a cluster that just started
 * elects its meta leader first: 8 s and more in test/containers on a busy
 * host) waits for it, says so, and mounts once meta answers; with no meta at
 * all it fails within its wait with a hint. client/main.ts START_HELLO_MS.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

t.test('a mount waits for a meta that starts 12 s after it, then works', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  await c.meta.stop()
  const started = Date.now()
  const mounting = mountCluster(t, c)
  await new Promise((r) => setTimeout(r, 12_000))
  const meta = await c.startMeta()
  t.teardown(() => meta.stop())
  const m = await mounting
  t.ok(Date.now() - started >= 12_000, `mounted after ${((Date.now() - started) / 1000).toFixed(1)} s, once meta served`)
  t.match(m.client.stderr(), /no berth meta answered for cluster "[^"]+" yet; waiting up to 30 s/, 'the mount said what it waits for')
  await writeFile(join(m.dir, 'f'), 'after the wait\n')
  t.equal(await readFile(join(m.dir, 'f'), 'utf8'), 'after the wait\n', 'a file written and read back')
})

t.test('with no meta at all, the mount fails within its wait, with the hint', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  await c.meta.stop()
  const started = Date.now()
  const err = await mountCluster(t, c, { args: ['--deadline-ms', '3000'] }).then(
    () => null,
    (e: Error) => e,
  )
  t.match(err?.message ?? 'mounted', /no berth meta answered for cluster "[^"]+" at .* within 3 s[\s\S]*is `berth meta` \(or `berth up`\) running\?/, 'refused with the hint')
  t.ok(Date.now() - started < 20_000, `in ${((Date.now() - started) / 1000).toFixed(1)} s`)
})
