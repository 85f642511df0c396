/**
 * Which node copies to which: many sources to many targets at once, but never
 * more than `perNode` copies in flight on one node (as source or target), so a
 * repair spreads over the cluster instead of piling onto the emptiest node.
 * Among allowed targets the least busy wins, then the one with most free
 * space after the bytes already sent its way. One instance per repair pass:
 * the bytes booked to a target are reflected by its heartbeats afterwards.
 */
import type { NodeInfo } from '../common/protocol'

export interface Move {
  source: string
  target: NodeInfo
  bytes: number
}

export class MoveSlots {
  private readonly busy = new Map<string, number>()
  private readonly incoming = new Map<string, number>()
  private waiters: Array<() => void> = []
  private total = 0

  constructor(
    private readonly perNode: number,
    private readonly max: number,
  ) {}

  private load(id: string): number {
    return this.busy.get(id) ?? 0
  }

  private pick(sources: readonly string[], targets: readonly NodeInfo[], bytes: number): Move | null {
    if (this.total >= this.max) return null
    const source = sources.filter((s) => this.load(s) < this.perNode).sort((a, b) => this.load(a) - this.load(b))[0]
    if (source === undefined) return null
    const free = (n: NodeInfo) => n.capacity - n.used - (this.incoming.get(n.id) ?? 0)
    const target = targets.filter((n) => n.id !== source && this.load(n.id) < this.perNode).sort((a, b) => this.load(a.id) - this.load(b.id) || free(b) - free(a))[0]
    if (!target) return null
    return { source, target, bytes }
  }

  /**
   * A move once slots are free on a source and a target; null when none of
   * the candidates can ever be used now (nothing in flight to wait for).
   */
  async acquire(sources: readonly string[], targets: readonly NodeInfo[], bytes: number): Promise<Move | null> {
    for (;;) {
      const m = this.pick(sources, targets, bytes)
      if (m) {
        this.total++
        this.busy.set(m.source, this.load(m.source) + 1)
        this.busy.set(m.target.id, this.load(m.target.id) + 1)
        this.incoming.set(m.target.id, (this.incoming.get(m.target.id) ?? 0) + bytes)
        return m
      }
      if (this.total === 0) return null
      await new Promise<void>((r) => this.waiters.push(r))
    }
  }

  release(m: Move): void {
    this.total--
    this.busy.set(m.source, this.load(m.source) - 1)
    this.busy.set(m.target.id, this.load(m.target.id) - 1)
    const w = this.waiters
    this.waiters = []
    for (const r of w) r()
  }
}
