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

/** Sorts after every hex digit: the upper bound of a node's last page. */
const END = 'g'

export interface ReconcileOptions {
  orphanAgeMs: number
  pageSize: number
}

export type CopyState = 'listed' | 'unlisted' | 'pinned' | 'zero' | 'orphan'

/** Meta's view of one copy on `node` (shared with the `inventory` op for fsck). */
export async function copyState(c: Conn, node: string, hash: string): Promise<CopyState> {
  const b = await c.get<{ refs: number; pinned: number; listed: number }>(
    `SELECT refs, EXISTS (SELECT 1 FROM pins p WHERE p.hash = b.hash) AS pinned,
       EXISTS (SELECT 1 FROM replicas r WHERE r.hash = b.hash AND r.node_id = ?) AS listed
     FROM blocks b WHERE b.hash = ?`,
    [node, hash],
  )
  if (!b) return 'orphan'
  if (b.listed) return 'listed'
  if (b.refs > 0) return 'unlisted'
  return b.pinned ? 'pinned' : 'zero'
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

  /** Goes through every live node's inventory from its cursor to the end. */
  async pass(stopped: () => boolean): Promise<void> {
    for (const node of this.env.nodes.live()) {
      try {
        while (!stopped() && (await this.page(node.id))) {
          // next page
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
    for (const e of entries) {
      const state = await copyState(tx, node, e.hash)
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
