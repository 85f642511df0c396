/** Cluster-wide replies: hello, statfs, status. Read-only. */
import type { MetaReplies, NodeInfo } from '../common/protocol'
import { NAME_MAX } from '../common/names'
import type { MetaEnv } from './context'

export const STATFS_BSIZE = 4096
/** The inode budget statfs reports (f_files); inode numbers themselves reach the kernel as 64-bit node ids. */
const MAX_INODES = 2 ** 32 - 1

export function hello(env: MetaEnv): MetaReplies['hello'] {
  return { cluster: env.cluster, metaId: env.metaId, token: env.secret, chunkSize: env.chunkSize, replicas: env.replicas, nodes: env.nodes.list() }
}

/** Replicas a block can have right now: R, capped by the live node count. */
export function wantedReplicas(env: MetaEnv, live: NodeInfo[]): number {
  return Math.max(1, Math.min(env.replicas, live.length))
}

export async function statfs(env: MetaEnv): Promise<MetaReplies['statfs']> {
  const live = env.nodes.live()
  const r = wantedReplicas(env, live)
  const capacity = live.reduce((s, n) => s + n.capacity, 0)
  const free = live.reduce((s, n) => s + Math.max(0, n.capacity - n.used), 0)
  const blocks = Math.floor(capacity / r / STATFS_BSIZE)
  const bfree = Math.floor(free / r / STATFS_BSIZE)
  const inodes = (await env.db.read.get<{ n: number }>('SELECT COUNT(*) AS n FROM inodes'))?.n ?? 0
  return { bsize: STATFS_BSIZE, blocks, bfree, bavail: bfree, files: MAX_INODES, ffree: Math.max(0, MAX_INODES - inodes), namemax: NAME_MAX }
}

/**
 * Referenced blocks with fewer live replicas than `want`. Counted twice for
 * status: below min(R, live) (repair can fix these now) and below R (a
 * cluster with fewer live nodes than R says so instead of reporting 0).
 */
export async function blocksBelow(env: MetaEnv, want: number): Promise<number> {
  const live = env.nodes.live()
  const row = await env.db.read.get<{ n: number }>(
    `SELECT COUNT(*) AS n FROM blocks b WHERE b.refs > 0 AND
       (SELECT COUNT(*) FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) < ?`,
    [JSON.stringify(live.map((n) => n.id)), want],
  )
  return row?.n ?? 0
}

export async function underReplicated(env: MetaEnv): Promise<number> {
  return blocksBelow(env, wantedReplicas(env, env.nodes.live()))
}

export async function status(env: MetaEnv): Promise<MetaReplies['status']> {
  const c = env.db.read
  const count = async (sql: string) => (await c.get<{ n: number }>(sql))?.n ?? 0
  return {
    metaId: env.metaId,
    startedAt: env.startedAt,
    nodes: env.nodes.list(),
    inodes: await count('SELECT COUNT(*) AS n FROM inodes'),
    blocks: await count('SELECT COUNT(*) AS n FROM blocks WHERE refs > 0'),
    bytes: await count('SELECT COALESCE(SUM(size), 0) AS n FROM blocks WHERE refs > 0'),
    underReplicated: await underReplicated(env),
    belowR: await blocksBelow(env, env.replicas),
    replicas: env.replicas,
    sessions: await count('SELECT COUNT(*) AS n FROM sessions'),
    openFiles: await count('SELECT COUNT(*) AS n FROM open_files'),
  }
}
