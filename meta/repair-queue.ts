/**
 * The repair queue: blocks whose live copy count may differ from R.
 *
 * Nothing finds such blocks by scanning. Each event that can change a block's
 * copy count queues the block, in the transaction that records the event:
 * - a node declared dead or back (meta/live-set.ts): all of its blocks, listed
 *   through the replicas_node index;
 * - a copy reported bad (badCopy) or missing (reconciliation);
 * - a commit with fewer copies than R, or one that leaves more than R listed.
 * The repair loop (meta/repair.ts) takes due entries oldest first and removes
 * an entry only if it was not queued again meanwhile (`since` unchanged).
 */
import type { Conn } from './sqlite'
import { clockMs } from './time'

export interface QueueEntry {
  hash: string
  since: number
}

/** Queues blocks (again); a queued block becomes due now and unparked. */
export async function enqueue(tx: Conn, hashes: Iterable<string>, now = clockMs(tx)): Promise<void> {
  for (const h of hashes) {
    await tx.run('INSERT INTO repair_queue (hash, since, parked) VALUES (?, ?, 0) ON CONFLICT (hash) DO UPDATE SET since = excluded.since, parked = 0', [h, now])
  }
}

/** Queues every block with a row on `node`; returns how many. */
export async function enqueueNode(tx: Conn, node: string, now = clockMs(tx)): Promise<number> {
  const r = await tx.run(
    `INSERT INTO repair_queue (hash, since, parked) SELECT hash, ?, 0 FROM replicas WHERE node_id = ?
     ON CONFLICT (hash) DO UPDATE SET since = excluded.since, parked = 0`,
    [now, node],
  )
  return r.changes
}

/** Parked entries become due again (a node joined: more copies may fit now). */
export async function unparkAll(tx: Conn): Promise<void> {
  await tx.run('UPDATE repair_queue SET parked = 0 WHERE parked = 1')
}

export async function due(c: Conn, limit: number): Promise<QueueEntry[]> {
  return c.all<QueueEntry>('SELECT hash, since FROM repair_queue WHERE parked = 0 ORDER BY since LIMIT ?', [limit])
}

/** Done with the block, unless an event queued it again since it was read. */
export async function dequeue(tx: Conn, e: QueueEntry): Promise<void> {
  await tx.run('DELETE FROM repair_queue WHERE hash = ? AND since = ?', [e.hash, e.since])
}

/** Below R and nothing to do until a node joins. */
export async function park(tx: Conn, e: QueueEntry): Promise<void> {
  await tx.run('UPDATE repair_queue SET parked = 1 WHERE hash = ? AND since = ?', [e.hash, e.since])
}

/** Could not be handled now (no source or target answered): back of the line. */
export async function retryLater(tx: Conn, e: QueueEntry, now = clockMs(tx)): Promise<void> {
  await tx.run('UPDATE repair_queue SET since = ? WHERE hash = ? AND since = ?', [now, e.hash, e.since])
}

/** Entries not yet handled (for status); O(queue), not O(blocks). */
export async function queued(c: Conn): Promise<{ due: number; parked: number; bytes: number }> {
  const r = await c.get<{ due: number; parked: number; bytes: number }>(
    `SELECT COALESCE(SUM(q.parked = 0), 0) AS due, COALESCE(SUM(q.parked), 0) AS parked, COALESCE(SUM(CASE WHEN q.parked = 0 THEN b.size END), 0) AS bytes
     FROM repair_queue q LEFT JOIN blocks b ON b.hash = q.hash`,
  )
  return r ?? { due: 0, parked: 0, bytes: 0 }
}

/**
 * Node ids that have replica rows, by skip scan over replicas_node: one index
 * seek per node, not one step per row. Used once after meta starts to queue
 * the blocks of nodes that died while no meta was watching.
 */
export async function nodesWithRows(c: Conn): Promise<string[]> {
  const rows = await c.all<{ id: string }>(
    `WITH RECURSIVE n(id) AS (
       SELECT (SELECT MIN(node_id) FROM replicas)
       UNION ALL
       SELECT (SELECT MIN(node_id) FROM replicas WHERE node_id > n.id) FROM n WHERE n.id IS NOT NULL
     ) SELECT id FROM n WHERE id IS NOT NULL`,
  )
  return rows.map((r) => r.id)
}
