/**
 * What `GET /api/state` answers: the contract between meta's dashboard server
 * and the page's script (both import these types; nothing else does).
 */
import type { DrainProgress, NodeInfo, RepairProgress, ReplicationReport } from '../../common/protocol'

/** One interval of SAMPLE_MS (meta/dashboard/sampler.ts). */
export interface DashboardSample {
  /** End of the interval, ms since the epoch (meta's clock). */
  t: number
  opsPerS: number
  /** Requests answered with an error code (ENOENT of a lookup included). */
  errorsPerS: number
  /** Latency quantiles of the requests in the interval (0 when there were none). */
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Bytes/s of background copies (repair, drain, rebalance), 30 s average. */
  copyBytesPerS: number
}

/**
 * A node as the page shows it: `shown` folds liveness, the operator's request
 * and the node's own state into one word. dead: no heartbeat for NODE_DEAD_MS;
 * draining: its copies are being moved off (drained: none left); full: it
 * takes no new writes; live: up and taking writes.
 */
export type DashboardNode = NodeInfo & { shown: 'live' | 'dead' | 'draining' | 'drained' | 'full' }

export interface DashboardSession {
  id: string
  host: string
  /** ms until the session expires unless renewed (mounts renew well before). */
  expiresInMs: number
  openFiles: number
}

/** A bar of background work: what is left now and the largest backlog since it was last empty. */
export interface Backlog {
  bytes: number
  peakBytes: number
}

export interface DashboardLeaderState {
  role: 'leader' | 'single'
  cluster: string
  metaId: string
  startedAt: number
  /** meta's clock when the state was read. */
  at: number
  replicas: number
  nodes: DashboardNode[]
  /** Live capacity, each filesystem once (meta/capacity.ts), raw bytes before dividing by R. */
  capacity: { capacity: number; used: number; free: number; filesystems: number }
  inodes: number
  blocks: number
  bytes: number
  underReplicated: number
  belowR: number
  sameZone: number
  censusAgeMs: number
  /** Copies reported bad and not yet re-hashed by their node; copies confirmed corrupt since meta started. */
  suspectCopies: number
  corruptConfirmed: number
  repair: RepairProgress & { peakBytes: number }
  rebalance: { from: string; to: string; bytes: number; etaS: number | null; peakBytes: number } | null
  drains: Array<DrainProgress & { peakBytes: number }>
  sessions: DashboardSession[]
  openFiles: number
  replication?: ReplicationReport
  /** Busiest ops over the last minute. */
  topOps: Array<{ op: string; perS: number; meanMs: number }>
  samples: DashboardSample[]
  sampleMs: number
}

/** A follower of a replicated meta (--ha) has no live state: it says so and names the leader it hears. */
export interface DashboardFollowerState {
  role: 'follower' | 'stopped'
  cluster: string
  metaId: string
  at: number
  /** The leader's id as the replicas' reports name it; null when none is heard. */
  leader: string | null
}

export type DashboardState = DashboardLeaderState | DashboardFollowerState
