/** Cluster-wide replies: hello, statfs, status. Read-only. */
import { MIN_PEER_PROTOCOL, PROTOCOL, refusePeer, releaseName } from '../common/compat'
import { BerthError } from '../common/errors'
import type { MetaParsed, MetaReplies, NodeInfo, RepairProgress } from '../common/protocol'
import { NAME_MAX } from '../common/names'
import type { MetaEnv } from './context'
import { rawCapacity } from './capacity'
import { census } from './census'
import { drainProgress } from './node-admin'
import { imbalance } from './rebalance'
import { queued } from './repair-queue'

export const STATFS_BSIZE = 4096
/** The inode budget statfs reports (f_files); inode numbers themselves reach the kernel as 64-bit node ids. */
const MAX_INODES = 2 ** 32 - 1

/**
 * The first call of every client: refused (EPROTO, before the token is handed
 * out) when the client's protocol is outside what this meta serves.
 */
export function hello(env: MetaEnv, body: Pick<MetaParsed<'hello'>, 'protocol' | 'release'>): MetaReplies['hello'] {
  const refused = refusePeer('client', 'this client', body)
  if (refused) throw new BerthError('EPROTO', refused)
  return {
    cluster: env.cluster,
    metaId: env.metaId,
    token: env.secret,
    chunkSize: env.chunkSize,
    replicas: env.replicas,
    nodes: env.nodes.list(),
    protocol: PROTOCOL,
    minProtocol: MIN_PEER_PROTOCOL.client,
    release: releaseName(),
    // meta/serving.ts publishes Invalidation.all before it serves (clients keep a long cache TTL)
    forgetsOnServe: true,
  }
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
  const inodes = (await env.db.scan.get<{ n: number }>('SELECT COUNT(*) AS n FROM inodes'))?.n ?? 0
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
  const bytes = (await env.db.scan.get<{ n: number }>('SELECT COALESCE(SUM(length(data)), 0) AS n FROM inline_chunks'))?.n ?? 0
  inlineCache.set(env, { at: Date.now(), bytes })
  return bytes
}

export async function status(env: MetaEnv): Promise<MetaReplies['status']> {
  // counts scan their tables: off meta's thread (meta/scan-reader.ts)
  const count = async (sql: string) => (await env.db.scan.get<{ n: number }>(sql))?.n ?? 0
  const blocks = await census(env)
  return {
    metaId: env.metaId,
    startedAt: env.startedAt,
    nodes: env.nodes.list(),
    inodes: await count('SELECT COUNT(*) AS n FROM inodes'),
    blocks: blocks.blocks,
    bytes: blocks.bytes,
    underReplicated: blocks.underReplicated,
    belowR: blocks.belowR,
    censusAgeMs: Date.now() - blocks.at,
    replicas: env.replicas,
    sessions: await count('SELECT COUNT(*) AS n FROM sessions'),
    openFiles: await count('SELECT COUNT(*) AS n FROM open_files'),
    repair: await repairProgress(env),
    drains: await drainProgress(env, env.repairMeter?.rate() ?? 0),
    sameZone: blocks.sameZone,
    rebalance: rebalanceProgress(env),
    ...(env.replication ? { replication: await env.replication.status() } : {}),
  }
}

export async function repairProgress(env: MetaEnv): Promise<RepairProgress> {
  const q = await queued(env.db.read)
  const rate = env.repairMeter?.rate() ?? 0
  return { blocks: q.due, bytes: q.bytes, parked: q.parked, rate, etaS: rate > 0 ? q.bytes / rate : null }
}

function rebalanceProgress(env: MetaEnv): MetaReplies['status']['rebalance'] {
  const gap = imbalance(env.nodes.homes().filter((n) => n.state === 'up' || n.state === 'full'), env.rebalance)
  if (!gap) return null
  const rate = env.repairMeter?.rate() ?? 0
  return { from: gap.from.id, to: gap.to.id, bytes: gap.bytes, etaS: rate > 0 ? gap.bytes / rate : null }
}
