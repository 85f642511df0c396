/**
 * Block GC: a block unreferenced and unpinned for longer than the grace period
 * loses its rows, then its copies (conditional delete, meta/node-commands.ts).
 *
 * Phases, in order: pick due blocks (read); ask every holder for a delete
 * token; one transaction re-checks each block (still unreferenced since before
 * the cutoff, still unpinned) and removes its replica and block rows; then the
 * holders trash the copies not PUT since their token. A holder that gave no
 * token (dead, slow) or misses the delete keeps a copy without rows: an
 * orphan, which reconciliation collects later through the same protocol.
 */
import type { Logger } from '../common/log'
import type { GcPlan } from '../common/protocol'
import type { MetaEnv } from './context'
import { deleteCopies, deleteToken, type AskNode } from './node-commands'

const BATCH = 1000

export interface Collected {
  blocks: number
  bytes: number
}

export async function collectGarbage(env: Pick<MetaEnv, 'db'>, ask: AskNode, log: Logger, graceMs: number): Promise<Collected> {
  const cutoff = Date.now() - graceMs
  const due = await env.db.read.all<{ hash: string; node_id: string | null }>(
    `SELECT b.hash AS hash, r.node_id AS node_id FROM
       (SELECT hash FROM blocks WHERE refs <= 0 AND zero_since IS NOT NULL AND zero_since <= ? LIMIT ?) b
       LEFT JOIN replicas r ON r.hash = b.hash`,
    [cutoff, BATCH],
  )
  if (!due.length) return { blocks: 0, bytes: 0 }
  const holders = new Map<string, string[]>() // hash -> nodes
  for (const row of due) {
    const list = holders.get(row.hash) ?? []
    if (row.node_id) list.push(row.node_id)
    holders.set(row.hash, list)
  }
  const tokens = new Map<string, number | null>()
  for (const nodes of holders.values()) for (const n of nodes) if (!tokens.has(n)) tokens.set(n, null)
  await Promise.all([...tokens.keys()].map(async (n) => tokens.set(n, await deleteToken(ask, n))))

  const byNode = new Map<string, string[]>()
  const collected: Collected = { blocks: 0, bytes: 0 }
  await env.db.write(async (tx) => {
    for (const [hash, nodes] of holders) {
      const still = await tx.get<{ size: number | null }>(
        'SELECT size FROM blocks WHERE hash = ? AND refs <= 0 AND zero_since IS NOT NULL AND zero_since <= ? AND NOT EXISTS (SELECT 1 FROM pins WHERE hash = ?)',
        [hash, cutoff, hash],
      )
      if (!still) continue
      await tx.run('DELETE FROM replicas WHERE hash = ?', [hash])
      await tx.run('DELETE FROM blocks WHERE hash = ?', [hash])
      collected.blocks++
      collected.bytes += still.size ?? 0
      for (const n of nodes) {
        if (tokens.get(n) === null) continue
        const list = byNode.get(n) ?? []
        list.push(hash)
        byNode.set(n, list)
      }
    }
  })
  for (const [node, hashes] of byNode) {
    const r = await deleteCopies(ask, log, node, hashes, tokens.get(node)!)
    if (r.kept) log.info(`gc: node ${node} kept ${r.kept} copy(ies) PUT after the delete was decided`)
  }
  return collected
}

/**
 * What the pass above would do now, and what waits (`berth gc`): the same
 * conditions as its selection and its re-check, counted instead of acted on.
 */
export async function gcBacklog(env: Pick<MetaEnv, 'db'>, graceMs: number, orphanAgeMs: number): Promise<GcPlan> {
  const cutoff = Date.now() - graceMs
  // a scan of every unreferenced block: off meta's thread (meta/scan-reader.ts)
  const rows = await env.db.scan.all<{ kind: 'due' | 'grace' | 'pinned'; blocks: number; bytes: number; oldest: number | null }>(
    `SELECT CASE WHEN EXISTS (SELECT 1 FROM pins p WHERE p.hash = b.hash) THEN 'pinned'
                 WHEN b.zero_since IS NOT NULL AND b.zero_since <= ? THEN 'due' ELSE 'grace' END AS kind,
            COUNT(*) AS blocks, COALESCE(SUM(b.size), 0) AS bytes, MIN(b.zero_since) AS oldest
     FROM blocks b WHERE b.refs <= 0 GROUP BY kind`,
    [cutoff],
  )
  const of = (kind: string) => rows.find((r) => r.kind === kind)
  const part = (kind: string) => ({ blocks: of(kind)?.blocks ?? 0, bytes: of(kind)?.bytes ?? 0 })
  const grace = of('grace')
  return {
    graceMs,
    orphanAgeMs,
    due: part('due'),
    inGrace: { ...part('grace'), nextDueAt: grace?.oldest != null ? grace.oldest + graceMs : null },
    pinned: part('pinned'),
  }
}
