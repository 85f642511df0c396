/**
 * The block census: the figures `berth status` and /metrics report that read
 * every referenced block (count, bytes, blocks below min(R, live) and below R,
 * blocks whose copies share one zone). One pass computes them all, and a pass
 * is reused for ten times as long as it took: a cluster with a few blocks gets
 * fresh figures on every call, while one with millions of blocks spends at most
 * about a tenth of the scan worker's time (meta/scan-reader.ts: never meta's
 * own thread) on them however often status and Prometheus poll; a change in
 * the live nodes starts a new pass. Repair itself never waits on this: it works from its queue
 * (meta/repair-queue.ts). Concurrent callers share one pass.
 */
import { wantedReplicas } from './cluster-ops'
import type { MetaEnv } from './context'

export interface CensusResult {
  blocks: number
  bytes: number
  /** Below min(R, live nodes): repair can fix these now. */
  underReplicated: number
  /** Below R (more than underReplicated when fewer than R nodes are live). */
  belowR: number
  sameZone: number
  /** When the pass ran (ms since the epoch) and how long it took. */
  at: number
  tookMs: number
  /** The live nodes it counted copies on (sorted ids): a change invalidates it. */
  live: string
}

/** A pass is reused for this many times its own duration. */
const REUSE_FACTOR = 10

interface CensusState {
  last: CensusResult | null
  running: Promise<CensusResult> | null
}
const states = new WeakMap<MetaEnv, CensusState>()

/** Passes tried in one call while the live nodes keep changing under them. */
const MAX_TRIES = 3

/**
 * The census for the live nodes as they are when it returns (after at most
 * MAX_TRIES passes): a pass counts copies on the nodes live when it started,
 * and nodes that joined meanwhile (a cluster starting, `docker-compose up`)
 * would be listed live by `status` beside counts made without them (seen: 4
 * live nodes and 25 of 27 blocks "under-replicated" right after an up).
 */
export async function census(env: MetaEnv): Promise<CensusResult> {
  for (let tries = 1; ; tries++) {
    const r = await censusOnce(env)
    if (r.live === liveKey(env) || tries >= MAX_TRIES) return r
  }
}

async function censusOnce(env: MetaEnv): Promise<CensusResult> {
  let st = states.get(env)
  if (!st) {
    st = { last: null, running: null }
    states.set(env, st)
  }
  const last = st.last
  // a node that died or came back changes every count: never reuse across that
  if (last && last.live === liveKey(env) && Date.now() - last.at < last.tookMs * REUSE_FACTOR) return last
  let running = st.running
  if (!running) {
    const s = st
    running = s.running = pass(env).then(
      (r) => {
        s.last = r
        s.running = null
        return r
      },
      (err: unknown) => {
        s.running = null
        throw err
      },
    )
  }
  return running
}

function liveKey(env: MetaEnv): string {
  return env.nodes
    .live()
    .map((n) => n.id)
    .sort()
    .join(',')
}

async function pass(env: MetaEnv): Promise<CensusResult> {
  const started = Date.now()
  const live = env.nodes.live()
  const key = liveKey(env)
  const want = wantedReplicas(env, live)
  // a scan of every referenced block: off meta's thread (meta/scan-reader.ts)
  const counted = await env.db.scan.timed<{ blocks: number; bytes: number | null; under: number | null; belowR: number | null }>(
    `SELECT COUNT(*) AS blocks, SUM(size) AS bytes, SUM(c < ?) AS under, SUM(c < ?) AS belowR FROM (
       SELECT b.size AS size,
         (SELECT COUNT(*) FROM replicas r WHERE r.hash = b.hash AND r.node_id IN (SELECT value FROM json_each(?))) AS c
       FROM blocks b WHERE b.refs > 0)`,
    [want, env.replicas, JSON.stringify(live.map((n) => n.id))],
  )
  const row = counted.rows[0]
  const zones = await sameZoneBlocks(env)
  return {
    blocks: row?.blocks ?? 0,
    bytes: row?.bytes ?? 0,
    underReplicated: row?.under ?? 0,
    belowR: row?.belowR ?? 0,
    sameZone: zones.n,
    at: started,
    // the queries' own time, not the wait for the worker (its start-up would stretch the reuse)
    tookMs: counted.ms + zones.ms,
    live: key,
  }
}

/** Referenced blocks whose 2+ live copies all sit in one zone while 2+ zones are live. */
async function sameZoneBlocks(env: MetaEnv): Promise<{ n: number; ms: number }> {
  const zones = Object.fromEntries(env.nodes.live().flatMap((n) => (n.zone ? [[n.id, n.zone]] : [])))
  if (new Set(Object.values(zones)).size < 2) return { n: 0, ms: 0 }
  const r = await env.db.scan.timed<{ n: number }>(
    `SELECT COUNT(*) AS n FROM (
       SELECT r.hash FROM replicas r JOIN json_each(?) z ON z.key = r.node_id JOIN blocks b ON b.hash = r.hash AND b.refs > 0
       GROUP BY r.hash HAVING COUNT(*) >= 2 AND COUNT(DISTINCT z.value) < 2)`,
    [JSON.stringify(zones)],
  )
  return { n: r.rows[0]?.n ?? 0, ms: r.ms }
}
