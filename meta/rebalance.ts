/**
 * Rebalance: when usage drifts (a node joined, a node filled up), blocks move
 * from the fullest node to the emptiest until every node's stored bytes are
 * within `threshold` (10%) of the mean over nodes that take copies.
 *
 * A move is: copy to the target (rows added after the target reported the
 * copy durable), then queue the block for repair, whose trim removes the
 * extra copy from the fullest holder through the conditional delete protocol
 * (meta/repair.ts). A block therefore never has fewer than R counted copies
 * while it moves. It runs only when the repair queue has nothing due, moves at
 * most `batch` blocks (and the bytes that close the gap) per pass, and then
 * waits two heartbeats so the next pass sees the usage the moves caused.
 * Copies share repair's byte rate (--repair-mbps).
 */
import type { Logger } from '../common/log'
import { HEARTBEAT_MS, type NodeInfo } from '../common/protocol'
import type { MetaEnv, RebalancePolicy } from './context'
import type { LifecycleStats } from './lifecycle-stats'
import type { AskNode } from './node-commands'
import type { RateLimit } from './rate-limit'
import { enqueue } from './repair-queue'

export interface RebalanceOptions {
  limit: RateLimit
  batch?: number
}

/** 10% of the mean, and at least 64 MiB to move (see RebalancePolicy). */
export const DEFAULT_REBALANCE: RebalancePolicy = { threshold: 0.1, minBytes: 64 * 1024 * 1024 }

/** The node to empty and the node to fill, or null when usage is even enough. */
export function imbalance(nodes: NodeInfo[], policy: RebalancePolicy = DEFAULT_REBALANCE): { from: NodeInfo; to: NodeInfo; bytes: number } | null {
  const { threshold, minBytes } = policy
  if (nodes.length < 2) return null
  const mean = nodes.reduce((s, n) => s + n.used, 0) / nodes.length
  if (mean <= 0) return null
  const sorted = [...nodes].sort((a, b) => a.used - b.used)
  const to = sorted[0]!
  const from = sorted[sorted.length - 1]!
  if (from.used <= mean * (1 + threshold) && to.used >= mean * (1 - threshold)) return null
  const bytes = Math.min(from.used - mean, mean - to.used)
  // under the floor both sides are within a few chunks of the mean: moving is churn
  if (bytes < minBytes) return null
  return { from, to, bytes }
}

export class Rebalance {
  private quietUntil = 0

  constructor(
    private readonly env: MetaEnv,
    private readonly ask: AskNode,
    private readonly log: Logger,
    private readonly stats: LifecycleStats,
    private readonly opts: RebalanceOptions,
  ) {}

  async pass(stopped: () => boolean): Promise<void> {
    if (Date.now() < this.quietUntil) return
    const homes = this.env.nodes.homes().filter((n) => n.state === 'up' || n.state === 'full')
    const gap = imbalance(homes, this.env.rebalance)
    if (!gap || gap.to.state !== 'up') return
    const zoneOf = new Map(homes.map((n) => [n.id, n.zone]))
    // blocks on `from` not on `to`, unpinned (an upload in flight decides its own copies)
    const rows = await this.env.db.read.all<{ hash: string; size: number; holders: string }>(
      `SELECT r.hash AS hash, b.size AS size, (SELECT group_concat(o.node_id, ',') FROM replicas o WHERE o.hash = r.hash) AS holders
       FROM replicas r JOIN blocks b ON b.hash = r.hash AND b.refs > 0
       WHERE r.node_id = ? AND NOT EXISTS (SELECT 1 FROM replicas t WHERE t.hash = r.hash AND t.node_id = ?)
         AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.hash = r.hash)
       LIMIT ?`,
      [gap.from.id, gap.to.id, (this.opts.batch ?? 32) * 4],
    )
    let moved = 0
    let count = 0
    for (const row of rows) {
      if (stopped() || moved >= gap.bytes || count >= (this.opts.batch ?? 32)) break
      // keep zones apart: do not bring a second copy into a zone unless the one leaving is from it
      const others = row.holders.split(',').filter((h) => h !== gap.from.id)
      const toZone = zoneOf.get(gap.to.id)
      if (toZone !== undefined && toZone !== zoneOf.get(gap.from.id) && others.some((h) => zoneOf.get(h) === toZone)) continue
      await this.opts.limit.take(row.size)
      try {
        await this.ask(gap.from.id, { op: 'replicate', hash: row.hash, to: { id: gap.to.id, url: gap.to.url } }, 60_000)
      } catch (err) {
        this.log.warn(`rebalance: ${row.hash} ${gap.from.id} -> ${gap.to.id} failed: ${(err as Error).message}`)
        break
      }
      await this.env.db.write(async (tx) => {
        await tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?) ON CONFLICT (hash, node_id) DO UPDATE SET since = excluded.since', [row.hash, gap.to.id, Date.now()])
        await enqueue(tx, [row.hash])
      })
      this.env.repairMeter?.add(row.size)
      this.stats.rebalanced++
      moved += row.size
      count++
    }
    if (count) {
      this.log.info(`rebalance: ${count} block(s) copied ${gap.from.id} -> ${gap.to.id}; extra copies trimmed by repair`)
      this.quietUntil = Date.now() + 2 * HEARTBEAT_MS
    }
  }
}
