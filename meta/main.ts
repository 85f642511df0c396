/**
 * `berth meta`: the metadata service of one cluster.
 *
 * Reads top-down: config → SQLite → NATS → follow heartbeats → then either
 *  - single (default): refuse if another meta already serves the cluster,
 *    serve (meta/serving.ts) until the end;
 *  - replicated (--ha): become a replica (meta/replica.ts) that applies the
 *    log and serves only while it holds the leader lease;
 * → ready → on SIGTERM/SIGINT stop taking requests (a leader frees its lease),
 * answer those in flight, drain NATS, close the database.
 */
import { randomBytes } from 'node:crypto'
import { dirname } from 'node:path'
import { existsSync, mkdirSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { ErrorCode as NatsErrorCode, type NatsConnection } from 'nats'
import { BerthError } from '../common/errors'
import { emitEvent, logger } from '../common/log'
import { serveMetrics } from '../common/metrics-http'
import { connectNats, natsServers } from '../common/nats-connect'
import { heartbeat, ROOT_INO } from '../common/protocol'
import { decode, encode, parseBody, subjects } from '../common/wire'
import { parseConfig, type MetaConfig } from './config'
import type { MetaEnv } from './context'
import { LifecycleStats } from './lifecycle-stats'
import { createMetaMetrics } from './metrics'
import { nodeAsker } from './node-commands'
import { MoveMeter } from './move-meter'
import { loadNodeAdmin } from './node-admin'
import { NodeTable } from './nodes'
import { PeerGate } from './peer-gate'
import { DEFAULT_REBALANCE } from './rebalance'
import { migrate } from './schema'
import { InvalidationOutbox } from './server'
import { sqliteEngine } from './engine'
import { Lease } from './lease'
import { MetaLog } from './log/stream'
import { Replica } from './replica'
import { ReplicaPeers } from './replica-peers'
import { bounded, Serving } from './serving'
import { openDatabase, type Database } from './sqlite'
import { SnapshotReplaced, SnapshotStore } from './log/snapshot'
import { AppendRoute } from './log/append-route'
import { appliedSeq } from './log/apply'
import { dashboardSampler, startDashboard, withSampler } from './dashboard'
import { warmUp } from './warmup'

const log = logger('meta')

export async function run(argv: string[]): Promise<void> {
  const cfg = parseConfig(argv)
  if (!cfg) return
  const metaId = `meta-${randomBytes(4).toString('hex')}`
  const s = subjects(cfg.cluster)

  mkdirSync(dirname(cfg.db), { recursive: true })
  let db = await openDatabase(cfg.db, migrate, { sync: cfg.sync, cacheMb: cfg.cacheMb, onCheckpointError: checkpointWarning })
  let nc: NatsConnection
  try {
    nc = await connectNats({ url: cfg.natsUrl, name: `berth-meta-${metaId}`, ...cfg.auth })
  } catch (err) {
    await db.close()
    throw err
  }

  let ha: HaParts | null = null
  let replica: Replica | null = null
  let peers: ReplicaPeers | null = null
  // this replica as it reports itself and as `status` shows it; before its
  // Replica starts, what its database (just restored, maybe) holds
  let startApplied = 0
  const self = () => ({ metaId, role: replica?.role ?? 'follower', applied: Math.max(replica?.applied ?? 0, startApplied) })
  try {
    if (!cfg.ha) await refuseIfServed(nc, cfg)
    else {
      ha = await openHa(nc, cfg, metaId, cfg.ha)
      db = await restoreIfBehind(db, ha, cfg)
      await refuseUnloggedNamespace(db, cfg)
      // reported at once: the leader keeps the log entries after what this
      // replica holds from its next trim on (meta/replica.ts trimPoint), so
      // the rest of the start cannot be overtaken by one
      startApplied = await appliedSeq(db)
      peers = new ReplicaPeers(nc, cfg.cluster, self)
      peers.reportNow()
    }
  } catch (err) {
    peers?.stop()
    await nc.close()
    await db.close()
    throw err
  }

  // once this process serves (a replica: when it first leads), at most half a
  // core; nothing of it reaches the cluster (meta/warmup.ts)
  let stopping = false
  let warming = false
  const warmOnce = () => {
    if (warming || cfg.warmupOps === 0) return
    warming = true
    warmUp(env, cfg.warmupOps, () => stopping).then(
      (r) => log.info(`warm-up: ${r.ops} requests on a scratch database in ${r.ms} ms`),
      (err: unknown) => log.warn('warm-up failed (serving is not affected)', err),
    )
  }

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
    askNode: nodeAsker(nc, cfg.cluster, (id) => nodes.isDead(id)),
    repairMeter: new MoveMeter(),
    rebalance: { ...DEFAULT_REBALANCE, minBytes: cfg.rebalanceMinBytes },
    // `serving` is created below with this env; requests only come after both exist.
    // The loops run only while this replica leads (meta/serving.ts), as do requests.
    maintenance: { graceMs: cfg.gcGraceMs, orphanAgeMs: cfg.orphanAgeMs, runNow: () => serving.runMaintenanceNow() },
  }
  // a follower's table is refreshed from node_admin each time it starts to lead (meta/serving.ts)
  await loadNodeAdmin(env)
  const stats = new LifecycleStats()
  const metrics = createMetaMetrics(env, stats)
  const sampler = dashboardSampler(cfg, env)
  if (cfg.testDropInvalidations) log.warn('BERTH_TEST_DROP_INVALIDATIONS=1: no mutation publishes its invalidation (tests only; mounts stay stale)')
  const outbox = new InvalidationOutbox(nc, cfg.cluster, cfg.testDropInvalidations)
  const engine = sqliteEngine(env, (changes) => outbox.add(changes))
  const serving = new Serving(nc, env, engine, log, {
    outbox,
    observe: withSampler(metrics.observe, sampler),
    maintenance: {
      gcGraceMs: cfg.gcGraceMs,
      orphanAgeMs: cfg.orphanAgeMs,
      reconcileEveryMs: cfg.reconcileIntervalMs,
      reconcileCpuPct: cfg.reconcileCpuPct,
      replicateEveryMs: cfg.repairIntervalMs,
      repairMbps: cfg.repairMbps,
    },
    stats,
  })
  const metricsHttp = cfg.metricsListen ? await serveMetrics(metrics.registry, cfg.metricsListen) : null
  if (metricsHttp) log.info(`metrics at ${metricsHttp.url}`)
  // nodes of a protocol meta does not serve are refused, never seen (meta/peer-gate.ts)
  const gate = new PeerGate(nodeAsker(nc, cfg.cluster), log)
  // the token is never logged: only where the page is
  const dashboard =
    cfg.ui && sampler
      ? await startDashboard(cfg.ui, {
          env,
          sampler,
          stats,
          role: () => (!cfg.ha ? 'single' : serving.active ? 'leader' : replica?.role === 'stopped' ? 'stopped' : 'follower'),
          leader: () => peers?.list(0).find((p) => p.role === 'leader')?.metaId ?? null,
        }, log).catch(async (err: unknown) => {
          metricsHttp?.server.close()
          await nc.close()
          await db.close()
          throw err
        })
      : null
  if (dashboard) log.info(`dashboard at ${dashboard.url} (read-only token required)`)
  nc.subscribe(s.heartbeat, {
    callback: (err, msg) => {
      if (err) return
      try {
        const hb = parseBody(heartbeat, msg.data)
        if (gate.admit(hb)) nodes.seen(hb)
      } catch (e) {
        log.debug(`ignored bad heartbeat: ${(e as Error).message}`)
      }
    },
  })

  if (ha && cfg.ha) {
    const { log: metaLog, lease, snapshots, route } = ha
    const snap = cfg.ha
    replica = new Replica({
      db,
      log: metaLog,
      lease,
      metaId,
      logger: log,
      lead: async () => {
        await serving.start()
        warmOnce()
        emitEvent('leader', { metaId, applied: replica?.applied })
      },
      follow: () => serving.stop(),
      fatal: (why, err) => {
        log.error(`replica cannot continue: ${why}`, err)
        process.exit(70)
      },
      ...(snap.snapshotEntries > 0
        ? { snapshots: { store: snapshots, dbFile: cfg.db, everyEntries: snap.snapshotEntries, everyMs: snap.snapshotIntervalMs, keepEntries: snap.snapshotKeep, followerApplied: () => peers?.lowestFollowerApplied(metaId) ?? null } }
        : {}),
    })
    const seenPeers = peers!
    env.replication = {
      status: async () => {
        const bounds = await metaLog.bounds().catch(() => null)
        const last = Math.max(bounds?.last ?? 0, replica?.lastLogSeq ?? 0)
        return {
          ...self(),
          lastLogSeq: last,
          leaseAgeMs: lease.ageMs(),
          replicas: seenPeers.list(last),
          snapshotSeq: replica?.snapshotSeq ?? null,
          ...(bounds ? { logFirstSeq: bounds.first } : {}),
          ...(route?.appendsTo ? { appendsTo: route.appendsTo } : {}),
        }
      },
    }
    await replica.start()
  } else {
    await serving.start()
  }
  await nc.flush()

  if (!cfg.ha) warmOnce()
  emitEvent('ready', { role: 'meta', metaId, cluster: cfg.cluster, db: cfg.db, ha: cfg.ha !== null, ...(metricsHttp ? { metrics: metricsHttp.url } : {}), ...(dashboard ? { ui: dashboard.url } : {}) })
  log.info(`${cfg.ha ? 'replica of' : 'serving'} cluster ${cfg.cluster} as ${metaId} (db ${cfg.db})`)

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
  })
  log.info(`${signal}: shutting down`)
  stopping = true
  // A drain needs the server; with NATS unreachable it would wait forever,
  // so each NATS step gets a bound and the database is closed regardless.
  peers?.stop()
  if (replica) await bounded(replica.stop(), DRAIN_MS * 2)
  if (ha?.route) await bounded(ha.route.close(), DRAIN_MS)
  await serving.stop()
  metricsHttp?.server.close()
  await dashboard?.close()
  await bounded(nc.drain(), DRAIN_MS)
  if (!nc.isClosed()) await nc.close().catch(() => undefined)
  await db.close()
  process.exitCode = 0
}

