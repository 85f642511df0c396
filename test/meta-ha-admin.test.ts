/**
 * Replicated meta and the operators' node states (docs/meta.md#replication,
 * "Background work and operator commands"): a drain asked of the leader is a
 * log entry like any mutation, and a follower that takes over reloads it from
 * node_admin, so the node stays draining under the new leader.
 */
import t from 'tap'
import { startCluster } from './helpers/cluster'

const HA = ['--ha', '--lease-ttl-ms', '3000']

t.test('a drain survives the change of leader', async (t) => {
  const c = await startCluster(t, { nodes: 1, metaArgs: HA })
  const second = await c.startMeta({ db: `${c.dir}/meta2.db` })
  const m = await c.metaClient({ deadlineMs: 30_000 })
  const nodeId = String(c.nodes[0]!.ready.id)
  // the leader learns the node from its heartbeats
  for (let i = 0; i < 120 && !(await m.call('status', {})).nodes.some((n) => n.id === nodeId && n.alive); i++) await new Promise((r) => setTimeout(r, 500))
  const r = await m.call('nodeAdmin', { node: nodeId, action: 'drain' })
  t.equal(r.admin, 'draining', 'the leader drains the node')
  const leaderId = (await m.call('status', {})).metaId
  const [leader, follower] = leaderId === c.meta.ready.metaId ? [c.meta, second] : [second, c.meta]
  await leader.kill()
  let admin: string | undefined
  for (let i = 0; i < 240; i++) {
    const st = await m.call('status', {})
    admin = st.nodes.find((n) => n.id === nodeId)?.admin
    if (st.metaId === follower.ready.metaId && admin) break
    await new Promise((r) => setTimeout(r, 500))
  }
  t.equal((await m.call('status', {})).metaId, follower.ready.metaId, 'the follower leads')
  t.equal(admin, 'draining', 'and the node is still draining under it')
  t.equal((await m.call('nodeAdmin', { node: nodeId, action: 'undrain' })).admin, null, 'the new leader can undrain it')
})
