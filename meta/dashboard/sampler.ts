/**
 * The dashboard's recent history: a fixed ring of samples, one every
 * SAMPLE_MS, kept in meta's memory so a page opened now already shows the
 * last minutes (Prometheus keeps the long history; this only feeds the page).
 *
 * Each answered request is counted as it happens (one array increment per
 * request): its latency goes into a log-scale histogram of the current
 * interval (four buckets per doubling, so a quantile is exact to within 19%),
 * and its op into a per-op count and time. At each tick the interval becomes
 * one sample and the histogram starts again. Memory is bounded: RING samples
 * of a few numbers each, plus one small map of per-op totals per sample.
 */
import type { DashboardSample } from './types'

/** A sample as kept: the wire form plus per-op totals (count, seconds) for topOps. */
type Kept = DashboardSample & { perOp: Record<string, [number, number]> }

export const SAMPLE_MS = 2000
/** 300 samples of 2 s: the last 10 minutes. */
export const RING = 300

const BUCKETS_PER_DOUBLING = 4
/** Bucket i holds latencies up to 2^(i/4) microseconds; the last one everything above. */
const BUCKETS = 24 * BUCKETS_PER_DOUBLING + 1

export class OpsSampler {
  private readonly ring: Kept[] = []
  private hist = new Uint32Array(BUCKETS)
  private ops = 0
  private errors = 0
  private maxSeconds = 0
  private perOp = new Map<string, { n: number; s: number }>()
  private timer: NodeJS.Timeout | null = null

  constructor(
    /** Extra figures read at each tick (the copy rate). */
    private readonly extra: () => { copyRate: number },
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.tick(), SAMPLE_MS)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  /** One answered request (the same call meta's Prometheus histogram gets). */
  observe(op: string, seconds: number, code: string | null): void {
    this.ops++
    if (code !== null) this.errors++
    if (seconds > this.maxSeconds) this.maxSeconds = seconds
    const us = Math.max(1, seconds * 1e6)
    this.hist[Math.min(BUCKETS - 1, Math.ceil(Math.log2(us) * BUCKETS_PER_DOUBLING))]!++
    const p = this.perOp.get(op)
    if (p) {
      p.n++
      p.s += seconds
    } else this.perOp.set(op, { n: 1, s: seconds })
  }

  /** Closes the current interval into a sample (the timer calls this; tests may too). */
  tick(): void {
    const intervalS = SAMPLE_MS / 1000
    const sample: Kept = {
      t: this.clock(),
      opsPerS: this.ops / intervalS,
      errorsPerS: this.errors / intervalS,
      p50Ms: this.quantileMs(0.5),
      p99Ms: this.quantileMs(0.99),
      maxMs: this.maxSeconds * 1000,
      copyBytesPerS: this.extra().copyRate,
      perOp: Object.fromEntries([...this.perOp].map(([op, v]) => [op, [v.n, v.s]])),
    }
    this.ring.push(sample)
    if (this.ring.length > RING) this.ring.shift()
    this.hist = new Uint32Array(BUCKETS)
    this.ops = 0
    this.errors = 0
    this.maxSeconds = 0
    this.perOp = new Map()
  }

  /** Samples taken after `since` (ms epoch), oldest first. */
  since(since: number): DashboardSample[] {
    return this.ring.filter((s) => s.t > since).map(({ perOp: _perOp, ...wire }) => wire)
  }

  /** Per-op rate and mean latency over the last `ms`, busiest first. */
  topOps(ms: number): Array<{ op: string; perS: number; meanMs: number }> {
    const from = this.clock() - ms
    const sum = new Map<string, { n: number; s: number }>()
    let spanS = 0
    for (const x of this.ring) {
      if (x.t <= from) continue
      spanS += SAMPLE_MS / 1000
      for (const [op, [n, s]] of Object.entries(x.perOp)) {
        const v = sum.get(op) ?? { n: 0, s: 0 }
        v.n += n
        v.s += s
        sum.set(op, v)
      }
    }
    if (spanS === 0) return []
    return [...sum]
      .map(([op, v]) => ({ op, perS: v.n / spanS, meanMs: (v.s / v.n) * 1000 }))
      .sort((a, b) => b.perS - a.perS)
  }

  /** Upper bound of the bucket holding quantile q, in ms; 0 with no requests. */
  private quantileMs(q: number): number {
    if (this.ops === 0) return 0
    const want = Math.ceil(q * this.ops)
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.hist[i]!
      if (seen >= want) return Math.min(2 ** (i / BUCKETS_PER_DOUBLING) / 1000, this.maxSeconds * 1000)
    }
    return this.maxSeconds * 1000
  }
}
