/**
 * Where a MetaClient sends its requests.
 *
 * Meta serves every operation on two subjects: `<cluster>.meta.<op>` in queue
 * group `meta`, and `<cluster>.metaat.<metaId>.<op>`, its own. A leader that
 * stops without going away (SIGSTOP, a frozen VM or host) keeps its TCP
 * connection and its subscriptions: NATS never drops it, because nats-server
 * delays its pings while it is sending that client messages. In the queue
 * group it would go on taking about half of all requests, each waiting out an
 * attempt, after its follower took over. So a client asks the leader probe
 * (`<cluster>.metactl.leader`, a plain subscription: every leader hears it,
 * the first answer wins, a stopped one never answers) who serves, and sends to
 * that meta's own subject. When an attempt there times out, finds nobody
 * subscribed or has waited a second (SLOW_ATTEMPT_MS), it asks again, and an
 * attempt whose route moved meanwhile is sent again at once to the new one; a
 * stopped leader then costs each client about the takeover (the lease TTL)
 * instead of half of its requests.
 *
 *   queue ──probe names a meta──▶ direct(id) ──attempt slow (1 s) / timed out / no responders──▶ probing
 *     ▲                                ▲                                             │
 *     │                                └──────────── probe names a meta ◀───────────┘
 *     └──── nobody answered the probe within the attempt's budget ◀──────────────────┘
 *   any ──probe not permitted (a nats.conf from before this) / meta without `direct`──▶ queue
 *
 * The queue group stays the fallback, so a client works unchanged against a
 * meta or a nats.conf older than this (docs/meta.md).
 */
import { ErrorCode as NatsErrorCode, type NatsConnection } from 'nats'
import { decode, encode, SUBJECT_TOKEN, type MetaLeaderReply, type RequestRoute, type Subjects } from './wire'

/** One probe's wait: the answer is a constant from meta's event loop. */
const PROBE_MS = 1000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export class MetaRoute {
  /** The serving meta's id, or null: the queue group. */
  private metaId: string | null = null
  /** False once NATS refused this credential the probe: the queue group for good. */
  private probeAllowed = true
  private asking: Promise<boolean> | null = null
  private started = false
  private readonly routes = new Map<string, RequestRoute>()

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {}

  /** Who serves now, as far as this client knows (for tests and logs). */
  get leader(): string | null {
    return this.metaId
  }

  /** The route for one operation (one object per op, made once); the first use starts a probe in the background. */
  forOp(op: string): RequestRoute {
    if (!this.started) {
      this.started = true
      void this.ask(5000)
    }
    let route = this.routes.get(op)
    if (!route) {
      route = {
        subject: () => (this.metaId ? this.subjects.metaAt(this.metaId, op) : this.subjects.meta(op)),
        failed: async (_code, budgetMs) => void (await this.ask(budgetMs)),
        // an attempt waiting over a second: ask whether another meta serves by now
        slow: async (budgetMs) => void (await this.ask(budgetMs)),
      }
      this.routes.set(op, route)
    }
    return route
  }

  /**
   * Asks who serves (one probe in flight for all callers); true when the route
   * changed. Waits at most `budgetMs`, also on a probe another caller started
   * with a longer budget (which goes on by itself).
   */
  async ask(budgetMs: number): Promise<boolean> {
    if (budgetMs <= 0 || !this.probeAllowed) return false
    const before = this.metaId
    this.asking ??= this.probe(budgetMs).finally(() => (this.asking = null))
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<void>((resolve) => (timer = setTimeout(resolve, budgetMs)))
    await Promise.race([this.asking, expired])
    clearTimeout(timer)
    return this.metaId !== before
  }

  private async probe(budgetMs: number): Promise<boolean> {
    const before = this.metaId
    const until = Date.now() + budgetMs
    let backoff = 50
    for (;;) {
      const left = until - Date.now()
      if (left <= 0 || this.nc.isClosed()) break
      try {
        // noMux: a denied publish then fails this request at once (PERMISSIONS_VIOLATION)
        // instead of timing out, and that is how an older nats.conf is told apart
        const msg = await this.nc.request(this.subjects.metaLeader, encode({}), { timeout: Math.max(50, Math.min(PROBE_MS, left)), noMux: true })
        const reply = decode(msg.data) as Partial<MetaLeaderReply>
        this.metaId = reply.direct === true && typeof reply.metaId === 'string' && SUBJECT_TOKEN.test(reply.metaId) ? reply.metaId : null
        return this.metaId !== before
      } catch (err) {
        const code = (err as { code?: string }).code
        if (code === NatsErrorCode.PermissionsViolation) {
          this.probeAllowed = false
          break
        }
        // a timeout: only a stopped meta heard it, ask again; no responders:
        // nobody leads right now (an election), ask again after a pause
        if (code !== NatsErrorCode.Timeout) await sleep(Math.min(backoff, Math.max(0, until - Date.now())))
        backoff = Math.min(backoff * 2, 500)
      }
    }
    // nobody named: whoever takes the queue group's requests
    this.metaId = null
    return before !== null
  }
}
