/**
 * Typed caller of the metadata service. Every call carries a request id, so a
 * retry after a timeout is answered from meta's reply cache instead of being
 * applied twice; that lets every operation wait out a cluster outage up to the
 * deadline instead of failing at the first lost reply.
 */
import { randomBytes } from 'node:crypto'
import type { NatsConnection } from 'nats'
import { announcedProtocol, refuseMeta, releaseName } from './compat'
import { BerthError } from './errors'
import { MetaRoute } from './meta-route'
import type { MetaOp, MetaReplies, MetaRequest } from './protocol'
import { request, subjects, type Subjects } from './wire'

export interface MetaClientOptions {
  cluster: string
  /** Per-attempt timeout. */
  timeoutMs?: number
  /** Budget for one call including retries (the "cluster unreachable" deadline). */
  deadlineMs?: number
}

export class MetaClient {
  readonly subjects: Subjects
  /** The serving meta's own subject once known, else the queue group (common/meta-route.ts). */
  readonly route: MetaRoute
  /**
   * The client part of every request id (and of meta's invalidations caused by
   * them, Invalidation.by): how a mount tells its own changes from others'.
   */
  readonly origin = randomBytes(9).toString('base64url')
  private seq = 0
  /** Request numbers not answered yet (their answers must stay remembered). */
  private readonly pending = new Set<number>()

  constructor(
    readonly nc: NatsConnection,
    private readonly opts: MetaClientOptions,
  ) {
    this.subjects = subjects(opts.cluster)
    this.route = new MetaRoute(nc, this.subjects)
  }

  call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>, opts: { deadlineMs?: number } = {}): Promise<MetaReplies[Op]> {
    const n = this.seq++
    this.pending.add(n)
    // client.n.ack: every request of ours below `ack` has had its answer, so
    // meta may forget those (meta/requests.ts). Numbers enter the set in
    // increasing order, so its first one is the lowest still pending.
    const ack: number = this.pending.values().next().value ?? n
    const rid = `${this.origin}.${n.toString(36)}.${ack.toString(36)}`
    // hello announces what this client speaks; meta refuses it (EPROTO) if out of range
    const announce = op === 'hello' ? { protocol: announcedProtocol(), release: releaseName() } : {}
    const sent = request<MetaReplies[Op]>(this.nc, this.route.forOp(op), { ...announce, ...body, rid }, {
      timeoutMs: this.opts.timeoutMs ?? 5000,
      deadlineMs: opts.deadlineMs ?? this.opts.deadlineMs ?? 30_000,
      retryTimeouts: true,
    })
    // a request that failed at its deadline may still be applied: its number
    // leaves the pending set only when no retry of it can come any more
    const settle = () => this.pending.delete(n)
    sent.then(settle, settle)
    if (op !== 'hello') return sent
    // and refuses a meta older than itself (an old meta does not check)
    return sent.then((reply) => {
      const hello = reply as MetaReplies['hello']
      const refused = refuseMeta(hello, { protocol: announcedProtocol(), release: releaseName() })
      if (refused) throw new BerthError('EPROTO', refused)
      return reply
    })
  }
}
