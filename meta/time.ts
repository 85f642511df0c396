import type { Timespec } from '../common/protocol'

/** Wall clock anchored once, advanced by the monotonic clock: ns resolution. */
const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()

export function nowTs(): Timespec {
  const ns = base + process.hrtime.bigint()
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)]
}
