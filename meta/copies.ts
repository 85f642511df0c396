/**
 * Reports about individual block copies.
 *
 * `badCopy`: a reader (or the node's own scrub) found a copy bad. The replica
 * row goes at once, so no reader is sent there again and the block counts as
 * under-replicated; the copy becomes a suspect, which the repair loop has the
 * node re-hash (and trash) before it copies the block from a good replica
 * (meta/repair.ts). The handler only writes rows; node commands run in the
 * background loops.
 *
 * `inventory`: one page of a node's inventory with meta's view of each copy,
 * for `berth fsck` (clients may not command nodes themselves).
 */
import { fsError } from '../common/errors'
import type { MetaParsed, MetaReplies } from '../common/protocol'
import type { MetaEnv } from './context'
import { copyStates } from './reconcile'
import { enqueue } from './repair-queue'
import { clockMs } from './time'

export async function badCopy(env: MetaEnv, b: MetaParsed<'badCopy'>): Promise<MetaReplies['badCopy']> {
  await env.db.write(async (tx) => {
    await tx.run('DELETE FROM replicas WHERE hash = ? AND node_id = ?', [b.hash, b.node])
    await tx.run(
      'INSERT INTO suspects (hash, node_id, reason, since) VALUES (?, ?, ?, ?) ON CONFLICT (hash, node_id) DO UPDATE SET reason = excluded.reason, since = excluded.since',
      [b.hash, b.node, b.reason, clockMs(tx)],
    )
    await enqueue(tx, [b.hash])
  })
  return {}
}

export async function inventory(env: MetaEnv, b: MetaParsed<'inventory'>): Promise<MetaReplies['inventory']> {
  if (!env.askNode) throw fsError('ENOSYS', 'this meta cannot reach data nodes')
  if (!env.nodes.live().some((n) => n.id === b.node)) throw fsError('ENOENT', `node ${b.node} is not live`)
  const page = await env.askNode(b.node, { op: 'inventory', after: b.after, limit: b.limit }, 30_000)
  const entries = []
  const states = await copyStates(env.db.read, b.node, page.entries.map((e) => e.hash))
  for (const e of page.entries) entries.push({ ...e, state: states.get(e.hash) ?? 'orphan' })
  return { entries, more: page.more }
}
