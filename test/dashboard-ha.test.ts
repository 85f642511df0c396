/**
 * The dashboard of a replicated meta (--ha; docs/operations.md#dashboard):
 * only the leader has live state. A follower's /api/state says it follows
 * and names the leader it hears; /leader is 200 on the leader and 503 on the
 * follower, for a proxy that should always show the leader's page.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { DashboardState } from '../meta/dashboard/types'
import { startCluster } from './helpers/cluster'

t.test('a follower says it follows and names the leader', async (t) => {
  const secrets = mkdtempSync(join(tmpdir(), 'berth-ui-'))
  t.teardown(() => rmSync(secrets, { recursive: true, force: true }))
  const token = randomBytes(24).toString('base64url')
  const tokenFile = join(secrets, 'ui-token')
  writeFileSync(tokenFile, token, { mode: 0o600 })
  const c = await startCluster(t, { nodes: 0, metaArgs: ['--ha', '--lease-ttl-ms', '3000', '--ui-listen', '127.0.0.1:0', '--ui-token-file', tokenFile] })
  const second = await c.startMeta({ db: join(c.dir, 'meta2.db') })
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const leaderId = (await m.call('status', {})).metaId
  const metas = [c.meta, second]
  const leader = metas.find((x) => x.ready.metaId === leaderId)!
  const follower = metas.find((x) => x !== leader)!
  t.ok(leader && follower, 'one of the two leads')

  const get = async (ui: unknown, path: string) => fetch(`${String(ui)}${path}`, { headers: { authorization: `Bearer ${token}` } })
  const lead = await get(leader.ready.ui, 'leader')
  t.equal(lead.status, 200, "the leader's /leader: 200")
  await lead.body?.cancel()
  const fol = await get(follower.ready.ui, 'leader')
  t.equal(fol.status, 503, "the follower's /leader: 503")
  await fol.body?.cancel()

  const ls = (await (await get(leader.ready.ui, 'api/state')).json()) as DashboardState
  t.equal(ls.role, 'leader', 'the leader shows live state')
  // replicas report each other every second: the follower names the leader once it heard a report
  let fs: DashboardState | null = null
  for (let i = 0; i < 20; i++) {
    fs = (await (await get(follower.ready.ui, 'api/state')).json()) as DashboardState
    if (fs.role === 'follower' && fs.leader) break
    await new Promise((r) => setTimeout(r, 500))
  }
  t.equal(fs?.role, 'follower', 'the follower says it follows')
  t.equal(fs && 'leader' in fs ? fs.leader : null, leaderId, 'and names the leader')
  t.notOk('nodes' in (fs ?? {}), 'with no live state of its own')
})
