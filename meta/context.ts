import type { ReplicationReport as ReplicationStatus } from '../common/protocol'
import type { Database } from './sqlite'
import type { NodeTable } from './nodes'
import type { AskNode } from './node-commands'
import type { MoveMeter } from './move-meter'
import type { GcRunReport } from '../common/protocol'

/** Settings and state every operation handler may use. */
export interface MetaEnv {
  readonly db: Database
  readonly cluster: string
  readonly metaId: string
  readonly startedAt: number
  readonly secret: string
  readonly chunkSize: number
  readonly replicas: number
  readonly nodes: NodeTable
  /** Sends a command to one data node (absent in tests that run handlers without NATS). */
  readonly askNode?: AskNode
  /** Bytes repair copies, for status ETAs (absent: no background loops). */
  readonly repairMeter?: MoveMeter
  /** When rebalance moves blocks (absent: the defaults in meta/rebalance.ts). */
  readonly rebalance?: RebalancePolicy
  /** Set on a replicated meta (meta/replica.ts): its place in the log, for status. */
  replication?: { status(): ReplicationStatus | Promise<ReplicationStatus> }
  /** The background loops, for operator requests (`berth gc`); absent: no loops run. */
  readonly maintenance?: MaintenanceControl
}

/** What operator requests may ask of meta's background loops (meta/maintenance.ts). */
export interface MaintenanceControl {
  readonly graceMs: number
  readonly orphanAgeMs: number
  /** One GC pass and one full reconciliation pass now. */
  runNow(): Promise<GcRunReport>
}

export type { ReplicationReport as ReplicationStatus } from '../common/protocol'

/**
 * Rebalance starts when a node's stored bytes are more than `threshold` off
 * the mean AND the bytes to move are at least `minBytes`: a small cluster
 * (or a test) whose nodes differ by a few MiB is not worth background copies.
 */
export interface RebalancePolicy {
  readonly threshold: number
  readonly minBytes: number
}

/** What one request changed; published on `<cluster>.inval` after it commits. */
export class Changes {
  readonly inos = new Set<number>()
  readonly dirs = new Set<number>()
  /** Names removed or replaced: [parent, name]. New names need none (nobody caches a miss). */
  readonly entries: Array<[number, string]> = []
  /** Inodes whose locks were released or downgraded (Invalidation.locks). */
  readonly locks = new Set<number>()
  /** The request id's client part of the mutation (Invalidation.by). */
  by: string | undefined
  ino(...inos: number[]): void {
    for (const i of inos) this.inos.add(i)
  }
  dir(...dirs: number[]): void {
    for (const d of dirs) this.dirs.add(d)
  }
  entry(parent: number, name: string): void {
    this.entries.push([parent, name])
  }
  get empty(): boolean {
    return this.inos.size === 0 && this.dirs.size === 0 && this.locks.size === 0
  }
  lock(ino: number): void {
    this.locks.add(ino)
  }
  /** Adds what `other` changed (one item of a batch, once it committed). */
  absorb(other: Changes): void {
    for (const i of other.inos) this.inos.add(i)
    for (const d of other.dirs) this.dirs.add(d)
    for (const l of other.locks) this.locks.add(l)
    this.entries.push(...other.entries)
  }
}
