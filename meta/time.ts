/**
 * The clock of the metadata service.
 *
 * A mutation must give the same result wherever it is applied (the leader now,
 * a replica later, docs/meta.md#replication), so it never reads the wall clock
 * itself: the engine stamps each mutation with one time when it accepts it
 * (`MutationClock`) and runs the handler inside `withClock`; nowTs()/clockMs()
 * then return that stamp (clockMs() in ms). Outside a mutation (maintenance timers, reads) they
 * return the wall clock.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Timespec } from '../common/protocol'

/** Wall clock anchored once, advanced by the monotonic clock: ns resolution. */
const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint()

export interface MutationClock {
  /** The mutation's time, exact (inode times). */
  readonly ts: Timespec
  /** The same instant in ms (leases, grace periods). */
  readonly ms: number
}

const current = new AsyncLocalStorage<MutationClock>()

export function wallClock(): MutationClock {
  const ns = base + process.hrtime.bigint()
  return { ts: [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)], ms: Number(ns / 1_000_000n) }
}

/** Runs `fn` (and everything it awaits) with `clock` as the time. */
export function withClock<T>(clock: MutationClock, fn: () => T): T {
  return current.run(clock, fn)
}

export function nowTs(): Timespec {
  return (current.getStore() ?? wallClock()).ts
}

export function clockMs(): number {
  return (current.getStore() ?? wallClock()).ms
}
