/**
 * `berth meta`: the metadata service of one cluster.
 *
 * Reads top-down: config → SQLite → NATS → refuse if another meta already
 * serves the cluster → claim the leader subject → serve `<cluster>.meta.*` →
 * follow heartbeats → background loops → ready → on SIGTERM/SIGINT stop
 * taking requests, answer those in flight, drain NATS, close the database.
 */
import { randomBytes } from 'node:crypto'
import { dirname } from 'node:path'
import { mkdirSync } from 'node:fs'
import { ErrorCode as NatsErrorCode, type NatsConnection } from 'nats'
import { BerthError } from '../common/errors'
import { emitEvent, logger } from '../common/log'
import { serveMetrics } from '../common/metrics-http'
import { connectNats } from '../common/nats-connect'
import { heartbeat } from '../common/protocol'
import { decode, encode, parseBody, serve, subjects } from '../common/wire'
import { parseConfig, type MetaConfig } from './config'
import type { MetaEnv } from './context'
import { Maintenance } from './maintenance'
import { createMetaMetrics } from './metrics'
import { nodeAsker } from './node-commands'
import { MoveMeter } from './move-meter'
import { loadNodeAdmin } from './node-admin'
import { NodeTable } from './nodes'
import { DEFAULT_REBALANCE } from './rebalance'
import { migrate } from './schema'
import { serveMeta } from './server'
import { openDatabase } from './sqlite'

const log = logger('meta')

export async function run(argv: string[]): Promise<void> {
  const cfg = parseConfig(argv)
  if (!cfg) return
  const metaId = `meta-${randomBytes(4).toString('hex')}`
  const s = subjects(cfg.cluster)

  mkdirSync(dirname(cfg.db), { recursive: true })
  const db = await openDatabase(cfg.db, migrate, { sync: cfg.sync })
  let nc: NatsConnection
  try {
    nc = await connectNats({ url: cfg.natsUrl, name: `berth-meta-${metaId}`, ...cfg.auth })
  } catch (err) {
    await db.close()
    throw err
  }

  try {
    await refuseIfServed(nc, cfg)
  } catch (err) {
    await nc.close()
    await db.close()
    throw err
  }
  serve(nc, s.metaLeader, {}, () => ({ metaId }))

  const nodes = new NodeTable()
  const env: MetaEnv = {
    db,
    cluster: cfg.cluster,
    metaId,
    startedAt: Date.now(),
    secret: cfg.secret,
    chunkSize: cfg.chunkSize,
    replicas: cfg.replicas,
    nodes,
    askNode: nodeAsker(nc, cfg.cluster),
    repairMeter: new MoveMeter(),
    rebalance: { ...DEFAULT_REBALANCE, minBytes: cfg.rebalanceMinBytes },
  }
  await loadNodeAdmin(env)
  const maintenance = new Maintenance(nc, env, log, {
    gcGraceMs: cfg.gcGraceMs,
    orphanAgeMs: cfg.orphanAgeMs,
    reconcileEveryMs: cfg.reconcileIntervalMs,
    reconcileCpuPct: cfg.reconcileCpuPct,
    replicateEveryMs: cfg.repairIntervalMs,
    repairMbps: cfg.repairMbps,
  })
  const metrics = createMetaMetrics(env, maintenance.stats)
  const server = serveMeta(nc, env, log, metrics.observe)
  const metricsHttp = cfg.metricsListen ? await serveMetrics(metrics.registry, cfg.metricsListen) : null
  if (metricsHttp) log.info(`metrics at ${metricsHttp.url}`)
  nc.subscribe(s.heartbeat, {
    callback: (err, msg) => {
      if (err) return
      try {
        nodes.seen(parseBody(heartbeat, msg.data))
      } catch (e) {
        log.debug(`ignored bad heartbeat: ${(e as Error).message}`)
      }
    },
  })
  maintenance.start()
  await nc.flush()

  emitEvent('ready', { role: 'meta', metaId, cluster: cfg.cluster, db: cfg.db, ...(metricsHttp ? { metrics: metricsHttp.url } : {}) })
  log.info(`serving cluster ${cfg.cluster} as ${metaId} (db ${cfg.db})`)

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
  })
  log.info(`${signal}: shutting down`)
  // A drain needs the server; with NATS unreachable it would wait forever,
  // so each NATS step gets a bound and the database is closed regardless.
  await bounded(server.sub.drain(), DRAIN_MS)
  await bounded(server.idle(), DRAIN_MS)
  await maintenance.stop()
  metricsHttp?.server.close()
  await bounded(nc.drain(), DRAIN_MS)
  if (!nc.isClosed()) await nc.close().catch(() => undefined)
  await db.close()
  process.exitCode = 0
}

/**
 * Only one meta may serve a cluster until replicated meta exists (DESIGN.md):
 * two would each own a namespace and clients would see both, alternately.
 */
async function refuseIfServed(nc: NatsConnection, cfg: MetaConfig): Promise<void> {
  let other: string
  try {
    const msg = await nc.request(subjects(cfg.cluster).metaLeader, encode({}), { timeout: 1000 })
    const body = decode(msg.data) as { metaId?: unknown }
    other = typeof body.metaId === 'string' ? body.metaId : 'unknown'
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === NatsErrorCode.NoResponders || code === NatsErrorCode.Timeout) return
    throw err
  }
  throw new BerthError('ECONFLICT', `another berth meta (id ${other}) already serves cluster ${cfg.cluster}; refusing to split the namespace`)
}

const DRAIN_MS = 5000

/** Waits for `p` at most `ms`; its failure or lateness is not an error here. */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))])
  clearTimeout(timer)
}
