/**
 * `berth node` configuration: flags and environment are read here, once,
 * validated, defaulted and frozen. Nothing deeper in node/ reads process.env.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { natsAuthFromEnv, type NatsAuth } from '../common/nats-connect'
import { DEFAULT_CLUSTER } from '../common/wire'
import { intFlag } from '../common/flags'

export const HELP = `usage: berth node --nats URL --dir DIR --listen HOST:PORT [options]
Runs a data node: content-addressed blocks in DIR served over HTTP on HOST:PORT.
  --nats URL             NATS server(s), comma separated
  --dir DIR              block store folder (created if missing)
  --listen HOST:PORT     HTTP address; port 0 picks a free port (the real one is advertised)
  --advertise URL        the URL clients and peers use to reach this node, when --listen's
                         address is not it (0.0.0.0, NAT, another host): http://HOST:PORT
  --id ID                node id (default: generated once and kept in DIR/node-id)
  --capacity BYTES       space offered (default: free space of DIR's filesystem plus blocks stored)
  --cluster NAME         cluster name (default ${DEFAULT_CLUSTER})
  --secret-file FILE     data-plane bearer token (default: env BERTH_SECRET)
  --max-block BYTES      largest accepted block (default 64 MiB)
  --scrub-interval-ms N  pause between re-hashing two stored blocks (default 1000, 0 = no scrub)
  --max-puts N           PUT bodies received at once; more get 503 + Retry-After (default 16)
  --put-idle-ms N        drop a PUT whose body sends nothing for N ms (default 15000)
  --disk-stall-ms N      a canary write+fsync unfinished this long means the disk hangs: the
                         node stops heartbeats and placement and refuses PUTs until it
                         finishes (default 10000; docs/data-node.md#failure-handling)
  --zone NAME            failure domain (host, rack, ...): copies of a block go to different zones (default: env BERTH_ZONE, none)
  --trash-hours H        keep deleted copies in DIR/trash this long before purging (default 24; fractions allowed, 0 = purge at once)
  --user U --pass P | --token T | --creds F   NATS auth (or BERTH_NATS_USER/PASS/TOKEN/CREDS)

Runs until SIGTERM/SIGINT (then drains and exits 0). Exit status 1 if it cannot
start (the reason on stderr), 2 on bad usage.
`

export const DEFAULT_MAX_BLOCK = 64 * 1024 * 1024
export const NODE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/

export interface NodeConfig {
  natsUrl: string
  nats: NatsAuth
  dir: string
  host: string
  port: number
  /** From --advertise; undefined means "derived from --listen and the bound port". */
  advertise?: string
  /** From --id; undefined means "the one persisted in DIR/node-id". */
  id?: string
  /** From --capacity; undefined means "derive from the filesystem". */
  capacity?: number
  cluster: string
  secret: string
  maxBlock: number
  scrubIntervalMs: number
  /** Concurrent PUT bodies (memory bound: maxPuts x block size). */
  maxPuts: number
  /** A PUT body idle this long is dropped and its reservation released. */
  putIdleMs: number
  /** The disk counts as hung once a canary write+fsync has been unfinished this long (node/disk-canary.ts). */
  diskStallMs: number
  /** Failure domain; undefined: none. */
  zone?: string
  /** Deleted copies stay in DIR/trash this long (ms) before they are purged. */
  trashMs: number
}

/** Accepts `host:port`, `[v6]:port` and `:port`. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  if (!m) throw new Error(`--listen must be HOST:PORT, got "${value}"`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`--listen port out of range: ${port}`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}

/** An http(s) URL with a host and no path: what goes into heartbeats as-is. */
export function parseAdvertise(value: string): string {
  let u: URL
  try {
    u = new URL(value)
  } catch {
    throw new Error(`--advertise must be a URL like http://10.0.0.5:7070, got "${value}"`)
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || (u.pathname !== '/' && u.pathname !== '') || u.username) {
    throw new Error(`--advertise must be http://HOST:PORT (no path, no credentials), got "${value}"`)
  }
  return `${u.protocol}//${u.host}`
}

