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
import type { GcRunReport } from '../common/protocol'
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
  /** GC passes, the timer's and an operator's (`berth gc --run`), one at a time. */
  private gcTurn: Promise<unknown> = Promise.resolve()
  /** Reconciliation passes likewise: two would share the per-node cursors. */
  private reconcileTurn: Promise<unknown> = Promise.resolve()
  private readonly ask: AskNode
  private readonly reconciler: Reconciler
  private readonly repairer: Repair

  constructor(
    private readonly nc: NatsConnection,
    private readonly env: MetaEnv,
    private readonly log: Logger,
    private readonly opts: MaintenanceOptions,
    /** Shared across restarts of the loops (a replica that leads again keeps counting). */
    readonly stats: LifecycleStats = new LifecycleStats(),
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
    this.every(this.opts.reconcileEveryMs, 'reconciliation', () => this.reconcilePass())
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
    await this.gcPass()
  }

  private gcPass(): Promise<{ blocks: number; bytes: number }> {
    const turn = this.gcTurn.then(async () => {
      const r = await collectGarbage(this.env, this.ask, this.log, this.opts.gcGraceMs)
      this.stats.gcBlocks += r.blocks
      return r
    })
    this.gcTurn = turn.catch(() => undefined)
    return turn
  }

  /**
   * `berth gc --run`: block GC until nothing is due, then one reconciliation
   * pass over every live node from the start of its inventory (orphans past
   * their age are collected). The same code, turns and pacing
   * (--reconcile-cpu-pct) as the loops.
   */
  async runNow(): Promise<GcRunReport> {
    const report: GcRunReport = { blocks: 0, bytes: 0, orphansDeleted: 0, orphansKept: 0, rowsRemoved: 0, rowsAdded: 0 }
    for (;;) {
      const r = await this.gcPass()
      report.blocks += r.blocks
      report.bytes += r.bytes
      if (r.blocks === 0 || this.stopped) break
    }
    await this.reconcilePass(() => {
      const before = { ...this.stats }
      this.reconciler.restart()
      return () => {
        report.orphansDeleted = this.stats.orphansDeleted - before.orphansDeleted
        report.orphansKept = this.stats.orphansKept - before.orphansKept
        report.rowsRemoved = this.stats.rowsRemoved - before.rowsRemoved
        report.rowsAdded = this.stats.rowsAdded - before.rowsAdded
      }
    })
    return report
  }

  /**
   * One reconciliation pass after any running one (paced, one page per turn
   * beside repair); `around` runs just before it starts and returns what to
   * run once it ended.
   */
  private reconcilePass(around?: () => () => void): Promise<void> {
    const turn = this.reconcileTurn.then(async () => {
      const after = around?.()
      await this.reconciler.pass(() => this.stopped, (page) => this.takingTurns(page))
      after?.()
    })
    this.reconcileTurn = turn.catch(() => undefined)
    return turn
  }
}
