/**
 * This mount's session lease (docs/meta.md#sessions): registered once, renewed
 * every third of its TTL with the epoch meta gave it. A renewal refused with
 * ESTALE means the session expired while we could not reach meta (partition,
 * long outage): meta may have released our open files, so we restore them
 * (sessionRestore with every inode we hold open) and fail, loudly, the handles
 * of inodes that are already gone. A lapse never passes silently.
 */
import { BerthError } from '../common/errors'
import { logger } from '../common/log'
import type { MetaApi } from './stores'

const log = logger('client')
/** sessionRestore page size (protocol bound). */
const RESTORE_PAGE = 10_000

export interface SessionLeaseOptions {
  session: string
  ttlMs: number
  host: string
  /** Every inode this mount holds registered with meta, with how many registrations. */
  held: () => Array<{ ino: number; count: number }>
  /** Inodes freed while our lease had lapsed: their handles must fail (EIO). */
  lost: (inos: number[]) => void
  /** The lease lapsed and is being restored: meta dropped the session's locks (client/locks.ts forgetAll). */
  lapsed?: () => void
}

export class SessionLease {
  private epoch = 0
  private timer: NodeJS.Timeout | undefined
  private renewing: Promise<void> | undefined

  constructor(
    private readonly meta: MetaApi,
    private readonly opts: SessionLeaseOptions,
  ) {}

  async register(): Promise<void> {
    const r = await this.meta.call('session', { session: this.opts.session, ttlMs: this.opts.ttlMs, host: this.opts.host })
    this.epoch = r.epoch
  }

  start(): void {
    this.timer ??= setInterval(() => void this.renew(), Math.floor(this.opts.ttlMs / 3))
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One renewal (or restore after ESTALE); never two at once. */
  renew(): Promise<void> {
    this.renewing ??= this.renewOnce().finally(() => (this.renewing = undefined))
    return this.renewing
  }

  private async renewOnce(): Promise<void> {
    try {
      const r = await this.meta.call('session', { session: this.opts.session, ttlMs: this.opts.ttlMs, host: this.opts.host, epoch: this.epoch })
      this.epoch = r.epoch
    } catch (err) {
      if (err instanceof BerthError && err.code === 'ESTALE') await this.restore(err.message)
      else log.warn('session renewal failed', err)
    }
  }

  private async restore(why: string): Promise<void> {
    const held = this.opts.held()
    log.warn(`session lease lapsed (${why}); restoring ${held.length} open inode(s)`)
    this.opts.lapsed?.()
    const lost: number[] = []
    try {
      for (let i = 0; i === 0 || i < held.length; i += RESTORE_PAGE) {
        const r = await this.meta.call('sessionRestore', {
          session: this.opts.session,
          ttlMs: this.opts.ttlMs,
          host: this.opts.host,
          open: held.slice(i, i + RESTORE_PAGE),
          first: i === 0,
        })
        this.epoch = r.epoch
        lost.push(...r.lost)
      }
    } catch (err) {
      log.error('session restore failed; will retry at the next renewal', err)
      return
    }
    if (lost.length) {
      log.error(`session lease lapsed: ${lost.length} open inode(s) were freed meanwhile; their handles now fail with EIO: ${lost.slice(0, 20).join(', ')}`)
      this.opts.lost(lost)
    }
  }
}
