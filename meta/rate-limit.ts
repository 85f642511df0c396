/**
 * A byte-rate limit shared by concurrent movers (repair, drain, rebalance), so
 * background copying leaves a shared disk and network to the clients. Each
 * take() books its bytes on one timeline and waits until its turn; up to
 * `burstMs` of unused rate may be spent at once.
 */
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export class RateLimit {
  private at = 0

  /** bytesPerSec <= 0: unlimited. */
  constructor(
    private readonly bytesPerSec: number,
    private readonly burstMs = 1000,
    private readonly clock: () => number = Date.now,
  ) {}

  async take(bytes: number): Promise<void> {
    if (this.bytesPerSec <= 0) return
    const now = this.clock()
    this.at = Math.max(this.at, now - this.burstMs) + (bytes / this.bytesPerSec) * 1000
    const wait = this.at - now
    if (wait > 0) await sleep(wait)
  }
}
