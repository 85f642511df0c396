/**
 * Turns the live node set (learnt from heartbeats, meta/nodes.ts) into events:
 * which nodes died and which joined or came back since the last look. The
 * first look after meta starts reports nothing for the nodes it sees (they
 * were already there); nodes that died while no meta watched are found once
 * through `nodesWithRows` (meta/repair-queue.ts) after the startup grace.
 */
export interface LiveSetChange {
  died: string[]
  joined: string[]
}

export class LiveSetWatch {
  private last: Set<string> | null = null

  change(liveIds: readonly string[]): LiveSetChange {
    const now = new Set(liveIds)
    const before = this.last
    this.last = now
    if (!before) return { died: [], joined: [] }
    return { died: [...before].filter((id) => !now.has(id)), joined: [...now].filter((id) => !before.has(id)) }
  }
}