/** Returns null when --help was asked for. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): NodeConfig | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      nats: { type: 'string' },
      dir: { type: 'string' },
      listen: { type: 'string' },
      advertise: { type: 'string' },
      id: { type: 'string' },
      capacity: { type: 'string' },
      cluster: { type: 'string' },
      'secret-file': { type: 'string' },
      'max-block': { type: 'string' },
      'scrub-interval-ms': { type: 'string' },
      'max-puts': { type: 'string' },
      'put-idle-ms': { type: 'string' },
      'disk-stall-ms': { type: 'string' },
      'trash-hours': { type: 'string' },
      zone: { type: 'string' },
      user: { type: 'string' },
      pass: { type: 'string' },
      token: { type: 'string' },
      creds: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) return null
  const natsUrl = values.nats ?? env.BERTH_NATS_URL
  if (!natsUrl) throw new Error('--nats URL is required')
  if (!values.dir) throw new Error('--dir DIR is required')
  if (!values.listen) throw new Error('--listen HOST:PORT is required')
  const { host, port } = parseListen(values.listen)
  const advertise = values.advertise === undefined ? undefined : parseAdvertise(values.advertise)
  if (values.id !== undefined && !NODE_ID_RE.test(values.id)) throw new Error(`--id must be 1-64 of [A-Za-z0-9_-], got "${values.id}"`)
  const cluster = values.cluster ?? env.BERTH_CLUSTER ?? DEFAULT_CLUSTER
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cluster)) throw new Error(`--cluster must be 1-64 of [A-Za-z0-9_-], got "${cluster}"`)

  let secret: string | undefined
  if (values['secret-file']) {
    try {
      secret = readFileSync(values['secret-file'], 'utf8').trim()
    } catch (err) {
      throw new Error(`cannot read --secret-file ${values['secret-file']}: ${(err as Error).message}`)
    }
  } else {
    secret = env.BERTH_SECRET?.trim()
  }
  if (!secret) throw new Error('no data-plane secret: pass --secret-file FILE or set BERTH_SECRET (the cluster token clients and meta use)')

  return Object.freeze({
    natsUrl,
    nats: natsAuthFromEnv({ user: values.user, pass: values.pass, token: values.token, credsFile: values.creds }, env),
    dir: resolve(values.dir),
    host,
    port,
    advertise,
    id: values.id,
    capacity: values.capacity === undefined ? undefined : intFlag('--capacity', values.capacity, 0, 1),
    cluster,
    secret,
    maxBlock: intFlag('--max-block', values['max-block'], DEFAULT_MAX_BLOCK, 1),
    scrubIntervalMs: intFlag('--scrub-interval-ms', values['scrub-interval-ms'], 1000, 0),
    maxPuts: intFlag('--max-puts', values['max-puts'], 16, 1, 4096),
    putIdleMs: intFlag('--put-idle-ms', values['put-idle-ms'], 15_000, 100),
    diskStallMs: intFlag('--disk-stall-ms', values['disk-stall-ms'], 10_000, 500),
    trashMs: hoursFlag('--trash-hours', values['trash-hours'], 24),
    zone: parseZone(values.zone ?? env.BERTH_ZONE),
  })
}

/** A non-negative number of hours (fractions allowed, so tests can use seconds), as ms. */
function hoursFlag(name: string, value: string | undefined, fallback: number): number {
  const h = value === undefined ? fallback : Number(value)
  if ((value !== undefined && value.trim() === '') || !Number.isFinite(h) || h < 0 || h > 24 * 365) {
    throw new Error(`${name} must be a number of hours in 0..8760, got "${value}"`)
  }
  return Math.round(h * 3600_000)
}

function parseZone(z: string | undefined): string | undefined {
  if (z === undefined || z === '') return undefined
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(z)) throw new Error(`--zone must be 1-64 letters, digits, '_', '.' or '-', got "${z}"`)
  return z
}