/**
 * Without --ha only one meta may serve a cluster: two would each own a
 * namespace and clients would see both, alternately. (A probe, so two started
 * in the same second can both pass it; --ha closes that with the lease.)
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
/**
 * How long --ha waits for JetStream to place the log, lease and snapshots
 * (R3 needs three servers that know each other). Servers of one cluster start
 * in any order and, on a loaded machine, were seen to need more than 30 s to
 * offer placement; a meta that gave up then left nothing serving.
 */
const JETSTREAM_WAIT_MS = 120_000
const JETSTREAM_WAIT_LOG_MS = 10_000

interface HaParts {
  log: MetaLog
  lease: Lease
  snapshots: SnapshotStore
  /** Appends straight to the stream leader's server (null: one server listed). */
  route: AppendRoute | null
}

async function openHa(nc: NatsConnection, cfg: MetaConfig, metaId: string, ha: NonNullable<MetaConfig['ha']>): Promise<HaParts> {
  // a JetStream cluster that just started elects its own leader first
  const metaLog = await retryFor(JETSTREAM_WAIT_MS, 'the log stream', () => MetaLog.open(nc, cfg.cluster, ha.logReplicas))
  const lease = await retryFor(JETSTREAM_WAIT_MS, 'the lease bucket', () => Lease.open(nc, cfg.cluster, metaId, { ttlMs: ha.leaseTtlMs, replicas: ha.logReplicas }))
  const snapshots = await retryFor(JETSTREAM_WAIT_MS, 'the snapshot store', () => SnapshotStore.open(nc, cfg.cluster, ha.logReplicas))
  const servers = natsServers(cfg.natsUrl).length
  const route =
    servers > 1
      ? new AppendRoute({
          servers,
          connectTo: (i) => connectNats({ url: cfg.natsUrl, name: `berth-meta-${metaId}-append`, ...cfg.auth, onlyServer: i, connectTimeoutMs: 2000 }),
          streamLeader: () => metaLog.streamLeader(),
          fallback: nc.jetstream(),
          logger: log,
        })
      : null
  if (route) metaLog.routeAppends(route)
  return { log: metaLog, lease, snapshots, route }
}

