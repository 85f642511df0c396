/**
 * `berth meta` configuration: flags, then environment, validated once and
 * frozen. Nothing deeper in meta reads process.env or argv.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { BerthError } from '../common/errors'
import { parseListen } from '../common/metrics-http'
import { natsAuthFromEnv, type NatsAuth } from '../common/nats-connect'
import { DEFAULT_CHUNK_SIZE, DEFAULT_REPLICAS } from '../common/protocol'
import { DEFAULT_WARMUP_OPS } from './warmup'
import { DEFAULT_CLUSTER, subjects } from '../common/wire'
import { intFlag } from '../common/flags'

export const USAGE = `usage: berth meta --nats URL --db FILE [options]

Runs the metadata service of one cluster (only one may serve a cluster).
Backup and restore of its database: berth meta dump|load, also named backup|restore (berth meta dump --help).

  --nats URL            NATS server(s), comma separated
  --db FILE             SQLite database file (created on first start)
  --cluster NAME        cluster name (default ${DEFAULT_CLUSTER})
  --replicas N          replicas per block (default ${DEFAULT_REPLICAS})
  --chunk-size BYTES    file chunk size (default ${DEFAULT_CHUNK_SIZE})
  --secret-file F       file holding the data-plane secret (else env BERTH_SECRET)
  --gc-grace-ms MS      keep unreferenced blocks this long before deleting (default 60000)
  --orphan-age-ms MS    delete copies of blocks meta does not know once idle this long
                        (default 7200000 = 2 h; longer than any upload takes to commit)
  --reconcile-interval-ms MS  pause between reconciliation passes over the nodes' inventories (default 60000)
  --reconcile-cpu-pct P       share of one core a pass may use: it rests between inventory pages
                              so a large cluster's pass is spread out (default 0.3; 100: no rest)
  --repair-interval-ms MS     pause between repair passes (copy up to R, trim down to R; default 5000)
  --repair-mbps N             byte rate of repair copies in MB/s, 0 for unlimited (default 64)
  --rebalance-min-mib N       rebalance only when at least N MiB must move to bring the
                              nodes within 10% of the mean stored bytes (default 64)
  --cache-mb N          SQLite page cache of each of meta's two connections (writer,
                        reader), in MiB (default 128): the namespace's hot pages stay
                        in meta's memory, not only in the OS page cache
  --warmup-ops N        after start, run N requests on a scratch database so the
                        request path is compiled before mounts need it (default
                        ${DEFAULT_WARMUP_OPS}; 0: none; env BERTH_META_WARMUP_OPS)
  --sync MODE           normal (default): every acknowledged change survives a crash
                        or kill -9 of meta; the last few may be lost on power loss.
                        full: fsync the WAL on every commit (also survives power loss)
  --ha                  replicated meta (docs/meta.md#replication): every mutation is
                        appended to a JetStream stream before it is answered, one
                        replica leads by a JetStream KV lease, the others follow
  --log-replicas N      JetStream replicas of the log and the lease (default 1;
                        3 on a 3-server NATS cluster)
  --lease-ttl-ms MS     leader lease TTL (default 3000): failover takes about this
  --snapshot-entries N  with --ha: the leader stores a snapshot of the database in
                        JetStream every N log entries (default 10000) and trims the
                        log behind it (docs/meta.md#snapshots); 0: never
  --snapshot-interval-ms MS  ...or this long after the last one (default 600000)
  --snapshot-keep N     log entries kept behind a snapshot (default 1000)
  --metrics-listen H:P  serve GET /metrics (Prometheus) on H:P (else env BERTH_METRICS_LISTEN; off by default)
  --ui-listen H:P       serve the live dashboard page on H:P (else env BERTH_UI_LISTEN; off by
                        default; docs/operations.md#dashboard); needs a read-only token:
  --ui-token-file F     file holding the dashboard token (else env BERTH_UI_TOKEN; 16+ characters)
  --user U --pass P     NATS credentials (else env BERTH_NATS_USER/BERTH_NATS_PASS)
  --token T             NATS token (else env BERTH_NATS_TOKEN)
  --creds F             NATS .creds file (else env BERTH_NATS_CREDS)
  --help                this text

Runs until SIGTERM/SIGINT (then exits 0). Exit status 1 if it cannot start
(the reason on stderr, e.g. another meta already serves the cluster), 2 on bad usage.
`

export interface MetaConfig {
  readonly natsUrl: string
  readonly db: string
  readonly cluster: string
  readonly replicas: number
  readonly chunkSize: number
  readonly secret: string
  readonly gcGraceMs: number
  readonly orphanAgeMs: number
  readonly reconcileIntervalMs: number
  /** Percent of one core reconciliation may use (meta/reconcile.ts paces its pages). */
  readonly reconcileCpuPct: number
  readonly repairIntervalMs: number
  /** MB/s for repair copies; 0: unlimited. */
  readonly repairMbps: number
  /** Rebalance moves nothing while the gap is under this many bytes. */
  readonly rebalanceMinBytes: number
  /** SQLite synchronous mode (docs/meta.md#durability). */
  readonly sync: 'normal' | 'full'
  /** SQLite page cache per connection, MiB (`--cache-mb`). */
  readonly cacheMb: number
  /** Requests run on a scratch database after start so the hot paths are compiled (meta/warmup.ts); 0: none. */
  readonly warmupOps: number
  readonly metricsListen: { host: string; port: number } | null
  /** The dashboard (meta/dashboard/server.ts): where it listens and the read-only token it asks for. */
  readonly ui: Readonly<{ listen: { host: string; port: number }; token: string }> | null
  readonly auth: Readonly<NatsAuth>
  /**
   * Test only: BERTH_TEST_DROP_INVALIDATIONS=1 makes the outbox publish no
   * mutation's invalidation (meta/server.ts), as if meta died after every
   * commit; the forget-all at the start of serving still goes out. Like
   * BERTH_FAKE_PROTOCOL (common/compat.ts), never set it in production.
   */
  readonly testDropInvalidations: boolean
  /**
   * Test only: BERTH_TEST_RESTORE_GATE=<file> makes a replica that restored a
   * snapshot at start write `<file>.reached` and wait for `<file>` to exist
   * before it looks at the log again, so a test can trim the log past the
   * restored snapshot at exactly that point (test/meta-snapshot).
   */
  readonly testRestoreGate: string | null
  /** Replicated mode: null for the single meta of today. */
  readonly ha: Readonly<{ logReplicas: number; leaseTtlMs: number; snapshotEntries: number; snapshotIntervalMs: number; snapshotKeep: number }> | null
}

