/**
 * Background work of meta, each loop never overlapping itself:
 * - session expiry: releases the open files of sessions whose lease ran out,
 *   freeing inodes that were unlinked while open;
 * - block GC: a block unreferenced for longer than the grace period loses its
 *   rows first (in a transaction that re-checks it is still unreferenced, so a
 *   commit that revived it wins), then its holders get a `delete` command;
 * - re-replication: a block with fewer live replicas than min(R, live nodes)
 *   is copied by one live holder to the live node with most free space.
 */
import type { NatsConnection } from 'nats'
import type { Logger } from '../common/log'
import type { NodeCommand, NodeCommandReplies } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { wantedReplicas } from './cluster-ops'
import { Changes, type MetaEnv } from './context'
import { expireSessions } from './files'
import { publishChanges } from './server'

export interface MaintenanceOptions {
  gcGraceMs: number
  sessionEveryMs?: number
  replicateEveryMs?: number
}

export class Maintenance {
  private readonly timers: NodeJS.Timeout[] = []
  private readonly running = new Set<Promise<void>>()
  private stopped = false

  constructor(
    private readonly nc: NatsConnection,
    private readonly env: MetaEnv,
    private readonly log: Logger,
    private readonly opts: MaintenanceOptions,
  ) {}

  start(): void {
    this.every(this.opts.sessionEveryMs ?? 1000, 'session expiry', () => this.expire())
    this.every(Math.min(5000, Math.max(200, Math.floor(this.opts.gcGraceMs / 4))), 'block gc', () => this.gc())
    this.every(this.opts.replicateEveryMs ?? 5000, 're-replication', () => this.replicate())
  }

  /** Stops the loops and waits for a running pass to finish. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    await Promise.allSettled([...this.running])
  }

  private every(ms: number, what: string, fn: () => Promise<void>): void {
    let busy = false
    const timer = setInterval(() => {
      if (busy || this.stopped) return
      busy = true
      const p = fn()
        .catch((err: unknown) => this.log.warn(`${what} failed`, err))
        .finally(() => {
          busy = false
          this.running.delete(p)
        })
      this.running.add(p)
    }, ms)
    timer.unref()
    this.timers.push(timer)
  }

  private async expire(): Promise<void> {
    const ch = new Changes()
    const n = await expireSessions(this.env, ch)
    if (n) this.log.info(`expired ${n} session(s)`)
    publishChanges(this.nc, this.env.cluster, ch)
  }

  private async command<Op extends NodeCommand['op']>(node: string, cmd: NodeCommand & { op: Op }, timeoutMs: number): Promise<NodeCommandReplies[Op]> {
    return request<NodeCommandReplies[Op]>(this.nc, subjects(this.env.cluster).nodeCmd(node), cmd, { timeoutMs, deadlineMs: timeoutMs })
  }

  async gc(): Promise<void> {
    const cutoff = Date.now() - this.opts.gcGraceMs
    const due = await this.env.db.read.all<{ hash: string }>(
      'SELECT hash FROM blocks WHERE refs <= 0 AND zero_since IS NOT NULL AND zero_since <= ? LIMIT 1000',
      [cutoff],
    )
    if (!due.length) return
    const byNode = new Map<string, string[]>()
    await this.env.db.write(async (tx) => {
      for (const { hash } of due) {
        const still = await tx.get('SELECT 1 AS x FROM blocks WHERE hash = ? AND refs <= 0 AND zero_since <= ?', [hash, cutoff])
        if (!still) continue
        for (const r of await tx.all<{ node_id: string }>('SELECT node_id FROM replicas WHERE hash = ?', [hash])) {
          const list = byNode.get(r.node_id) ?? []
          list.push(hash)
          byNode.set(r.node_id, list)
        }
        await tx.run('DELETE FROM replicas WHERE hash = ?', [hash])
        await tx.run('DELETE FROM blocks WHERE hash = ?', [hash])
      }
    })
    for (const [node, hashes] of byNode) {
      try {
        await this.command(node, { op: 'delete', hashes }, 5000)
      } catch (err) {
        // The node keeps a stray block; harmless (content-addressed) and reclaimable by inventory later.
        this.log.warn(`delete of ${hashes.length} block(s) on node ${node} failed: ${(err as Error).message}`)
      }
    }
  }

  async replicate(): Promise<void> {
    const live = this.env.nodes.live()
    const want = wantedReplicas(this.env, live)
    if (live.length < 2) return
    const liveIds = JSON.stringify(live.map((n) => n.id))
    const rows = await this.env.db.read.all<{ hash: string; holders: string | null }>(
      `SELECT b.hash AS hash,
         (SELECT group_concat(r.node_id, ',') FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) AS holders
       FROM blocks b WHERE b.refs > 0 AND
         (SELECT COUNT(*) FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) < ?
       LIMIT 64`,
      [liveIds, liveIds, want],
    )
    for (const row of rows) {
      if (this.stopped) return
      const holders = row.holders ? row.holders.split(',') : []
      if (!holders.length) {
        this.log.warn(`block ${row.hash} has no live replica`)
        continue
      }
      const target = live
        .filter((n) => n.state === 'up' && !holders.includes(n.id))
        .sort((a, b) => b.capacity - b.used - (a.capacity - a.used))[0]
      if (!target) continue
      try {
        await this.command(holders[0]!, { op: 'replicate', hash: row.hash, to: { id: target.id, url: target.url } }, 60_000)
        await this.env.db.write((tx) => tx.run('INSERT OR IGNORE INTO replicas (hash, node_id) VALUES (?, ?)', [row.hash, target.id]))
      } catch (err) {
        this.log.warn(`replicating ${row.hash} from ${holders[0]} to ${target.id} failed: ${(err as Error).message}`)
      }
    }
  }
}
