/**
 * The dashboard's view of the cluster, read from the same sources as
 * `berth status` (meta/cluster-ops.ts) plus the sessions, the suspect copies
 * and the sampler's history. One read serves every page polling within
 * CACHE_MS: ten open pages cost what one does.
 */
import { rawCapacity } from '../capacity'
import { status } from '../cluster-ops'
import type { MetaEnv } from '../context'
import type { LifecycleStats } from '../lifecycle-stats'
import type { OpsSampler } from './sampler'
import { SAMPLE_MS } from './sampler'
import type { DashboardNode, DashboardSession, DashboardState } from './types'
import type { NodeInfo } from '../../common/protocol'

const CACHE_MS = 1000
/** The table of sessions is cut at this many rows (the count is always exact). */
const MAX_SESSIONS = 200

export interface DashboardSource {
  env: MetaEnv
  sampler: OpsSampler
  stats: LifecycleStats
  /** single: the only meta; leader/follower/stopped: a replica of --ha. */
  role(): 'single' | 'leader' | 'follower' | 'stopped'
  /** The leader the replicas' reports name (only asked on a follower). */
  leader(): string | null
}

export class DashboardStateReader {
  private cached: { at: number; state: Promise<DashboardState> } | null = null
  /** Largest backlog since each was last empty: repair, rebalance, `drain:<node>`. */
  private readonly peaks = new Map<string, number>()

  constructor(private readonly src: DashboardSource) {}

  /** True when this meta serves requests (the only meta, or the --ha leader). */
  serving(): boolean {
    const r = this.src.role()
    return r === 'single' || r === 'leader'
  }

  /** The state, with the samples taken after `since` (ms epoch; 0: all kept). */
  async read(since: number): Promise<DashboardState> {
    const now = Date.now()
    if (!this.cached || now - this.cached.at >= CACHE_MS) {
      const state = this.compute()
      // a failed read is not kept: the next poll tries again
      state.catch(() => {
        if (this.cached?.state === state) this.cached = null
      })
      this.cached = { at: now, state }
    }
    const s = await this.cached.state
    return s.role === 'leader' || s.role === 'single' ? { ...s, samples: this.src.sampler.since(since) } : s
  }

  private async compute(): Promise<DashboardState> {
    const { env } = this.src
    const role = this.src.role()
    if (role === 'follower' || role === 'stopped') {
      return { role, cluster: env.cluster, metaId: env.metaId, at: Date.now(), leader: this.src.leader() }
    }
    const st = await status(env)
    const c = env.db.read
    const sessionRows = await c.all<{ id: string; host: string; expires: number; files: number }>(
      `SELECT s.id, s.host, s.expires, (SELECT COUNT(*) FROM open_files o WHERE o.session = s.id) AS files
       FROM sessions s ORDER BY s.host, s.id LIMIT ?`,
      [MAX_SESSIONS],
    )
    const now = Date.now()
    const sessions: DashboardSession[] = sessionRows.map((r) => ({ id: r.id, host: r.host, expiresInMs: r.expires - now, openFiles: r.files }))
    const suspects = (await c.get<{ n: number }>('SELECT COUNT(*) AS n FROM suspects'))?.n ?? 0
    const live = st.nodes.filter((n) => n.alive)
    // even (null) ends a rebalance backlog: the next one starts a new bar
    const rebalancePeak = this.peak('rebalance', st.rebalance?.bytes ?? 0)
    const drainsLeft = new Map(st.drains.map((d) => [d.node, d.blocks]))
    return {
      role,
      cluster: env.cluster,
      metaId: st.metaId,
      startedAt: st.startedAt,
      at: now,
      replicas: st.replicas,
      nodes: st.nodes.map((n): DashboardNode => ({ ...n, shown: shownState(n, drainsLeft.get(n.id)) })),
      capacity: rawCapacity(live),
      inodes: st.inodes,
      blocks: st.blocks,
      bytes: st.bytes,
      underReplicated: st.underReplicated,
      belowR: st.belowR,
      sameZone: st.sameZone,
      censusAgeMs: st.censusAgeMs,
      suspectCopies: suspects,
      corruptConfirmed: this.src.stats.corrupt,
      repair: { ...st.repair, peakBytes: this.peak('repair', st.repair.bytes) },
      rebalance: st.rebalance ? { ...st.rebalance, peakBytes: rebalancePeak } : null,
      drains: st.drains.map((d) => ({ ...d, peakBytes: this.peak(`drain:${d.node}`, d.bytes) })),
      sessions,
      openFiles: st.openFiles,
      ...(st.replication ? { replication: st.replication } : {}),
      topOps: this.src.sampler.topOps(60_000),
      samples: [],
      sampleMs: SAMPLE_MS,
    }
  }

  /** Records `bytes` left and returns the largest backlog since it was last 0 (a new backlog starts a new bar). */
  private peak(key: string, bytes: number): number {
    const p = bytes === 0 ? 0 : Math.max(bytes, this.peaks.get(key) ?? 0)
    this.peaks.set(key, p)
    return p
  }
}

function shownState(n: NodeInfo, drainBlocksLeft: number | undefined): DashboardNode['shown'] {
  if (!n.alive) return 'dead'
  if (n.admin === 'draining' || n.state === 'draining') return drainBlocksLeft === 0 ? 'drained' : 'draining'
  if (n.state === 'full') return 'full'
  return 'live'
}
