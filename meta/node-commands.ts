/**
 * Meta's side of `<cluster>.node.<id>.cmd`, and the one way meta removes
 * copies from nodes: a conditional delete (docs/data-node.md#block-lifecycle).
 *
 * Every deleter (GC, orphan collection, trimming extra copies) follows the
 * same three steps, in this order:
 *   1. token: ask the node for its clock (`clock`, or the `now` of an
 *      inventory page);
 *   2. decide: one meta transaction re-checks that the block is unpinned (and
 *      whatever the deleter requires) and removes the rows;
 *   3. delete `{hashes, putBefore: token}`: the node trashes only copies not
 *      PUT since the token.
 * A client pins before it PUTs. A pin made before step 2 makes step 2 skip the
 * block; a pin made after step 2 precedes a PUT that touches the copy after
 * the token, so step 3 keeps it. Either way the upload survives.
 */
import type { NatsConnection } from 'nats'
import type { Logger } from '../common/log'
import type { NodeCommand, NodeCommandReplies } from '../common/protocol'
import { aborted, deadPeerSignal } from '../common/dead-peer-signal'
import { HEARTBEAT_MS, MAX_PAGE } from '../common/protocol'
import { request, subjects } from '../common/wire'

export type AskNode = <Op extends NodeCommand['op']>(node: string, cmd: NodeCommand & { op: Op }, timeoutMs: number) => Promise<NodeCommandReplies[Op]>

/**
 * Reconciliation and repair hold one turn while they ask a node
 * (meta/maintenance.ts), so an ask must not wait long for a node that is gone:
 * - not subscribed (killed, restarting): given up after one heartbeat interval
 *   instead of the whole timeout (a node killed during a reconcile page held
 *   up the repair of its own blocks for 30 s);
 * - subscribed but silent (stopped, frozen: NATS keeps its subscription while
 *   it keeps sending the node messages): given up once `isDead` says its heartbeats
 *   stopped (NODE_DEAD_MS), checked every DEAD_CHECK_MS while the ask is
 *   in flight, instead of waiting out a 60 s replicate. A replicate's target
 *   likewise: the source's PUT to a stopped node waits out its own 60 s.
 *   Repair works from the live set as its pass began, so it may ask a node
 *   already dead: that ask ends at the first check.
 * What a node given up on still does is safe: a late copy is an orphan that
 * reconciliation adopts, a late delete follows rows already removed.
 */
export function nodeAsker(nc: NatsConnection, cluster: string, isDead?: (node: string) => boolean): AskNode {
  const s = subjects(cluster)
  // the reply type follows the op: the node answers each op with its reply shape
  const ask = async (node: string, cmd: NodeCommand, timeoutMs: number): Promise<unknown> => {
    const asked = request(nc, s.nodeCmd(node), cmd, { timeoutMs, deadlineMs: timeoutMs, noRespondersMs: Math.min(timeoutMs, HEARTBEAT_MS) })
    if (!isDead) return asked
    const watch = deadPeerSignal(cmd.op === 'replicate' ? [node, cmd.to.id] : [node], isDead, `${s.nodeCmd(node)} (${cmd.op})`)
    asked.catch(() => undefined) // settles unobserved once given up on
    try {
      return await Promise.race([asked, aborted(watch.signal)])
    } finally {
      watch.stop()
    }
  }
  return ask as AskNode
}

/** Step 1: the node's clock, or null when it does not answer (then nothing is decided for it). */
export async function deleteToken(ask: AskNode, node: string): Promise<number | null> {
  try {
    return (await ask(node, { op: 'clock' }, 5000)).now
  } catch {
    return null
  }
}

/**
 * Step 3. Failures are logged, not thrown: a copy left behind is an orphan
 * (no row) and reconciliation collects it later.
 */
export async function deleteCopies(ask: AskNode, log: Logger, node: string, hashes: string[], putBefore: number): Promise<{ deleted: number; kept: number }> {
  let deleted = 0
  let kept = 0
  for (let i = 0; i < hashes.length; i += MAX_PAGE) {
    const batch = hashes.slice(i, i + MAX_PAGE)
    try {
      const r = await ask(node, { op: 'delete', hashes: batch, putBefore }, 15_000)
      deleted += r.deleted
      kept += r.kept.length
    } catch (err) {
      log.warn(`delete of ${batch.length} block(s) on node ${node} failed (left as orphans): ${(err as Error).message}`)
    }
  }
  return { deleted, kept }
}
