/**
 * `berth mount` configuration: flags, `-o` options, credentials file and
 * environment are read here, validated once, and frozen. Nothing deeper reads
 * process.env.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { envOverFile, readCredentialsFile } from '../common/credentials'
import { BerthError } from '../common/errors'
import { parseListen } from '../common/metrics-http'
import { natsAuthFromEnv, type NatsAuth } from '../common/nats-connect'
import { DEFAULT_CLUSTER } from '../common/wire'
import { intFlag } from '../common/flags'

const DEFAULT_CREDENTIALS = '.berth/client.env'
/**
 * Unlinks, rmdirs and mkdirs in flight ahead of meta
 * (client/ahead-pipeline.ts): enough for batches to fill while a request is
 * out, few enough that a failure reported after the fact concerns a handful
 * of names.
 */
const UNLINK_WINDOW = 64
/**
 * The metadata cache's TTL (`-o meta_cache_ttl`). Meta's invalidations keep
 * the cache exact, a reconnect drops it, and so does meta's forget-everything
 * message when a meta process starts serving (a meta that died between a
 * commit and its invalidation); the TTL is left to bound only a bug. At 30 s a
 * `cp -r` or `find` after a long `tar x` asked meta again for most listings.
 */
export const META_CACHE_TTL_S = 300
/** What a meta that predates the forget-everything message gets (HelloReply.forgetsOnServe). */
export const META_CACHE_TTL_OLD_META_S = 30
const META_CACHE_TTL_MAX_S = 86_400

/** `-o local_copy_mb` and `-o local_copy_dir` defaults (client/passthrough.ts). */
export const LOCAL_COPY_MB = 4096
export const LOCAL_COPY_DIR = '/var/cache/berth/copies'

export const HELP = `usage: berth mount [NATS_URL] MOUNTPOINT [-o opt,...] [options]
Mounts a berth cluster as a POSIX directory. Without NATS_URL, the URL comes
from the credentials file (default ./.berth/client.env, written by \`berth up\`).

  -o OPTS            comma-separated: allow_other, ro, nonempty, credentials=FILE,
                     cache_mb=N, write_mb=N, deadline_ms=N, cluster=NAME,
                     metrics=HOST:PORT (serve GET /metrics, Prometheus),
                     entry_timeout=S, attr_timeout=S (kernel cache, seconds: 1),
                     meta_cache_ttl=S (this client's metadata cache, seconds,
                     at least 1: 300; kept exact by meta's invalidations, the
                     TTL only bounds a lost one)
                     nocompact (leave appended slices fragmented: benchmarks),
                     sync_unlink (every unlink, rmdir, mkdir and create
                     waits for meta; default: up to 64 answered ahead,
                     docs/semantics.md#unlink and #mkdir),
                     local_locks (fcntl and flock locks hold between the
                     processes of this machine only, kept by the kernel;
                     default: across the cluster, docs/semantics.md#locks)
                     acl (POSIX ACLs: setfacl/getfacl, enforced by the
                     kernel, inherited from default ACLs; costs a round
                     trip per file the kernel has not cached, e.g. in a cold
                     "ls -l"; default noacl: system.posix_acl_* give ENOTSUP,
                     docs/semantics.md#acls)
                     reopen_cache_mb=N (chunk maps of files closed here, kept
                     so a read-only reopen of an unchanged file asks meta
                     nothing: 64; 0: every open asks meta,
                     docs/semantics.md#reopening-without-a-meta-request)
                     local_copy_mb=N (whole-file copies on this machine's
                     disk of files read here, read again by the kernel
                     itself (FUSE passthrough, Linux 6.9+, as root): 4096;
                     0: off, docs/semantics.md#local-copies)
                     local_copy_dir=DIR (where: /var/cache/berth/copies)
                     readahead_kb=N (the kernel's readahead window for this
                     mount, set through sysfs as root: 1024; 0: the
                     kernel's own 128)
                     (mount(8) options like _netdev, rw, defaults are ignored)
  --foreground       stay attached; print {"event":"ready",...} once mounted
  --deadline-ms N    how long an operation waits for an unreachable cluster (30000)
  --cache-mb N       block cache size in MiB (256)
  --write-mb N       write-back buffer size in MiB (128)
  --session-ttl-ms N how long meta keeps this mount's session (open files, upload
                     pins) after its last renewal (default max(60000, 2 x deadline));
                     renewed every third of it
  --cluster NAME     cluster name (berth)
  --credentials FILE env-style file with BERTH_NATS_URL/USER/PASS (default
                     ./.berth/client.env if present; same as -o credentials=FILE)
  --user U --pass P --token T --creds FILE
                     NATS auth (or BERTH_NATS_USER/PASS/TOKEN/CREDS);
                     nats://USER:PASS@HOST:PORT works too (masked in messages)

Exit status: 0 once mounted (the daemon stays in the background), 1 if the
mount failed (the reason and a hint on stderr; no daemon is left), 2 on bad usage.
`

