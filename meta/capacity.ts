/**
 * Cluster capacity as df should show it: every distinct filesystem counted
 * once. Nodes on one disk each report "free space of the disk + my blocks" as
 * capacity; adding those up counts the disk once per node (118G for a 39G disk
 * with three nodes). Nodes are grouped by the filesystem id in their heartbeat;
 * a group's free space is what its nodes may still take, capped by the disk's
 * free space. Nodes without an id (older versions) are a group of their own.
 */
import type { NodeInfo } from '../common/protocol'

export interface RawCapacity {
  /** Raw bytes (before dividing by the replica count). */
  capacity: number
  free: number
  used: number
  filesystems: number
}

export function rawCapacity(live: readonly NodeInfo[]): RawCapacity {
  const groups = new Map<string, NodeInfo[]>()
  for (const n of live) {
    const key = n.fsId ? `fs:${n.fsId}` : `node:${n.id}`
    const g = groups.get(key)
    if (g) g.push(n)
    else groups.set(key, [n])
  }
  let free = 0
  let used = 0
  for (const g of groups.values()) {
    const offered = g.reduce((s, n) => s + Math.max(0, n.capacity - n.used), 0)
    const disk = Math.max(...g.map((n) => n.fsFree ?? Number.POSITIVE_INFINITY))
    free += Math.min(offered, disk)
    used += g.reduce((s, n) => s + n.used, 0)
  }
  return { capacity: used + free, free, used, filesystems: groups.size }
}