/**
 * A replica whose database is older than the log's first entry (new, or down
 * while the leader trimmed the log) starts from the stored snapshot; the log
 * tail follows in Replica.start.
 */
async function restoreIfBehind(db: Database, ha: HaParts, cfg: MetaConfig): Promise<Database> {
  // Checked again after each restore: the leader may store a newer snapshot and
  // trim the log past the one just restored while it downloads, or replace the
  // snapshot while it is read (both seen with snapshots every second in
  // test/meta-snapshot). The next try takes the newer one; past RESTORE_TRIES
  // the replica exits and its supervisor starts it again.
  for (let attempt = 1; ; attempt++) {
    const applied = await appliedSeq(db)
    const { first, last } = await ha.log.bounds()
    if (!(last > applied && first > applied + 1)) return db
    const latest = await ha.snapshots.latest()
    if (!latest || latest.seq + 1 < first || attempt > RESTORE_TRIES) {
      const tried = attempt > RESTORE_TRIES ? ` after ${RESTORE_TRIES} restores, each overtaken by a newer snapshot` : ''
      throw new BerthError('EIO', `the log starts at ${first}, this replica has applied ${applied} and the stored snapshot ends at ${latest?.seq ?? 'none'}: cannot catch up${tried}`)
    }
    await db.close()
    // a replaced read leaves the database file as it was: reopened, and the log looked at again
    const got = await ha.snapshots.restore(cfg.db).catch((err: unknown) => {
      if (err instanceof SnapshotReplaced) return err
      throw err
    })
    db = await openDatabase(cfg.db, migrate, { sync: cfg.sync, cacheMb: cfg.cacheMb, onCheckpointError: checkpointWarning })
    if (got instanceof SnapshotReplaced) {
      log.info(got.message)
      continue
    }
    log.info(`restored the snapshot at log sequence ${got?.seq ?? 0} (${got?.bytes ?? 0} bytes); this replica had applied ${applied}, the log starts at ${first}`)
    if (cfg.testRestoreGate) await testGate(cfg.testRestoreGate)
  }
}

