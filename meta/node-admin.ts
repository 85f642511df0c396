/**
 * Operator control of data nodes (`berth node drain|undrain|decommission|forget`).
 *
 *   up ──drain──> draining ──(no rows left)──> drained ──decommission──> decommissioned
 *        <─undrain─┘
 *   dead ──forget (every block has min(R, live) copies elsewhere)──> forgotten
 *
 * A draining node takes no placements (meta sends it `drain`, and again
 * whenever its heartbeat does not say `draining`), and repair (meta/repair.ts)
 * counts none of its copies: each of its blocks is copied to other nodes, then
 * its copy is removed through the conditional delete protocol, so a block
 * never has fewer than min(R, homes) counted copies while it moves.
 * Decommissioned and forgotten nodes are no longer listed and their
 * heartbeats are ignored; the state is kept in node_admin across restarts.
 */
import { fsError } from '../common/errors'
import type { DrainProgress, MetaParsed, MetaReplies, NodeAdminState } from '../common/protocol'
import type { MetaEnv } from './context'
import { enqueue, enqueueNode } from './repair-queue'
import type { Conn } from './sqlite'
import { clockMs } from './time'

async function rowsOn(c: Conn, node: string): Promise<number> {
  return (await c.get<{ n: number }>('SELECT COUNT(*) AS n FROM replicas WHERE node_id = ?', [node]))?.n ?? 0
}

async function setState(env: MetaEnv, node: string, state: NodeAdminState | null, also?: (tx: Conn) => Promise<void>): Promise<void> {
  await env.db.write(async (tx) => {
    if (state) await tx.run('INSERT INTO node_admin (id, state, since) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, since = excluded.since', [node, state, clockMs(tx)])
    else await tx.run('DELETE FROM node_admin WHERE id = ?', [node])
    if (also) await also(tx)
  })
  env.nodes.mark(node, state)
}

/** Loads the operators' states into the node table (meta start). */
export async function loadNodeAdmin(env: MetaEnv): Promise<void> {
  env.nodes.resetAdmin(await env.db.read.all<{ id: string; state: NodeAdminState }>('SELECT id, state FROM node_admin'))
}

/** Tells live draining nodes whose heartbeat disagrees to drain (after a node restart). */
export async function enforceDrains(env: MetaEnv): Promise<void> {
  for (const n of env.nodes.live()) {
    if (n.admin === 'draining' && n.state !== 'draining') await env.askNode?.(n.id, { op: 'drain', on: true }, 5000).catch(() => undefined)
  }
}

export async function nodeAdmin(env: MetaEnv, b: MetaParsed<'nodeAdmin'>): Promise<MetaReplies['nodeAdmin']> {
  const node = env.nodes.get(b.node)
  const rows = await rowsOn(env.db.read, b.node)
  if (!node && !rows && !env.nodes.adminOf(b.node)) throw fsError('ENOENT', `no node ${b.node}`)
  switch (b.action) {
    case 'drain': {
      if (!node?.alive) throw fsError('EINVAL', `node ${b.node} is not live; a dead node is forgotten, not drained`)
      await setState(env, b.node, 'draining', (tx) => enqueueNode(tx, b.node).then(() => undefined))
      await env.askNode?.(b.node, { op: 'drain', on: true }, 5000)
      break
    }
    case 'undrain': {
      if (env.nodes.adminOf(b.node) !== 'draining') throw fsError('EINVAL', `node ${b.node} is not draining`)
      await setState(env, b.node, null)
      if (node?.alive) await env.askNode?.(b.node, { op: 'drain', on: false }, 5000)
      break
    }
    case 'decommission': {
      if (env.nodes.adminOf(b.node) !== 'draining') throw fsError('EINVAL', `node ${b.node} is not draining: drain it first`)
      if (rows) throw fsError('EBUSY', `node ${b.node} still holds ${rows} block(s); wait until drained`)
      await setState(env, b.node, 'decommissioned')
      break
    }
    case 'forget': {
      if (node?.alive) throw fsError('EBUSY', `node ${b.node} is live: drain and decommission it instead`)
      // every block it held must have its copies elsewhere first
      const want = Math.max(1, Math.min(env.replicas, env.nodes.homes().length))
      const homes = JSON.stringify(env.nodes.homes().map((n) => n.id))
      const short = await env.db.read.all<{ hash: string }>(
        `SELECT r.hash AS hash FROM replicas r JOIN blocks b ON b.hash = r.hash WHERE r.node_id = ? AND b.refs > 0 AND
           (SELECT COUNT(*) FROM replicas o WHERE o.hash = r.hash AND o.node_id IN (SELECT value FROM json_each(?))) < ? LIMIT 1000`,
        [b.node, homes, want],
      )
      if (short.length) {
        await env.db.write((tx) => enqueue(tx, short.map((s) => s.hash)))
        throw fsError('EBUSY', `${short.length}${short.length === 1000 ? '+' : ''} block(s) of node ${b.node} are not re-protected yet (queued for repair); try again later`)
      }
      await setState(env, b.node, 'forgotten', (tx) => tx.run('DELETE FROM replicas WHERE node_id = ?', [b.node]).then(() => undefined))
      break
    }
  }
  return { node: b.node, admin: env.nodes.adminOf(b.node) ?? null, blocks: await rowsOn(env.db.read, b.node) }
}

/** What is left on each draining node (O(its blocks), through replicas_node). */
export async function drainProgress(env: MetaEnv, rate: number): Promise<DrainProgress[]> {
  const out: DrainProgress[] = []
  for (const n of env.nodes.list()) {
    if (n.admin !== 'draining') continue
    const r = await env.db.read.get<{ blocks: number; bytes: number }>(
      'SELECT COUNT(*) AS blocks, COALESCE(SUM(b.size), 0) AS bytes FROM replicas r LEFT JOIN blocks b ON b.hash = r.hash WHERE r.node_id = ?',
      [n.id],
    )
    const blocks = r?.blocks ?? 0
    const bytes = r?.bytes ?? 0
    out.push({ node: n.id, blocks, bytes, etaS: blocks === 0 ? 0 : rate > 0 ? bytes / rate : null })
  }
  return out
}