export interface MountConfig {
  natsUrl: string
  mountpoint: string
  /** The credentials file read, if any (named in hints). */
  credentialsFile: string | null
  cluster: string
  auth: NatsAuth
  foreground: boolean
  allowOther: boolean
  /** Mount over a non-empty directory (`-o nonempty`). */
  nonempty: boolean
  readOnly: boolean
  deadlineMs: number
  cacheBytes: number
  writeBytes: number
  maxUploads: number
  /** Compact appended slices (`-o nocompact` turns it off, for benchmarks of fragmented reads). */
  compact: boolean
  readaheadChunks: number
  /** `-o readahead_kb`: the kernel's readahead window for this mount (client/kernel-readahead.ts); 0 leaves the kernel's. */
  readaheadKb: number
  /**
   * The metadata cache's TTL from `-o meta_cache_ttl`; null: not given, so
   * META_CACHE_TTL_S, or META_CACHE_TTL_OLD_META_S with a meta that does not
   * announce its forget-everything message (metaTtlMs below).
   */
  metaTtlMs: number | null
  /** How long the kernel trusts names and attributes; meta's invalidations are pushed into it sooner. */
  entryTimeoutS: number
  attrTimeoutS: number
  sessionTtlMs: number
  /** Unlinks answered before meta applies them, at most this many in flight; 0: none (`-o sync_unlink`). */
  unlinkWindow: number
  /** `-o local_locks`: the kernel keeps locks on this machine; none go to meta. */
  localLocks: boolean
  /** `-o acl`: POSIX ACLs (the kernel enforces them, meta keeps them); off by default (docs/semantics.md#acls). */
  acl: boolean
  /** `-o reopen_cache_mb`: chunk maps kept for closed files, in bytes; 0: every open asks meta. */
  reopenCacheBytes: number
  /** `-o local_copy_mb`: whole-file local copies read through FUSE passthrough, in bytes; 0: off (client/passthrough.ts). */
  localCopyBytes: number
  /** `-o local_copy_dir`: the copies' parent folder (each mount uses a folder of its own in it). */
  localCopyDir: string
  /** Where to serve GET /metrics; null: not served. */
  metricsListen: { host: string; port: number } | null
  /** The argv to re-spawn in the foreground (daemon mode). */
  argv: string[]
}

