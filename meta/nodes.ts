/**
 * The live data-node set, learnt only from heartbeats (no static node list).
 * Kept in memory: after a meta restart it is complete again within one
 * heartbeat interval.
 */
import { NODE_DEAD_MS, type Heartbeat, type NodeInfo } from '../common/protocol'

export class NodeTable {
  private readonly nodes = new Map<string, Omit<NodeInfo, 'alive'>>()

  constructor(private readonly clock: () => number = Date.now) {}

  seen(hb: Heartbeat): void {
    this.nodes.set(hb.id, {
      id: hb.id, url: hb.url, capacity: hb.capacity, used: hb.used, blocks: hb.blocks, state: hb.state, seen: this.clock(),
      ...(hb.fsId !== undefined ? { fsId: hb.fsId } : {}),
      ...(hb.fsFree !== undefined ? { fsFree: hb.fsFree } : {}),
    })
  }

  list(): NodeInfo[] {
    const now = this.clock()
    return [...this.nodes.values()]
      .map((n) => ({ ...n, alive: now - n.seen <= NODE_DEAD_MS }))
      .sort((a, b) => a.id.localeCompare(b.id))
  }

  live(): NodeInfo[] {
    return this.list().filter((n) => n.alive)
  }

  get(id: string): NodeInfo | undefined {
    return this.list().find((n) => n.id === id)
  }
}
