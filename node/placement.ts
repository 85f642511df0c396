/**
 * Write placement: a node with free space serves `<cluster>.data.place` in queue
 * group `data`, so NATS spreads new writes over the nodes and a new node takes
 * writes as soon as it subscribes. The answering node is the first target, the
 * other R-1 are the least used live peers (R capped by live nodes). A full or
 * draining node unsubscribes and simply stops being asked.
 *
 * The node also serves `<cluster>.data.placeat.<its id>`, where clients ask
 * it by name (common/block-client.ts): a node that stopped without leaving
 * (SIGSTOP, a frozen VM) keeps its place in the queue group, so clients pick
 * among nodes whose heartbeats are fresh instead. Both subscriptions come and
 * go together.
 *
 * When the caller excludes the answering node (it just failed for them), the
 * reply names other nodes only; ENOSPC when nobody is left.
 */
import type { NatsConnection, Subscription } from 'nats'
import { BerthError } from '../common/errors'
import type { Logger } from '../common/log'
import { placeRequest, type PlaceReply } from '../common/protocol'
import { parseBody, serve } from '../common/wire'
import type { Peer } from './peers'

export interface PlacementDeps {
  nc: NatsConnection
  /** The queue group's subject. */
  subject: string
  /** This node's own subject. */
  ownSubject: string
  self: { id: string; url: string; zone?: string }
  /** Bytes this node can still take. */
  free(): number
  live(): Peer[]
  log: Logger
}

/**
 * Least used first, a zone not yet used before any zone already used (so the
 * copies spread over failure domains whenever enough are live); a little
 * jitter so peers with equal use share the secondaries.
 */
export function chooseTargets(self: { id: string; url: string; zone?: string } | null, peers: Peer[], replicas: number, exclude: Set<string>, size: number): Array<{ id: string; url: string }> {
  const targets: Array<{ id: string; url: string }> = self ? [{ id: self.id, url: self.url }] : []
  const zones = new Set<string>(self?.zone ? [self.zone] : [])
  const candidates = peers
    .filter((p) => p.state === 'up' && p.id !== self?.id && !exclude.has(p.id) && p.capacity - p.used >= size)
    .map((p) => ({ p, score: p.used / Math.max(1, p.capacity) + Math.random() * 0.02 }))
    .sort((a, b) => a.score - b.score)
  while (targets.length < replicas && candidates.length) {
    const i = Math.max(0, candidates.findIndex(({ p }) => p.zone === undefined || !zones.has(p.zone)))
    const { p } = candidates.splice(i, 1)[0]!
    targets.push({ id: p.id, url: p.url })
    if (p.zone) zones.add(p.zone)
  }
  return targets
}

export class Placement {
  private subs: Subscription[] = []

  constructor(private readonly deps: PlacementDeps) {}

  get serving(): boolean {
    return this.subs.length > 0
  }

  /** Subscribes or unsubscribes to match `wanted`. */
  set(wanted: boolean): void {
    if (wanted && !this.serving) {
      const onError = (e: unknown) => this.deps.log.warn('placement', e)
      this.subs = [
        serve(this.deps.nc, this.deps.subject, { queue: 'data', onError }, (msg) => this.place(msg.data)),
        serve(this.deps.nc, this.deps.ownSubject, { onError }, (msg) => this.place(msg.data)),
      ]
      this.deps.log.info('taking new writes (subscribed to placement)')
    } else if (!wanted && this.serving) {
      for (const s of this.subs) s.unsubscribe()
      this.subs = []
      this.deps.log.info('not taking new writes (unsubscribed from placement)')
    }
  }

  private place(data: Uint8Array): PlaceReply {
    const req = parseBody(placeRequest, data)
    const exclude = new Set(req.exclude)
    const selfOk = !exclude.has(this.deps.self.id) && this.deps.free() >= req.size
    const targets = chooseTargets(selfOk ? this.deps.self : null, this.deps.live(), req.replicas, exclude, req.size)
    if (targets.length === 0) throw new BerthError('ENOSPC', 'no data node with free space outside the excluded set')
    return { targets }
  }

  stop(): void {
    this.set(false)
  }
}
