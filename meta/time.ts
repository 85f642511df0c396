/**
 * The clock of the metadata service.
 *
 * A mutation must give the same result wherever it is applied (the leader now,
 * a replica later, docs/meta.md#replication), so it never reads the wall clock
 * itself: the engine stamps each mutation with one time when it accepts it
 * (`MutationClock`) and sets it on the transaction the handler runs in
 * (`Conn.clock`, meta/sqlite.ts); nowTs(tx)/clockMs(tx) then return that stamp
 * (clockMs in ms). Outside a mutation (maintenance timers, reads: a connection
 * without a clock, or null) they return the wall clock.
 *
 * The stamp travels on the transaction rather than in an AsyncLocalStorage:
 * on Node 20 AsyncLocalStorage turns on V8's promise hooks for the whole
 * process, and meta creates several promises per statement; the hooks took
 * about 4 % of meta's CPU under a stream of creates (docs/bench.md). The
 * writer runs one mutation at a time (meta/sqlite.ts), so the clock on it is
 * always the running mutation's.
 */
import type { Timespec } from '../common/protocol'

/** Wall clock anchored once, advanced by the monotonic clock: ns resolution. */
const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()

export interface MutationClock {
  /** The mutation's time, exact (inode times). */
  readonly ts: Timespec
  /** The same instant in ms (leases, grace periods). */
  readonly ms: number
}

/** What may carry a mutation's clock: the transaction it runs in. */
export interface Clocked {
  readonly clock: MutationClock | null
}

export function wallClock(): MutationClock {
  const ns = base + process.hrtime.bigint()
  return { ts: [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)], ms: Number(ns / 1_000_000n) }
}

/** The time of the mutation running in `tx`, or the wall clock outside one. */
export function nowTs(tx: Clocked | null): Timespec {
  return (tx?.clock ?? wallClock()).ts
}

/** The same in ms. */
export function clockMs(tx: Clocked | null): number {
  return (tx?.clock ?? wallClock()).ms
}
