/**
 * Repair: brings every referenced block back to R live copies, and no more.
 *
 * One pass, in order:
 * 1. suspects (copies a reader reported bad; their rows are already gone):
 *    the node re-hashes the copy and trashes it if it is bad, so a later
 *    repair onto that node writes a good copy instead of finding the bad
 *    one "already stored";
 * 2. under-replicated blocks (fewer live rows than min(R, live nodes)): a
 *    live holder copies the block to the live `up` node with most free space
 *    that holds no row and no suspect copy; the row is added after the
 *    target reported it durable;
 * 3. over-replicated blocks (more live rows than R, e.g. a node came back
 *    after its blocks were repaired elsewhere), unpinned: the copy on the
 *    fullest holder is removed through the conditional delete protocol.
 */
import type { Logger } from '../common/log'
import { wantedReplicas } from './cluster-ops'
import type { MetaEnv } from './context'
import type { LifecycleStats } from './lifecycle-stats'
import { deleteCopies, deleteToken, type AskNode } from './node-commands'

const PAGE = 64

export class Repair {
  constructor(
    private readonly env: MetaEnv,
    private readonly ask: AskNode,
    private readonly log: Logger,
    private readonly stats: LifecycleStats,
  ) {}

  async pass(stopped: () => boolean): Promise<void> {
    await this.verifySuspects(stopped)
    await this.copyMissing(stopped)
    await this.trimExtra(stopped)
  }

  private liveIds(): string {
    return JSON.stringify(this.env.nodes.live().map((n) => n.id))
  }

  private async verifySuspects(stopped: () => boolean): Promise<void> {
    const live = new Set(this.env.nodes.live().map((n) => n.id))
    const rows = await this.env.db.read.all<{ hash: string; node_id: string }>('SELECT hash, node_id FROM suspects ORDER BY since LIMIT ?', [PAGE])
    for (const s of rows) {
      if (stopped()) return
      if (!live.has(s.node_id)) continue // asked again when it is back
      try {
        const r = await this.ask(s.node_id, { op: 'verify', hashes: [s.hash] }, 60_000)
        if (r.bad.length) this.log.warn(`repair: node ${s.node_id}: copy of ${s.hash} was corrupt; moved to trash`)
      } catch (err) {
        this.log.warn(`repair: verify of ${s.hash} on ${s.node_id} failed: ${(err as Error).message}`)
        continue
      }
      await this.env.db.write((tx) => tx.run('DELETE FROM suspects WHERE hash = ? AND node_id = ?', [s.hash, s.node_id]))
    }
  }

  private async copyMissing(stopped: () => boolean): Promise<void> {
    const live = this.env.nodes.live()
    const want = wantedReplicas(this.env, live)
    if (live.length < 2) return
    const ids = this.liveIds()
    const rows = await this.env.db.read.all<{ hash: string; holders: string | null; suspects: string | null }>(
      `SELECT b.hash AS hash,
         (SELECT group_concat(r.node_id, ',') FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) AS holders,
         (SELECT group_concat(s.node_id, ',') FROM suspects s WHERE s.hash = b.hash) AS suspects
       FROM blocks b WHERE b.refs > 0 AND
         (SELECT COUNT(*) FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) < ?
       LIMIT ?`,
      [ids, ids, want, PAGE],
    )
    for (const row of rows) {
      if (stopped()) return
      const holders = row.holders ? row.holders.split(',') : []
      const avoid = new Set([...holders, ...(row.suspects ? row.suspects.split(',') : [])])
      if (!holders.length) {
        this.log.warn(`block ${row.hash} has no live replica`)
        continue
      }
      const target = live.filter((n) => n.state === 'up' && !avoid.has(n.id)).sort((a, b) => b.capacity - b.used - (a.capacity - a.used))[0]
      if (!target) continue
      let copied = false
      for (const source of holders) {
        try {
          await this.ask(source, { op: 'replicate', hash: row.hash, to: { id: target.id, url: target.url } }, 60_000)
          copied = true
          break
        } catch (err) {
          this.log.warn(`replicating ${row.hash} from ${source} to ${target.id} failed: ${(err as Error).message}`)
        }
      }
      if (!copied) continue
      await this.env.db.write((tx) =>
        tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?) ON CONFLICT (hash, node_id) DO UPDATE SET since = excluded.since', [row.hash, target.id, Date.now()]),
      )
      this.stats.repaired++
    }
  }

  private async trimExtra(stopped: () => boolean): Promise<void> {
    const live = this.env.nodes.live()
    const R = this.env.replicas
    if (live.length <= R) return
    const fullness = new Map(live.map((n) => [n.id, n.capacity > 0 ? n.used / n.capacity : 1]))
    const ids = this.liveIds()
    const rows = await this.env.db.read.all<{ hash: string; holders: string }>(
      `SELECT b.hash AS hash,
         (SELECT group_concat(r.node_id, ',') FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) AS holders
       FROM blocks b WHERE b.refs > 0 AND NOT EXISTS (SELECT 1 FROM pins p WHERE p.hash = b.hash) AND
         (SELECT COUNT(*) FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) > ?
       LIMIT ?`,
      [ids, ids, R, PAGE],
    )
    for (const row of rows) {
      if (stopped()) return
      const holders = row.holders.split(',').sort((a, b) => (fullness.get(b) ?? 0) - (fullness.get(a) ?? 0) || a.localeCompare(b))
      const victims = holders.slice(0, holders.length - R)
      // the copies that stay must really be there: a row reconciliation has
      // not yet found stale must not cost a real copy
      const keepers = holders.slice(holders.length - R)
      const confirmed = await Promise.all(
        keepers.map((n) => this.ask(n, { op: 'has', hashes: [row.hash] }, 5000).then((r) => r.present.includes(row.hash), () => false)),
      )
      if (!confirmed.every(Boolean)) continue
      for (const victim of victims) {
        const token = await deleteToken(this.ask, victim)
        if (token === null) continue
        const removed = await this.env.db.write(async (tx) => {
          const still = await tx.get<{ n: number }>(
            `SELECT (SELECT COUNT(*) FROM replicas r WHERE r.hash = ? AND r.node_id IN (SELECT value FROM json_each(?))) AS n
             WHERE NOT EXISTS (SELECT 1 FROM pins WHERE hash = ?) AND EXISTS (SELECT 1 FROM replicas WHERE hash = ? AND node_id = ?)`,
            [row.hash, ids, row.hash, row.hash, victim],
          )
          if (!still || still.n <= R) return false
          await tx.run('DELETE FROM replicas WHERE hash = ? AND node_id = ?', [row.hash, victim])
          return true
        })
        if (!removed) continue
        const r = await deleteCopies(this.ask, this.log, victim, [row.hash], token)
        this.stats.trimmed += r.deleted
      }
    }
  }
}