/** Returns null when --help was asked (usage already printed). */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): MetaConfig | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      nats: { type: 'string' },
      db: { type: 'string' },
      cluster: { type: 'string' },
      replicas: { type: 'string' },
      'chunk-size': { type: 'string' },
      'secret-file': { type: 'string' },
      'gc-grace-ms': { type: 'string' },
      'orphan-age-ms': { type: 'string' },
      'reconcile-interval-ms': { type: 'string' },
      'reconcile-cpu-pct': { type: 'string' },
      'repair-interval-ms': { type: 'string' },
      'rebalance-min-mib': { type: 'string' },
      'repair-mbps': { type: 'string' },
      sync: { type: 'string' },
      'cache-mb': { type: 'string' },
      'warmup-ops': { type: 'string' },
      'metrics-listen': { type: 'string' },
      'ui-listen': { type: 'string' },
      'ui-token-file': { type: 'string' },
      ha: { type: 'boolean', default: false },
      'log-replicas': { type: 'string' },
      'lease-ttl-ms': { type: 'string' },
      'snapshot-entries': { type: 'string' },
      'snapshot-interval-ms': { type: 'string' },
      'snapshot-keep': { type: 'string' },
      user: { type: 'string' },
      pass: { type: 'string' },
      token: { type: 'string' },
      creds: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(USAGE)
    return null
  }
  if (!values.nats) throw new BerthError('EINVAL', `--nats URL is required\n\n${USAGE}`)
  if (!values.db) throw new BerthError('EINVAL', `--db FILE is required\n\n${USAGE}`)
  const cluster = values.cluster ?? env.BERTH_CLUSTER ?? DEFAULT_CLUSTER
  subjects(cluster) // throws on a name NATS subjects cannot carry
  const chunkSize = intFlag('--chunk-size', values['chunk-size'], DEFAULT_CHUNK_SIZE, 4096, 64 * 1024 * 1024)
  if (chunkSize % 4096 !== 0) throw new BerthError('EINVAL', '--chunk-size must be a multiple of 4096')
  let secret: string | undefined
  if (values['secret-file']) {
    try {
      secret = readFileSync(values['secret-file'], 'utf8').trim()
    } catch (err) {
      throw new BerthError('EINVAL', `cannot read --secret-file ${values['secret-file']}: ${(err as Error).message}`)
    }
  } else {
    secret = env.BERTH_SECRET?.trim()
  }
  if (!secret) throw new BerthError('EINVAL', 'no data-plane secret: pass --secret-file FILE or set BERTH_SECRET')
  const sync = values.sync ?? 'normal'
  if (sync !== 'normal' && sync !== 'full') throw new BerthError('EINVAL', `--sync must be normal or full, got "${sync}"`)
  const metricsListen = values['metrics-listen'] ?? env.BERTH_METRICS_LISTEN
  return Object.freeze({
    natsUrl: values.nats,
    sync,
    cacheMb: intFlag('--cache-mb', values['cache-mb'], 128, 2, 1024 * 1024),
    warmupOps: intFlag('--warmup-ops', values['warmup-ops'] ?? env.BERTH_META_WARMUP_OPS, DEFAULT_WARMUP_OPS, 0, 1_000_000),
    db: values.db,
    cluster,
    replicas: intFlag('--replicas', values.replicas, DEFAULT_REPLICAS, 1, 16),
    chunkSize,
    secret,
    gcGraceMs: intFlag('--gc-grace-ms', values['gc-grace-ms'], 60_000, 0, 7 * 24 * 3600 * 1000),
    orphanAgeMs: intFlag('--orphan-age-ms', values['orphan-age-ms'], 2 * 3600 * 1000, 0, 30 * 24 * 3600 * 1000),
    reconcileIntervalMs: intFlag('--reconcile-interval-ms', values['reconcile-interval-ms'], 60_000, 100, 24 * 3600 * 1000),
    reconcileCpuPct: pctFlag(values['reconcile-cpu-pct']),
    repairIntervalMs: intFlag('--repair-interval-ms', values['repair-interval-ms'], 5000, 100, 3600 * 1000),
    repairMbps: intFlag('--repair-mbps', values['repair-mbps'], 64, 0, 100_000),
    rebalanceMinBytes: intFlag('--rebalance-min-mib', values['rebalance-min-mib'], 64, 0, 1024 * 1024) * 1024 * 1024,
    metricsListen: metricsListen ? parseListen(metricsListen, '--metrics-listen') : null,
    ui: uiConfig(values['ui-listen'] ?? env.BERTH_UI_LISTEN, values['ui-token-file'], env),
    auth: Object.freeze(natsAuthFromEnv({ user: values.user, pass: values.pass, token: values.token, credsFile: values.creds }, env)),
    testDropInvalidations: env.BERTH_TEST_DROP_INVALIDATIONS === '1',
    testRestoreGate: env.BERTH_TEST_RESTORE_GATE || null,
    ha: values.ha
      ? Object.freeze({
          logReplicas: intFlag('--log-replicas', values['log-replicas'], 1, 1, 5),
          leaseTtlMs: intFlag('--lease-ttl-ms', values['lease-ttl-ms'], 3000, 1000, 60_000),
          snapshotEntries: intFlag('--snapshot-entries', values['snapshot-entries'], 10_000, 0, 100_000_000),
          snapshotIntervalMs: intFlag('--snapshot-interval-ms', values['snapshot-interval-ms'], 600_000, 1000, 7 * 24 * 3600 * 1000),
          snapshotKeep: intFlag('--snapshot-keep', values['snapshot-keep'], 1000, 0, 100_000_000),
        })
      : null,
  })
}

