/**
 * Reports about individual block copies: a reader (or a node's scrub) found a
 * copy bad. The replica row goes at once, so no reader is sent there again and
 * the block counts as under-replicated until repair copies it from a good one.
 */
import type { MetaParsed, MetaReplies } from '../common/protocol'
import type { MetaEnv } from './context'

export async function badCopy(env: MetaEnv, b: MetaParsed<'badCopy'>): Promise<MetaReplies['badCopy']> {
  await env.db.write((tx) => tx.run('DELETE FROM replicas WHERE hash = ? AND node_id = ?', [b.hash, b.node]))
  return {}
}
