/**
 * What `berth status` shows of a replicated meta: every replica reports its
 * role and applied log sequence on `<cluster>.metactl.replica` each second;
 * whichever replica answers `status` (the leader) lists those heard from in
 * the last REPORT_FRESH_MS, each with its lag behind the log's last entry.
 * Reports are advisory: they are shown, and a leader keeps log entries a
 * replica it heard from still needs (meta/replica.ts); nothing else decides on them.
 */
import type { NatsConnection, Subscription } from 'nats'
import { decode, encode, subjects } from '../common/wire'

const REPORT_EVERY_MS = 1000
const REPORT_FRESH_MS = 5000

interface Report {
  metaId: string
  role: string
  applied: number
}

export class ReplicaPeers {
  private readonly seen = new Map<string, Report & { at: number }>()
  private readonly sub: Subscription
  private readonly timer: NodeJS.Timeout

  private readonly subject: string

  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    private readonly self: () => Report,
  ) {
    this.subject = subjects(cluster).metaReplica
    this.sub = nc.subscribe(this.subject, {
      callback: (err, msg) => {
        if (err) return
        try {
          const r = decode(msg.data) as Partial<Report>
          if (typeof r.metaId === 'string' && typeof r.role === 'string' && typeof r.applied === 'number') {
            this.seen.set(r.metaId, { metaId: r.metaId, role: r.role, applied: r.applied, at: Date.now() })
          }
        } catch {
          // a malformed report is only a missing line in berth status
        }
      },
    })
    this.timer = setInterval(() => this.reportNow(), REPORT_EVERY_MS)
    this.timer.unref()
  }

  /** Replicas heard from recently, with their lag behind `lastLogSeq`. */
  list(lastLogSeq: number): Array<{ metaId: string; role: string; applied: number; lag: number; seenMsAgo: number }> {
    const now = Date.now()
    const out = []
    for (const r of this.seen.values()) {
      if (now - r.at > REPORT_FRESH_MS) {
        this.seen.delete(r.metaId)
        continue
      }
      out.push({ metaId: r.metaId, role: r.role, applied: r.applied, lag: Math.max(0, lastLogSeq - r.applied), seenMsAgo: now - r.at })
    }
    return out.sort((a, b) => a.metaId.localeCompare(b.metaId))
  }

  /**
   * The lowest sequence applied by another replica heard from recently that
   * has applied anything (a replica at 0 needs the snapshot in any case);
   * null when there is none. A report is at most REPORT_EVERY_MS old, so the
   * figure is at or below what that replica has applied: safe to keep the log for.
   */
  lowestFollowerApplied(self: string): number | null {
    const now = Date.now()
    let low: number | null = null
    for (const r of this.seen.values()) {
      if (r.metaId === self || r.applied <= 0 || now - r.at > REPORT_FRESH_MS) continue
      if (low === null || r.applied < low) low = r.applied
    }
    return low
  }

  /** Sends this replica's report now (after a restore: before the leader trims again). */
  reportNow(): void {
    if (!this.nc.isClosed()) this.nc.publish(this.subject, encode(this.self()))
  }

  stop(): void {
    clearInterval(this.timer)
    this.sub.unsubscribe()
  }
}
