/**
 * Background work of meta, each loop never overlapping itself:
 * - session expiry: releases the open files and pins of sessions whose lease
 *   ran out, freeing inodes that were unlinked while open;
 * - block GC (meta/block-gc.ts): unreferenced, unpinned blocks past the grace;
 * - reconciliation (meta/reconcile.ts): the replica table against each node's
 *   inventory; orphans collected after the orphan age;
 * - repair (meta/repair.ts): suspects verified, queued blocks copied back up
 *   to min(R, live) live copies and trimmed down to R.
 * Reconciliation and repair take turns (one lock): both move replica rows, and
 * a trim between an inventory page and its transaction would look like a copy
 * to adopt.
 */
import type { NatsConnection } from 'nats'
import type { Logger } from '../common/log'
import { collectGarbage } from './block-gc'
import { Changes, type MetaEnv } from './context'
import { expireSessions } from './files'
import { LifecycleStats } from './lifecycle-stats'
import { nodeAsker, type AskNode } from './node-commands'
import { Reconciler } from './reconcile'
import { RateLimit } from './rate-limit'
import { Rebalance } from './rebalance'
import { Repair } from './repair'
import { publishChanges } from './server'

/** Repair's default byte rate: a share of one shared disk, not all of it. */
export const DEFAULT_REPAIR_MBPS = 64

export interface MaintenanceOptions {
  gcGraceMs: number
  /** Copies of blocks meta does not know are deleted once idle this long. */
  orphanAgeMs: number
  reconcileEveryMs: number
  /** Percent of one core a reconciliation pass may use (default 100: unpaced). */
  reconcileCpuPct?: number
  sessionEveryMs?: number
  replicateEveryMs?: number
  /** Byte rate of repair copies, MB/s (0: unlimited). */
  repairMbps?: number
}

export class Maintenance {
  private readonly timers: NodeJS.Timeout[] = []
  private readonly running = new Set<Promise<void>>()
  private stopped = false
  private copies: Promise<void> = Promise.resolve()
  readonly stats = new LifecycleStats()
  private readonly ask: AskNode
  private readonly reconciler: Reconciler
  private readonly repairer: Repair

  constructor(
    private readonly nc: NatsConnection,
    private readonly env: MetaEnv,
    private readonly log: Logger,
    private readonly opts: MaintenanceOptions,
  ) {
    this.ask = env.askNode ?? nodeAsker(nc, env.cluster)
    this.reconciler = new Reconciler(env, this.ask, log, this.stats, { orphanAgeMs: opts.orphanAgeMs, pageSize: 1000, cpuPct: opts.reconcileCpuPct })
    const limit = new RateLimit((opts.repairMbps ?? DEFAULT_REPAIR_MBPS) * 1e6)
    this.repairer = new Repair(env, this.ask, log, this.stats, { limit }, new Rebalance(env, this.ask, log, this.stats, { limit }))
  }

  start(): void {
    const isStopped = () => this.stopped
    this.every(this.opts.sessionEveryMs ?? 1000, 'session expiry', () => this.expire())
    this.every(Math.min(5000, Math.max(200, Math.floor(this.opts.gcGraceMs / 4))), 'block gc', () => this.gc())
    this.every(this.opts.replicateEveryMs ?? 5000, 'repair', () => this.takingTurns(() => this.repairer.pass(isStopped)))
    // one page per turn: a paced pass over a large cluster rests between pages, and repair runs meanwhile
    this.every(this.opts.reconcileEveryMs, 'reconciliation', () => this.reconciler.pass(isStopped, (page) => this.takingTurns(page)))
  }

  /** Stops the loops and waits for a running pass to finish. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    await Promise.allSettled([...this.running])
  }

  private takingTurns<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.copies.then(fn)
    this.copies = turn.then(
      () => undefined,
      () => undefined,
    )
    return turn
  }

  private every(ms: number, what: string, fn: () => Promise<void>): void {
    let busy = false
    const timer = setInterval(() => {
      if (busy || this.stopped) return
      busy = true
      const p = fn()
        .catch((err: unknown) => this.log.warn(`${what} failed`, err))
        .finally(() => {
          busy = false
          this.running.delete(p)
        })
      this.running.add(p)
    }, ms)
    timer.unref()
    this.timers.push(timer)
  }

  private async expire(): Promise<void> {
    const ch = new Changes()
    const n = await expireSessions(this.env, ch)
    if (n) this.log.info(`expired ${n} session(s)`)
    publishChanges(this.nc, this.env.cluster, ch)
  }

  async gc(): Promise<void> {
    this.stats.gcBlocks += await collectGarbage(this.env, this.ask, this.log, this.opts.gcGraceMs)
  }
}
