/**
 * The rate at which background copies (repair now; drain and rebalance share
 * it) move bytes, over a sliding window, for `berth status` ETAs. Memory is
 * one sample per second of the window.
 */
export class MoveMeter {
  private readonly samples: Array<{ at: number; bytes: number }> = []

  constructor(
    private readonly windowMs = 30_000,
    private readonly clock: () => number = Date.now,
  ) {}

  add(bytes: number): void {
    const now = this.clock()
    const sec = Math.floor(now / 1000) * 1000
    const last = this.samples[this.samples.length - 1]
    if (last && last.at === sec) last.bytes += bytes
    else this.samples.push({ at: sec, bytes })
    this.trim(now)
  }

  /** Bytes per second over the window (0 when nothing moved in it). */
  rate(): number {
    const now = this.clock()
    this.trim(now)
    if (!this.samples.length) return 0
    const total = this.samples.reduce((s, x) => s + x.bytes, 0)
    const span = Math.max(1000, now - this.samples[0]!.at)
    return (total / span) * 1000
  }

  private trim(now: number): void {
    while (this.samples.length && this.samples[0]!.at < now - this.windowMs) this.samples.shift()
  }
}