/** --reconcile-cpu-pct: a percentage in 0.01..100 (decimals allowed), default 0.3. */
function pctFlag(value: string | undefined): number {
  if (value === undefined) return 0.3
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < 0.01 || n > 100) throw new BerthError('EINVAL', `--reconcile-cpu-pct must be a number in 0.01..100, got "${value}"`)
  return n
}

/**
 * The dashboard is off unless a listen address is given, and never served
 * without a token: it shows the whole cluster's layout.
 */
function uiConfig(listen: string | undefined, tokenFile: string | undefined, env: NodeJS.ProcessEnv): MetaConfig['ui'] {
  if (!listen) {
    if (tokenFile) throw new BerthError('EINVAL', '--ui-token-file needs --ui-listen H:P')
    return null
  }
  let token: string | undefined
  if (tokenFile) {
    try {
      token = readFileSync(tokenFile, 'utf8').trim()
    } catch (err) {
      throw new BerthError('EINVAL', `cannot read --ui-token-file ${tokenFile}: ${(err as Error).message}`)
    }
  } else token = env.BERTH_UI_TOKEN?.trim()
  if (!token) throw new BerthError('EINVAL', '--ui-listen needs a read-only dashboard token: pass --ui-token-file FILE or set BERTH_UI_TOKEN')
  if (token.length < 16 || /\s/.test(token)) throw new BerthError('EINVAL', 'the dashboard token must be at least 16 characters, without spaces')
  // ":PORT" means loopback here, never every interface
  const at = parseListen(listen, '--ui-listen')
  return Object.freeze({ listen: { host: at.host || '127.0.0.1', port: at.port }, token })
}
