/**
 * Heartbeats: this node publishes its own on `<cluster>.node.hb` every
 * HEARTBEAT_MS (and once at start), and listens to everyone's to know the live
 * peers placement can choose from. A peer unseen for NODE_DEAD_MS is dead.
 * A heartbeat from an unknown peer is answered with one of ours at once.
 */
import type { NatsConnection, Subscription } from 'nats'
import type { Logger } from '../common/log'
import { heardButDead, heartbeat, HEARTBEAT_MS, NODE_DEAD_MS, seenAt, type Heartbeat } from '../common/protocol'
import { encode, parseBody } from '../common/wire'

export interface Peer extends Heartbeat {
  seen: number
}

export class Peers {
  private readonly peers = new Map<string, Peer>()
  private sub: Subscription | null = null
  private timer: NodeJS.Timeout | null = null
  /** Heartbeats held back (node/disk-canary.ts: the disk hangs): peers count this node dead. */
  private silent = false

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
    private readonly log: Logger,
  ) {}

  /** Starts listening, publishes `self()` now and then every HEARTBEAT_MS. */
  start(self: () => Heartbeat): void {
    this.sub = this.nc.subscribe(this.subject, {
      callback: (err, msg) => {
        if (err) return
        try {
          const hb = parseBody(heartbeat, msg.data)
          const known = this.peers.has(hb.id)
          this.peers.set(hb.id, { ...hb, seen: seenAt(hb, Date.now()) })
          // A newcomer knows nobody until the next round of beats (up to
          // HEARTBEAT_MS), and would place with too few replicas meanwhile:
          // answering its first beat at once introduces us within one RTT.
          if (!known) this.publishNow()
        } catch (e) {
          this.log.debug(`ignoring bad heartbeat: ${(e as Error).message}`)
        }
      },
    })
    const beat = (down = false) => {
      if (this.silent) return
      const hb: Heartbeat = down ? { ...self(), down } : self()
      // Our own entry is current even before the echo arrives.
      this.peers.set(hb.id, { ...hb, seen: seenAt(hb, Date.now()) })
      try {
        this.nc.publish(this.subject, encode(hb))
      } catch (e) {
        this.log.warn('heartbeat not sent', e)
      }
    }
    beat()
    this.timer = setInterval(beat, HEARTBEAT_MS)
    this.publishNow = beat
  }

  /**
   * Holds heartbeats back while `on`, after one last heartbeat that says
   * `down` (every peer counts this node dead at once); off: one at once.
   */
  silence(on: boolean): void {
    if (on && !this.silent) this.publishNow(true)
    this.silent = on
    if (!on) this.publishNow()
  }

  /** Sends a heartbeat at once (after a state change). */
  publishNow: (down?: boolean) => void = () => undefined

  /**
   * The URL `id` advertised in its last heartbeat, live or not; undefined for
   * a node never heard from. The data plane forwards only to these.
   */
  urlOf(id: string): string | undefined {
    return this.peers.get(id)?.url
  }

  /** Heard from once, but not within NODE_DEAD_MS; false for a node never heard from. */
  isDead(id: string): boolean {
    return heardButDead(this.peers.get(id)?.seen)
  }

  live(): Peer[] {
    const now = Date.now()
    return [...this.peers.values()].filter((p) => now - p.seen <= NODE_DEAD_MS)
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.sub?.unsubscribe()
    this.sub = null
    this.publishNow = () => undefined
  }
}