export function parseMountArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): MountConfig | null {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      o: { type: 'string', short: 'o', multiple: true },
      foreground: { type: 'boolean', short: 'f', default: false },
      'deadline-ms': { type: 'string' },
      'cache-mb': { type: 'string' },
      'write-mb': { type: 'string' },
      'session-ttl-ms': { type: 'string' },
      cluster: { type: 'string' },
      user: { type: 'string' },
      pass: { type: 'string' },
      token: { type: 'string' },
      creds: { type: 'string' },
      credentials: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) return null
  if (positionals.length !== 1 && positionals.length !== 2) throw new BerthError('EINVAL', `expected [NATS_URL] MOUNTPOINT\n\n${HELP}`)
  const opts = new Map<string, string>()
  for (const group of values.o ?? []) {
    for (const item of group.split(',')) {
      const t = item.trim()
      if (!t) continue
      const eq = t.indexOf('=')
      opts.set(eq < 0 ? t : t.slice(0, eq), eq < 0 ? '' : t.slice(eq + 1))
    }
  }
  // the same default as `berth status` and `berth fsck`: what `berth up` wrote here
  const credFile = values.credentials ?? opts.get('credentials') ?? (existsSync(DEFAULT_CREDENTIALS) ? DEFAULT_CREDENTIALS : undefined)
  const fileEnv: Record<string, string> = credFile ? readCredentialsFile(credFile) : {}
  const merged = envOverFile(fileEnv, env)
  const auth = natsAuthFromEnv({ user: values.user, pass: values.pass, token: values.token, credsFile: values.creds }, merged)
  let natsUrl = positionals.length === 2 ? positionals[0]! : '-'
  if (natsUrl === '-' || natsUrl === 'berth') natsUrl = merged.BERTH_NATS_URL ?? ''
  if (!natsUrl) throw new BerthError('EINVAL', 'no NATS URL: pass it before MOUNTPOINT, or --credentials FILE holding BERTH_NATS_URL')
  const cluster = values.cluster ?? opts.get('cluster') ?? merged.BERTH_CLUSTER ?? DEFAULT_CLUSTER
  const deadlineMs = intFlag('--deadline-ms', values['deadline-ms'] ?? opts.get('deadline_ms'), 30_000, 1)
  const cacheMb = intFlag('--cache-mb', values['cache-mb'] ?? opts.get('cache_mb'), 256, 1)
  const writeMb = intFlag('--write-mb', values['write-mb'] ?? opts.get('write_mb'), 128, 1)
  // Shorter than the default only for tests and tight set-ups: a mount cut off
  // from meta for longer than this loses its session (docs/semantics.md#sessions).
  const sessionTtlMs = intFlag('--session-ttl-ms', values['session-ttl-ms'] ?? opts.get('session_ttl_ms'), Math.max(60_000, deadlineMs * 2), 3000)
  return Object.freeze({
    natsUrl,
    mountpoint: resolve(positionals[positionals.length - 1]!),
    credentialsFile: credFile ?? null,
    cluster,
    auth,
    foreground: values.foreground ?? false,
    metricsListen: opts.get('metrics') ? parseListen(opts.get('metrics')!, '-o metrics') : null,
    allowOther: opts.has('allow_other'),
    nonempty: opts.has('nonempty'),
    readOnly: opts.has('ro'),
    deadlineMs,
    cacheBytes: cacheMb * 1024 * 1024,
    writeBytes: writeMb * 1024 * 1024,
    // chunk uploads in flight at once (a chain PUT each): 8 keeps both cores
    // busy on a sequential write where 4 left them idle between blocks,
    // 248-261 MB/s against 237-244 with BLAKE3 names (docs/bench.md, "BLAKE3
    // block names"); memory: 8 x 4 MiB within write_mb
    maxUploads: 8,
    compact: !opts.has('nocompact'),
    // whole 4 MiB chunks fetched ahead of a sequential reader (and 4 fetches
    // at once, client/block-cache.ts): cold read 651-702 MB/s against
    // 601-648 with 2 (docs/bench.md "Cold reads: the kernel's readahead window")
    readaheadChunks: 4,
    readaheadKb: intFlag('-o readahead_kb', opts.get('readahead_kb'), 1024, 0, 65536),
    metaTtlMs: metaCacheTtlMs(opts.get('meta_cache_ttl')),
    entryTimeoutS: seconds('entry_timeout', opts.get('entry_timeout'), 1),
    attrTimeoutS: seconds('attr_timeout', opts.get('attr_timeout'), 1),
    sessionTtlMs,
    unlinkWindow: opts.has('sync_unlink') ? 0 : UNLINK_WINDOW,
    localLocks: opts.has('local_locks'),
    acl: opts.has('acl') && !opts.has('noacl'),
    reopenCacheBytes: intFlag('-o reopen_cache_mb', opts.get('reopen_cache_mb'), 64, 0) * 1024 * 1024,
    localCopyBytes: intFlag('-o local_copy_mb', opts.get('local_copy_mb'), LOCAL_COPY_MB, 0) * 1024 * 1024,
    localCopyDir: opts.get('local_copy_dir') || LOCAL_COPY_DIR,
    argv,
  })
}

/**
 * `-o meta_cache_ttl=S`: seconds from 1 to a day, decimals allowed; null when
 * absent. 0 is refused rather than read as "no TTL" or "no cache": the TTL is
 * what bounds a lost invalidation, and a cache that expires at once would
 * send every lookup to meta (entry_timeout=0 is the knob for that).
 */
export function metaCacheTtlMs(raw: string | undefined): number | null {
  if (raw === undefined) return null
  const v = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(v) || v < 1 || v > META_CACHE_TTL_MAX_S) {
    throw new BerthError('EINVAL', `-o meta_cache_ttl: seconds from 1 to ${META_CACHE_TTL_MAX_S} expected, got "${raw}"`)
  }
  return Math.round(v * 1000)
}

/**
 * The TTL the mount uses: the option's, else the long default when meta
 * publishes its forget-everything message on starting to serve, else the
 * short one (a meta that predates it leaves a lost invalidation bounded by
 * the TTL alone).
 */
export function metaTtlMs(cfg: Pick<MountConfig, 'metaTtlMs'>, metaForgetsOnServe: boolean): number {
  if (cfg.metaTtlMs !== null) return cfg.metaTtlMs
  return (metaForgetsOnServe ? META_CACHE_TTL_S : META_CACHE_TTL_OLD_META_S) * 1000
}

function seconds(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined || raw === '') return dflt
  const v = Number(raw)
  if (!Number.isFinite(v) || v < 0 || v > 3600) throw new BerthError('EINVAL', `-o ${name}: seconds from 0 to 3600 expected, got "${raw}"`)
  return v
}
