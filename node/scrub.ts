/**
 * Scrub: walks the stored blocks in hash order, slowly (one block, then a pause),
 * re-hashing each. A copy whose bytes no longer match its name goes to trash
 * and is reported to meta at once (`badCopy`), which drops the replica row and
 * repairs the block from a good copy. Meta's `verify` command runs the same
 * check on one copy on demand (a reader reported it bad).
 */
import type { Logger } from '../common/log'
import type { BlockStore } from './block-store'
import type { NodeMetrics } from './metrics'

/** Tells meta that this node's copy of `hash` was bad and is gone. Must not throw. */
export type CorruptReport = (hash: string, reason: string) => Promise<void>

export class Scrubber {
  private timer: NodeJS.Timeout | null = null
  private cursor = ''
  private stopped = false

  constructor(
    private readonly store: BlockStore,
    private readonly pauseMs: number,
    private readonly metrics: NodeMetrics,
    private readonly log: Logger,
    private readonly report: CorruptReport = async () => undefined,
  ) {}

  start(): void {
    if (this.pauseMs <= 0) return
    this.schedule(this.pauseMs)
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.step().then(
        (wrapped) => this.schedule(wrapped ? Math.max(this.pauseMs, 1000) : this.pauseMs),
        (err: unknown) => {
          this.log.warn('scrub step failed', err)
          this.schedule(Math.max(this.pauseMs, 1000))
        },
      )
    }, ms)
    this.timer.unref()
  }

  /** Checks the next block; true when a full pass just ended. */
  async step(): Promise<boolean> {
    const { entries } = await this.store.list(this.cursor, 1)
    const hash = entries[0]?.hash
    if (!hash) {
      this.cursor = ''
      return true
    }
    this.cursor = hash
    await this.check(hash)
    return false
  }

  /** Re-hashes one copy; a corrupt one is moved to trash and reported. */
  async check(hash: string): Promise<'good' | 'bad' | 'missing'> {
    const result = await this.store.checkCopy(hash)
    if (result === 'missing') return result
    this.metrics.scrubbed.inc()
    if (result === 'good') return result
    this.metrics.corrupt.inc()
    const reason = 'content hashes to neither its BLAKE3 nor its SHA-256 name'
    await this.store.discard(hash, reason)
    this.log.error(`scrub: block ${hash} is corrupt on disk (${reason}); moved this copy to trash and told meta`)
    await this.report(hash, reason)
    return 'bad'
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }
}
