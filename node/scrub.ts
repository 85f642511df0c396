/**
 * Scrub: walks the stored blocks in hash order, slowly (one block, then a pause),
 * re-hashing each. A copy whose bytes no longer match its name is deleted and
 * logged; meta finds it missing and re-replicates from a good copy.
 */
import { createHash } from 'node:crypto'
import type { Logger } from '../common/log'
import type { BlockStore } from './block-store'
import type { NodeMetrics } from './metrics'

export class Scrubber {
  private timer: NodeJS.Timeout | null = null
  private cursor = ''
  private stopped = false

  constructor(
    private readonly store: BlockStore,
    private readonly pauseMs: number,
    private readonly metrics: NodeMetrics,
    private readonly log: Logger,
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
    const { hashes } = await this.store.list(this.cursor, 1)
    const hash = hashes[0]
    if (!hash) {
      this.cursor = ''
      return true
    }
    this.cursor = hash
    const h = createHash('sha256')
    try {
      for await (const chunk of await this.store.get(hash)) h.update(chunk as Buffer)
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false // deleted meanwhile
      throw err
    }
    this.metrics.scrubbed.inc()
    const got = h.digest('hex')
    if (got !== hash) {
      this.metrics.corrupt.inc()
      await this.store.delete(hash)
      this.log.error(`scrub: block ${hash} is corrupt on disk (hashes to ${got}); deleted this copy`)
    }
    return false
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }
}
