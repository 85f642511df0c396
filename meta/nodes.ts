/**
 * The live data-node set, learnt only from heartbeats (no static node list).
 * Kept in memory: after a meta restart it is complete again within one
 * heartbeat interval.
 */
import { heardButDead, NODE_DEAD_MS, seenAt, type Heartbeat, type NodeAdminState, type NodeInfo } from '../common/protocol'

export class NodeTable {
  private readonly nodes = new Map<string, Omit<NodeInfo, 'alive' | 'admin'>>()
  /** Operator states (meta/node-admin.ts); decommissioned and forgotten nodes are not listed. */
  private readonly admin = new Map<string, NodeAdminState>()

  constructor(private readonly clock: () => number = Date.now) {}

  mark(id: string, state: NodeAdminState | null): void {
    if (state) this.admin.set(id, state)
    else this.admin.delete(id)
    if (state === 'decommissioned' || state === 'forgotten') this.nodes.delete(id)
  }

  /** Replaces every operator state at once (a replica that starts to lead reloads them). */
  resetAdmin(rows: Iterable<{ id: string; state: NodeAdminState }>): void {
    this.admin.clear()
    for (const r of rows) this.mark(r.id, r.state)
  }

  adminOf(id: string): NodeAdminState | undefined {
    return this.admin.get(id)
  }

  /** Live nodes that count as homes for copies: not draining. */
  homes(): NodeInfo[] {
    return this.live().filter((n) => !n.admin)
  }

  seen(hb: Heartbeat): void {
    const a = this.admin.get(hb.id)
    if (a === 'decommissioned' || a === 'forgotten') return
    this.nodes.set(hb.id, {
      id: hb.id, url: hb.url, capacity: hb.capacity, used: hb.used, blocks: hb.blocks, state: hb.state, seen: seenAt(hb, this.clock()),
      ...(hb.fsId !== undefined ? { fsId: hb.fsId } : {}),
      ...(hb.fsFree !== undefined ? { fsFree: hb.fsFree } : {}),
      ...(hb.blockHashes ? { blockHashes: hb.blockHashes } : {}),
      ...(hb.zone ? { zone: hb.zone } : {}),
      ...(hb.down ? { down: true as const } : {}),
    })
  }

  list(): NodeInfo[] {
    const now = this.clock()
    return [...this.nodes.values()]
      .map((n) => {
        const admin = this.admin.get(n.id)
        return { ...n, alive: now - n.seen <= NODE_DEAD_MS, ...(admin ? { admin } : {}) }
      })
      .sort((a, b) => a.id.localeCompare(b.id))
  }

  /** Heard from once, but not within NODE_DEAD_MS; false for a node never heard from (after a meta restart, say). */
  isDead(id: string): boolean {
    return heardButDead(this.nodes.get(id)?.seen, this.clock())
  }

  live(): NodeInfo[] {
    return this.list().filter((n) => n.alive)
  }

  get(id: string): NodeInfo | undefined {
    return this.list().find((n) => n.id === id)
  }
}
