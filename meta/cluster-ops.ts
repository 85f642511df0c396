/** Cluster-wide replies: hello, statfs, status. Read-only. */
import type { MetaReplies, NodeInfo, RepairProgress } from '../common/protocol'
import { NAME_MAX } from '../common/names'
import type { MetaEnv } from './context'
import { rawCapacity } from './capacity'
import { drainProgress } from './node-admin'
import { imbalance } from './rebalance'
import { queued } from './repair-queue'

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
  // each distinct disk once (meta/capacity.ts); small files' bytes live in meta
  // itself, so "Used" counts them on top of the blocks
  const raw = rawCapacity(live)
  const inline = await inlineBytes(env)
  const blocks = Math.floor((raw.capacity / r + inline) / STATFS_BSIZE)
  const bfree = Math.floor(raw.free / r / STATFS_BSIZE)
  const inodes = (await env.db.read.get<{ n: number }>('SELECT COUNT(*) AS n FROM inodes'))?.n ?? 0
  return { bsize: STATFS_BSIZE, blocks, bfree, bavail: bfree, files: MAX_INODES, ffree: Math.max(0, MAX_INODES - inodes), namemax: NAME_MAX }
}

/**
 * Bytes of inline (small-file) data, cached briefly: df polls statfs, and the
 * sum reads every inline row.
 */
const inlineCache = new WeakMap<MetaEnv, { at: number; bytes: number }>()
const INLINE_CACHE_MS = 2000
export async function inlineBytes(env: MetaEnv): Promise<number> {
  const hit = inlineCache.get(env)
  if (hit && Date.now() - hit.at < INLINE_CACHE_MS) return hit.bytes
  const bytes = (await env.db.read.get<{ n: number }>('SELECT COALESCE(SUM(length(data)), 0) AS n FROM inline_chunks'))?.n ?? 0
  inlineCache.set(env, { at: Date.now(), bytes })
  return bytes
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
    repair: await repairProgress(env),
    drains: await drainProgress(env, env.repairMeter?.rate() ?? 0),
    sameZone: await sameZone(env),
    rebalance: rebalanceProgress(env),
  }
}

export async function repairProgress(env: MetaEnv): Promise<RepairProgress> {
  const q = await queued(env.db.read)
  const rate = env.repairMeter?.rate() ?? 0
  return { blocks: q.due, bytes: q.bytes, parked: q.parked, rate, etaS: rate > 0 ? q.bytes / rate : null }
}

/**
 * Referenced blocks whose 2+ live copies all sit in one zone while 2+ zones
 * are live (status only: this one reads every replica row).
 */
export async function sameZone(env: MetaEnv): Promise<number> {
  const zones = Object.fromEntries(env.nodes.live().flatMap((n) => (n.zone ? [[n.id, n.zone]] : [])))
  if (new Set(Object.values(zones)).size < 2) return 0
  const row = await env.db.read.get<{ n: number }>(
    `SELECT COUNT(*) AS n FROM (
       SELECT r.hash FROM replicas r JOIN json_each(?) z ON z.key = r.node_id JOIN blocks b ON b.hash = r.hash AND b.refs > 0
       GROUP BY r.hash HAVING COUNT(*) >= 2 AND COUNT(DISTINCT z.value) < 2)`,
    [JSON.stringify(zones)],
  )
  return row?.n ?? 0
}

function rebalanceProgress(env: MetaEnv): MetaReplies['status']['rebalance'] {
  const gap = imbalance(env.nodes.homes().filter((n) => n.state === 'up' || n.state === 'full'), env.rebalance)
  if (!gap) return null
  const rate = env.repairMeter?.rate() ?? 0
  return { from: gap.from.id, to: gap.to.id, bytes: gap.bytes, etaS: rate > 0 ? gap.bytes / rate : null }
}
