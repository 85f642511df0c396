/**
 * Reconciliation: makes meta's replica table match what the nodes really hold.
 *
 * Each node's inventory is paged in hash order from a cursor kept per node
 * (bounded memory: one page at a time; a failed page is retried from the same
 * cursor next time). For the hash range a page covers, in one transaction:
 * - a replica row whose copy is not in the page is removed, unless meta
 *   learnt of the copy after the page was asked for (`replicas.since`), so a
 *   commit racing the listing never loses its row; repair then copies the
 *   block again from a good copy;
 * - a copy of a referenced block without a row gets its row (a node that came
 *   back, a repair whose row was lost);
 * - a copy of a block meta does not know at all is an orphan (an upload never
 *   committed: client crash, replaced upload, failed delete). Orphans idle for
 *   longer than the orphan age are deleted through the conditional delete
 *   protocol with the page's clock as token (meta/node-commands.ts): a copy
 *   PUT after the page was listed is kept. Pinned or unreferenced-in-grace
 *   copies are left to their commit or to GC.
 */
import type { Logger } from '../common/log'
import type { InventoryEntry } from '../common/protocol'
import type { MetaEnv } from './context'
import type { LifecycleStats } from './lifecycle-stats'
import { deleteCopies, type AskNode } from './node-commands'
import { enqueue } from './repair-queue'
import type { Conn } from './sqlite'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Sorts after every hex digit: the upper bound of a node's last page. */
const END = 'g'

export interface ReconcileOptions {
  orphanAgeMs: number
  pageSize: number
  /**
   * Share of one core meta may spend reconciling (percent): after each page
   * it rests for the CPU time the page cost, times 100 / pct. A sweep over
   * a large cluster is spread out instead of running back to back (HDFS sends
   * full block reports every 6 h for the same reason): reconciliation is the
   * safety net, events (commit, badCopy, node death) do the immediate work.
   */
  cpuPct?: number
}

export type CopyState = 'listed' | 'unlisted' | 'pinned' | 'zero' | 'orphan'

/**
 * Meta's view of many copies on `node` in one query: a page of an inventory
 * costs one round trip to SQLite, not one per copy (reconciliation reads every
 * copy of the cluster, so this is most of its cost).
 */
export async function copyStates(c: Conn, node: string, hashes: string[]): Promise<Map<string, CopyState>> {
  const rows = await c.all<{ hash: string; refs: number | null; pinned: number; listed: number }>(
    `SELECT j.value AS hash, b.refs AS refs,
       b.refs IS NOT NULL AND EXISTS (SELECT 1 FROM pins p WHERE p.hash = j.value) AS pinned,
       b.refs IS NOT NULL AND EXISTS (SELECT 1 FROM replicas r WHERE r.hash = j.value AND r.node_id = ?) AS listed
     FROM json_each(?) j LEFT JOIN blocks b ON b.hash = j.value`,
    [node, JSON.stringify(hashes)],
  )
  const states = new Map<string, CopyState>()
  for (const b of rows) {
    states.set(b.hash, b.refs === null ? 'orphan' : b.listed ? 'listed' : b.refs > 0 ? 'unlisted' : b.pinned ? 'pinned' : 'zero')
  }
  return states
}

export class Reconciler {
  private readonly cursors = new Map<string, string>()

  constructor(
    private readonly env: MetaEnv,
    private readonly ask: AskNode,
    private readonly log: Logger,
    private readonly stats: LifecycleStats,
    private readonly opts: ReconcileOptions,
  ) {}

  /** The next pass starts every node's inventory from its beginning. */
  restart(): void {
    this.cursors.clear()
  }

  /**
   * Goes through every live node's inventory from its cursor to the end, paced
   * (cpuPct). Each page runs inside `turn` (meta/maintenance.ts: pages and
   * repair passes take turns), the rest between pages outside it.
   */
  async pass(stopped: () => boolean, turn: <T>(page: () => Promise<T>) => Promise<T> = (page) => page()): Promise<void> {
    const pct = Math.min(100, Math.max(0.01, this.opts.cpuPct ?? 100))
    for (const node of this.env.nodes.live()) {
      try {
        for (;;) {
          if (stopped()) return
          const cpu = process.cpuUsage()
          const more = await turn(() => this.page(node.id))
          if (!more) break
          // CPU, not wall time: a page waits on the node and on SQLite's
          // threads, and a loaded machine stretches that wait (process CPU
          // counts SQLite's threads too)
          const used = process.cpuUsage(cpu)
          const rest = ((used.user + used.system) / 1000) * (100 / pct)
          // in slices, so a stopping meta does not wait out a long rest
          for (let until = performance.now() + rest; !stopped() && performance.now() < until; ) await sleep(Math.min(250, until - performance.now()))
        }
      } catch (err) {
        this.log.warn(`reconcile: node ${node.id}: ${(err as Error).message} (resumes from its cursor)`)
      }
    }
  }

  /** Reconciles one page of `node`; true when more pages follow. */
  async page(node: string): Promise<boolean> {
    const after = this.cursors.get(node) ?? ''
    const askedAt = Date.now()
    const page = await this.ask(node, { op: 'inventory', after, limit: this.opts.pageSize }, 30_000)
    const last = page.entries[page.entries.length - 1]
    const upTo = page.more && last ? last.hash : END
    const orphans = await this.env.db.write((tx) => this.apply(tx, node, after, upTo, askedAt, page.entries))
    if (orphans.length) {
      const r = await deleteCopies(this.ask, this.log, node, orphans, page.now)
      this.stats.orphansDeleted += r.deleted
      this.stats.orphansKept += r.kept
      if (r.deleted) this.log.info(`reconcile: node ${node}: ${r.deleted} orphan copy(ies) moved to trash`)
    }
    if (page.more && last) this.cursors.set(node, last.hash)
    else {
      this.cursors.delete(node)
      this.stats.reconcilePasses++
    }
    return page.more
  }

  /** The transaction of one page; returns the orphans to delete. */
  private async apply(tx: Conn, node: string, after: string, upTo: string, askedAt: number, entries: InventoryEntry[]): Promise<string[]> {
    const present = new Set(entries.map((e) => e.hash))
    const rows = await tx.all<{ hash: string; since: number }>('SELECT hash, since FROM replicas WHERE node_id = ? AND hash > ? AND hash <= ?', [node, after, upTo])
    // every row removed or added changes a block's copy count: repair looks
    const changed: string[] = []
    let removed = 0
    for (const r of rows) {
      if (present.has(r.hash) || r.since >= askedAt) continue
      await tx.run('DELETE FROM replicas WHERE hash = ? AND node_id = ?', [r.hash, node])
      changed.push(r.hash)
      removed++
    }
    if (removed) this.log.warn(`reconcile: node ${node} lacks ${removed} copy(ies) meta listed there; rows removed, repair will copy them`)
    this.stats.rowsRemoved += removed
    const orphans: string[] = []
    const now = Date.now()
    const states = await copyStates(tx, node, entries.map((e) => e.hash))
    for (const e of entries) {
      const state = states.get(e.hash) ?? 'orphan'
      if (state === 'unlisted') {
        await tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?) ON CONFLICT (hash, node_id) DO NOTHING', [e.hash, node, now])
        changed.push(e.hash)
        this.stats.rowsAdded++
      } else if (state === 'orphan' && e.age >= this.opts.orphanAgeMs) {
        orphans.push(e.hash)
      }
    }
    await enqueue(tx, changed, now)
    return orphans
  }
}