/** BERTH_TEST_RESTORE_GATE (meta/config.ts): says it got here, then waits for the test to open the gate. */
async function testGate(file: string): Promise<void> {
  await writeFile(`${file}.reached`, '')
  while (!existsSync(file)) await new Promise((r) => setTimeout(r, 50))
}

/**
 * Restores in a row before giving up: each one found the log trimmed past the
 * snapshot it took, or the snapshot replaced while it read it.
 */
const RESTORE_TRIES = 5

/**
 * A replica that has applied nothing of the log must hold nothing but the
 * empty namespace a new database starts with. A database made by a meta
 * without --ha (or copied in from elsewhere) holds files the log does not
 * have: leading, it would serve them while every other replica, replaying
 * the log, never learns of them; following, it would keep them beside what
 * the log says. Refused, before anything is appended.
 */
async function refuseUnloggedNamespace(db: Database, cfg: MetaConfig): Promise<void> {
  if ((await appliedSeq(db)) > 0) return
  const row = await db.read.get<{ n: number }>('SELECT COUNT(*) AS n FROM inodes WHERE ino != ?', [ROOT_INO])
  if ((row?.n ?? 0) === 0) return
  throw new BerthError('EINVAL', `${cfg.db} holds ${row!.n} inodes that are not in the replicated log (made by a meta without --ha?): a --ha replica must start on a new database (docs/meta.md#replication)`)
}

function checkpointWarning(message: string): void {
  log.warn(`WAL checkpoint on the worker failed (the writer's own checkpoint bounds the WAL): ${message}`)
}

async function retryFor<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now()
  const until = started + ms
  let told = started
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      if (Date.now() > until) throw new BerthError('EIO', `JetStream: cannot open ${what}: ${(err as Error).message}`, { cause: err })
      if (Date.now() - told >= JETSTREAM_WAIT_LOG_MS) {
        told = Date.now()
        log.warn(`still waiting for JetStream to open ${what} (${Math.round((told - started) / 1000)} s): ${(err as Error).message}`)
      } else log.debug(`JetStream not ready for ${what} yet: ${(err as Error).message}`)
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}
