/**
 * What the serving meta does, started and stopped as one: answer
 * `<cluster>.meta.*` and the leader probe, run maintenance (sessions, GC,
 * reconciliation, repair, rebalance, drains) and prune request answers. A
 * single meta serves from start to exit; a replica serves only while it leads
 * (meta/replica.ts), so background work runs on the leader alone and its
 * writes reach the log through the leader's commit hook.
 */
import type { NatsConnection, Subscription } from 'nats'
import type { Logger } from '../common/log'
import { fsError } from '../common/errors'
import type { GcRunReport } from '../common/protocol'
import { serve, subjects, type MetaLeaderReply } from '../common/wire'
import type { MetaEnv } from './context'
import type { EngineHandle } from './engine'
import type { LifecycleStats } from './lifecycle-stats'
import { Maintenance, type MaintenanceOptions } from './maintenance'
import { loadNodeAdmin } from './node-admin'
import { onReconnect } from '../common/nats-state'
import { publishForgetAll, serveMeta, type InvalidationOutbox, type MetaServer } from './server'
import { graceSessions } from './sessions'

const PRUNE_MS = 60_000
const DRAIN_MS = 5000

export interface ServingOptions {
  maintenance: MaintenanceOptions
  /** Counters of the background work, kept across leaderships (metrics). */
  stats: LifecycleStats
  observe?: (op: string, seconds: number, code: string | null) => void
  /** The engine's invalidations, sent with the next reply (meta/server.ts). */
  outbox?: InvalidationOutbox
}

export class Serving {
  private server: MetaServer | null = null
  private probe: Subscription | null = null
  private maintenance: Maintenance | null = null
  private prune: NodeJS.Timeout | undefined

  constructor(
    private readonly nc: NatsConnection,
    private readonly env: MetaEnv,
    private readonly engine: EngineHandle,
    private readonly log: Logger,
    private readonly opts: ServingOptions,
  ) {
    // Invalidations published while meta's connection was down are lost (nats.js
    // discards what it buffered when it reconnects), and a mount on another NATS
    // server saw no reconnect of its own: have every mount forget everything.
    onReconnect(nc, () => {
      if (this.active) publishForgetAll(this.nc, this.env.cluster)
    })
  }

  get active(): boolean {
    return this.server !== null
  }

  async start(): Promise<void> {
    if (this.server) return
    // a restart or a new leader must not expire sessions whose renewals it could not hear
    const graced = await graceSessions(this.env)
    if (graced) this.log.info(`sessions: ${graced} given one full TTL of grace`)
    // operators' node states as the log left them (a follower applied them without marking its table)
    await loadNodeAdmin(this.env)
    // direct: this meta also serves <cluster>.metaat.<metaId>.<op> (common/meta-route.ts)
    this.probe = serve(this.nc, subjects(this.env.cluster).metaLeader, {}, (): MetaLeaderReply => ({ metaId: this.env.metaId, direct: true }))
    // Before the first request can arrive (same connection, so ahead of every
    // reply): the previous meta, or this one before a restart, may have
    // committed a mutation and died before publishing its invalidation.
    publishForgetAll(this.nc, this.env.cluster)
    this.server = serveMeta(this.nc, this.env, this.engine, this.log, this.opts.observe, this.opts.outbox)
    this.maintenance = new Maintenance(this.nc, this.env, this.log, this.opts.maintenance, this.opts.stats)
    this.maintenance.start()
    this.prune = setInterval(() => {
      this.engine.prune().catch((err: unknown) => this.log.warn('pruning request answers failed', err))
    }, PRUNE_MS)
    this.prune.unref()
    await this.nc.flush()
  }

  /** `berth gc --run`: one GC and one reconciliation pass now, on the leader's loops. */
  async runMaintenanceNow(): Promise<GcRunReport> {
    if (!this.maintenance) throw fsError('EAGAIN', 'this meta replica is not leading: its background loops are stopped')
    return this.maintenance.runNow()
  }

  /** Stops taking requests, answers those in flight (bounded), stops maintenance. */
  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = null
    clearInterval(this.prune)
    this.probe?.unsubscribe()
    this.probe = null
    await bounded(Promise.all(server.subs.map((sub) => sub.drain())), DRAIN_MS)
    await bounded(server.idle(), DRAIN_MS)
    await this.maintenance?.stop()
    this.maintenance = null
  }
}

/** Waits for `p` at most `ms`; its failure or lateness is not an error here. */
export async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}
