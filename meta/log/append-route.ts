/**
 * Which connection the leader's appends go out on: one to the server that
 * leads the log's stream.
 *
 * A JetStream publish reaches the stream leader through whatever server the
 * publishing connection is on. When that is another server of the cluster,
 * the entry and its acknowledgement each cross a route between servers: two
 * more hops on every acknowledged mutation. Measured on this project's 2-core
 * test machine, quiet, R3, 1.5 KB entries: publish p50 0.81-1.00 ms through
 * another server, 0.62-0.80 ms straight to the stream leader; inside the
 * meta benchmark the leader's append p50 went from 1.50 to 1.21 ms
 * (docs/meta.md "Throughput of --ha"). With `noRandomize` every process sits
 * on the first server of its list, which leads the stream only one time in
 * three.
 *
 * So while a replica leads, it keeps one more connection per server of its
 * URL list (opened on first use, so followers open none) and publishes on
 * the one whose server leads the stream, as the stream's info names it, asked
 * every REFRESH_MS. Until that is known, while that link is disconnected (its
 * one server is down: the own connection moves to another server of its list
 * at once, a one-server link cannot), and for FAILED_LINK_MS after an append
 * failed on it, appends go out on the replica's own connection, as before.
 *
 * Nothing about safety changes: every append still carries
 * `expect.lastSequence`, and the stream refuses it whichever server it came
 * through.
 */
import { NatsError, type JetStreamClient, type NatsConnection } from 'nats'
import type { Logger } from '../../common/log'
import { isConnected, onReconnect } from '../../common/nats-state'

/** How often a leading replica asks which server leads the stream. */
const REFRESH_MS = 2000
/** A replica that has not appended for this long is not leading: its extra connections close. */
const IDLE_MS = 30_000
/** After failing to connect to a server, wait this long before trying it again. */
const CONNECT_RETRY_MS = 10_000
/**
 * A link an append failed on (no answer from the stream; a refusal by the
 * fence is an answer) is not chosen again for this long: a link that
 * connects but does not deliver (a half-open connection, a server cut off
 * from the cluster) would otherwise depose every new leader in turn, where
 * the own connection may still reach the stream leader through a route.
 */
const FAILED_LINK_MS = 30_000

export interface AppendRouteDeps {
  /** How many servers the replica's URL list names. */
  servers: number
  /** Connects to server `i` of that list alone. */
  connectTo(i: number): Promise<NatsConnection>
  /** Server name of the stream's current leader (undefined: none now). */
  streamLeader(): Promise<string | undefined>
  /** The replica's own connection: used until the leader's server is known. */
  fallback: JetStreamClient
  logger: Logger
}

interface Link {
  nc: NatsConnection | null
  js: JetStreamClient | null
  /** server_name of the server it is on (known once connected). */
  name: string | undefined
  connecting: Promise<void> | null
  failedAt: number
  /** An append failed on it at this time (FAILED_LINK_MS). */
  appendFailedAt: number
}

export class AppendRoute {
  private readonly links: Link[]
  /** The link appends go out on (null: the own connection). */
  private chosen: Link | null = null
  private lastUse = -Infinity
  private refreshing: Promise<void> | null = null
  private refreshedAt = -Infinity
  private closed = false
  /** Runs while links are open: closes them once the replica stopped appending (a follower needs none). */
  private idleTimer: NodeJS.Timeout | undefined

  constructor(private readonly d: AppendRouteDeps) {
    this.links = Array.from({ length: d.servers > 1 ? d.servers : 0 }, () => ({ nc: null, js: null, name: undefined, connecting: null, failedAt: -Infinity, appendFailedAt: -Infinity }))
  }

  /** Server name the appends go to straight now (undefined: the own connection). */
  get appendsTo(): string | undefined {
    return this.chosen?.name
  }

  /**
   * The client to publish the next append on. Never waits: a stale choice
   * only costs the route hop, and a refresh starts in the background.
   */
  current(): JetStreamClient {
    this.lastUse = performance.now()
    // a link that lost its server since the last refresh: the own connection
    // reconnects to another server of its list at once, a one-server link cannot
    if (this.chosen && !this.usable(this.chosen)) this.chosen = null
    if (this.links.length && !this.refreshing && !this.closed && performance.now() - this.refreshedAt >= REFRESH_MS) {
      this.refreshing = this.refresh().finally(() => {
        this.refreshing = null
      })
    }
    return this.chosen?.js ?? this.d.fallback
  }

  /**
   * An append published on `js` failed with `err`: ask again which server
   * leads at the next use. Unless the stream answered (a refusal by the
   * fence: this replica was deposed, the link works), avoid the link it went
   * out on for a while: the choice may have moved on since, so the link is
   * the one `js` belongs to, not the one chosen now.
   */
  failed(js: JetStreamClient, err: unknown): void {
    this.refreshedAt = -Infinity
    if (err instanceof NatsError && err.isJetStreamError()) return
    const link = this.links.find((l) => l.js === js)
    if (!link) return
    link.appendFailedAt = performance.now()
    if (this.chosen === link) this.chosen = null
  }

  private usable(l: Link): boolean {
    return l.js !== null && l.nc !== null && !l.nc.isClosed() && isConnected(l.nc) && performance.now() - l.appendFailedAt >= FAILED_LINK_MS
  }

  async close(): Promise<void> {
    this.closed = true
    await this.refreshing
    await this.closeLinks()
  }

  private async closeLinks(): Promise<void> {
    clearInterval(this.idleTimer)
    this.idleTimer = undefined
    this.chosen = null
    await Promise.all(
      this.links.map(async (l) => {
        await l.connecting
        const nc = l.nc
        l.nc = null
        l.js = null
        await nc?.close().catch(() => undefined)
      }),
    )
  }

  private async refresh(): Promise<void> {
    this.refreshedAt = performance.now()
    this.idleTimer ??= setInterval(() => {
      if (performance.now() - this.lastUse >= IDLE_MS && !this.refreshing) void this.closeLinks()
    }, IDLE_MS).unref()
    await Promise.all(this.links.map((l, i) => this.ensure(l, i)))
    let leader: string | undefined
    try {
      leader = await this.d.streamLeader()
    } catch {
      return // unanswered (an election): keep the last choice; the next refresh asks again
    }
    const link = this.links.find((l) => l.name === leader && this.usable(l)) ?? null
    if (link !== this.chosen) this.d.logger.debug(`appends now go to ${link ? `server ${leader}, the log's stream leader` : 'the own connection'}`)
    this.chosen = link
  }

  private async ensure(l: Link, i: number): Promise<void> {
    if (this.closed || (l.nc && !l.nc.isClosed())) return
    if (l.connecting) return l.connecting
    if (performance.now() - l.failedAt < CONNECT_RETRY_MS) return
    l.connecting = (async () => {
      try {
        const nc = await this.d.connectTo(i)
        if (this.closed) {
          await nc.close().catch(() => undefined)
          return
        }
        l.nc = nc
        l.js = nc.jetstream()
        l.name = nc.info?.server_name
        // a URL that names several servers (a DNS name) may reconnect to another one
        onReconnect(nc, () => {
          if (l.nc === nc) l.name = nc.info?.server_name
        })
      } catch (err) {
        l.failedAt = performance.now()
        this.d.logger.debug(`append route: cannot reach server ${i + 1} of the list: ${(err as Error).message}`)
      }
    })().finally(() => {
      l.connecting = null
    })
    return l.connecting
  }
}
