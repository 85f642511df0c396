/**
 * The leader lease: key `leader` in a JetStream KV bucket whose TTL is the
 * lease length (`BERTH_META_LEASE_<cluster>`, history 1).
 *
 *   free ──create (only if absent)──► held(rev) ──update(rev) every ttl/4──► held(rev')
 *   held ──update refused, or no renewal acknowledged for ttl-margin──► lost
 *   held(rev) ──no renewal for ttl (holder dead)──► free (the server expires the key)
 *
 * The holder trusts its lease only until the send time of its last
 * acknowledged renewal plus ttl minus a safety margin: the server cannot
 * expire the key before that, so two metas never both believe they lead. The
 * log's fencing (meta/log/stream.ts) backs this up: even a holder that trusts
 * a stale lease cannot append once another has.
 */
import type { KV, NatsConnection } from 'nats'
import { decode, encode } from '../common/wire'

export interface LeaseHolder {
  metaId: string
  /** When the holder took the lease (ms since epoch, its clock). */
  since: number
}

/** JetStream API error: the expected last sequence did not match. */
export const WRONG_LAST_SEQUENCE = 10071

export function bucketName(cluster: string): string {
  return `BERTH_META_LEASE_${cluster.replace(/[^A-Za-z0-9_-]/g, '_')}`
}

export class Lease {
  private revision = 0
  private validUntil = 0
  private since = 0

  private constructor(
    private readonly kv: KV,
    private readonly metaId: string,
    readonly ttlMs: number,
  ) {}

  static async open(nc: NatsConnection, cluster: string, metaId: string, opts: { ttlMs: number; replicas: number }): Promise<Lease> {
    const kv = await nc.jetstream().views.kv(bucketName(cluster), { history: 1, ttl: opts.ttlMs, replicas: opts.replicas })
    return new Lease(kv, metaId, opts.ttlMs)
  }

  /** How long before the server could expire it we stop trusting our lease. */
  private get marginMs(): number {
    return Math.max(500, Math.floor(this.ttlMs / 3))
  }

  /** True while this meta may act as leader. */
  held(): boolean {
    return this.revision > 0 && performance.now() < this.validUntil
  }

  /** Who holds it now, as the bucket says (null: free). */
  async holder(): Promise<LeaseHolder | null> {
    const e = await this.kv.get('leader')
    if (!e || e.operation !== 'PUT' || e.length === 0) return null
    return decode(e.value) as LeaseHolder
  }

  /** Takes the lease if it is free; true when we hold it. */
  async tryAcquire(): Promise<boolean> {
    const sent = performance.now()
    const since = Date.now()
    try {
      this.revision = await this.kv.create('leader', encode({ metaId: this.metaId, since } satisfies LeaseHolder))
    } catch {
      return false // someone holds it (or NATS is unreachable): not ours
    }
    this.since = since
    this.validUntil = sent + this.ttlMs - this.marginMs
    return true
  }

  /** Renews; false (and the lease is dropped locally) when it was lost. */
  async renew(): Promise<boolean> {
    if (!this.revision) return false
    const sent = performance.now()
    try {
      this.revision = await this.kv.update('leader', encode({ metaId: this.metaId, since: this.since } satisfies LeaseHolder), this.revision)
      this.validUntil = sent + this.ttlMs - this.marginMs
      return this.held()
    } catch (err) {
      // a refused update (the key changed: someone else holds it) is final; a
      // timeout may still recover while our lease is valid
      if ((err as { api_error?: { err_code?: number } }).api_error?.err_code === WRONG_LAST_SEQUENCE || !this.held()) {
        this.revision = 0
        this.validUntil = 0
      }
      return this.held()
    }
  }

  /** Gives the lease up now (clean shutdown): a follower takes over at once. */
  async release(): Promise<void> {
    const rev = this.revision
    this.revision = 0
    this.validUntil = 0
    if (rev) await this.kv.delete('leader', { previousSeq: rev }).catch(() => undefined)
  }

  /** Age of our leadership in ms (0 when not leading). */
  ageMs(): number {
    return this.held() ? Date.now() - this.since : 0
  }
}
