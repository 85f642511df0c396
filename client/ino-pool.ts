/**
 * Inode numbers meta reserved for this mount's session (the `inos`
 * request), handed out in increasing order to mkdirs answered ahead
 * (client/ahead-pipeline.ts, docs/semantics.md#mkdir).
 *
 * A new reservation replaces what the session had left at meta, so one is
 * asked for only once every number of the last has been handed out and
 * every change using one is queued in the pipeline (`sent`), and it goes
 * behind the pipeline's barrier: by the time meta applies it, every change
 * that used an older number has been applied. Until it is back, mkdirs and
 * creates wait for meta as before.
 *
 *   empty --(take: ask meta)--> asking --(reply)--> holding --(last one taken)--> empty
 *   asking --(failure, e.g. an older meta: ENOSYS)--> off (never asked again) or empty
 */
import type { BerthError } from '../common/errors'
import { logger } from '../common/log'
import type { MetaApi } from './stores'

const log = logger('client')
/** One reservation: a trip to meta per this many mkdirs. */
const RESERVE = 256

export class InoPool {
  private next = 0
  private last = -1
  private asking = false
  private off = false
  /** Numbers taken whose change is not in the pipeline's queue yet. */
  private unsent = 0

  constructor(
    private readonly meta: MetaApi,
    private readonly session: string,
  ) {}

  /** A reserved number, or undefined (none held now: the caller waits for meta instead); `sent` must follow. */
  take(): number | undefined {
    if (this.next <= this.last) {
      this.unsent++
      return this.next++
    }
    this.refillWhenSent()
    return undefined
  }

  /** The change that took a number is queued (or was given up). */
  sent(): void {
    this.unsent--
    this.refillWhenSent()
  }

  private refillWhenSent(): void {
    if (this.next > this.last && this.unsent === 0) this.refill()
  }

  /** What is held may not be meta's any more (a mkdir with one was refused): start again. */
  reset(): void {
    this.next = 0
    this.last = -1
  }

  private refill(): void {
    if (this.asking || this.off) return
    this.asking = true
    this.meta
      .call('inos', { session: this.session, count: RESERVE })
      .then(
        (r) => {
          this.next = r.first
          this.last = r.first + r.count - 1
        },
        (err: unknown) => {
          if ((err as BerthError).code === 'ENOSYS') {
            this.off = true
            log.info('meta reserves no inode numbers (an older meta): every mkdir waits for meta')
          } else log.warn(`reserving inode numbers failed: ${(err as Error).message}`)
        },
      )
      .finally(() => (this.asking = false))
  }
}
