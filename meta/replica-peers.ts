/**
 * What `berth status` shows of a replicated meta: every replica reports its
 * role and applied log sequence on `<cluster>.metactl.replica` each second;
 * whichever replica answers `status` (the leader) lists those heard from in
 * the last REPORT_FRESH_MS, each with its lag behind the log's last entry.
 * Reports are advisory (display only): nothing decides on them.
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

  constructor(
    private readonly nc: NatsConnection,
    cluster: string,
    self: () => Report,
  ) {
    const subject = subjects(cluster).metaReplica
    this.sub = nc.subscribe(subject, {
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
    this.timer = setInterval(() => {
      if (!nc.isClosed()) nc.publish(subject, encode(self()))
    }, REPORT_EVERY_MS)
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

  stop(): void {
    clearInterval(this.timer)
    this.sub.unsubscribe()
  }
}
