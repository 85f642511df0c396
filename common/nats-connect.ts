/**
 * One way to connect to NATS for every berth process. Credentials come from
 * flags or the environment (BERTH_NATS_USER/BERTH_NATS_PASS, BERTH_NATS_TOKEN,
 * BERTH_NATS_CREDS), never from code; user:pass in the URL works too.
 */
import { trackConnection } from './nats-state'
import { readFileSync } from 'node:fs'
import { connect, credsAuthenticator, type NatsConnection } from 'nats'
import { BerthError } from './errors'

export interface NatsAuth {
  user?: string
  pass?: string
  token?: string
  /** Path of a NATS .creds file (JWT + nkey seed). */
  credsFile?: string
  /** Reply-inbox prefix (BERTH_NATS_INBOX); default inboxPrefixFor(user). */
  inboxPrefix?: string
}

export interface NatsSettings extends NatsAuth {
  url: string
  /** Connection name shown by the server (e.g. "berth-meta"). */
  name: string
  /** Give up connecting at start after this long; reconnects afterwards are unbounded. */
  connectTimeoutMs?: number
}

/**
 * Each credential gets its own reply inbox, `_INBOX_<user>`: the NATS configs
 * berth ships (cli/nats-server.ts, docker/nats.conf) let a user subscribe only
 * to its own prefix, so one credential cannot read the replies meant for
 * another (inline file bytes travel in replies). Token and creds-file users
 * have no name here: they keep `_INBOX` unless BERTH_NATS_INBOX says otherwise.
 */
export function inboxPrefixFor(user: string | undefined): string {
  return user && /^[A-Za-z0-9_-]{1,64}$/.test(user) ? `_INBOX_${user}` : '_INBOX'
}

function userInUrl(servers: string[]): string | undefined {
  for (const s of servers) {
    try {
      const u = new URL(s.includes('://') ? s : `nats://${s}`)
      if (u.username) return decodeURIComponent(u.username)
    } catch {
      // not a URL nats.js accepts either; it will say so
    }
  }
  return undefined
}

/** Reads auth from env where the flag was not given. */
export function natsAuthFromEnv(flags: NatsAuth, env: NodeJS.ProcessEnv = process.env): NatsAuth {
  return {
    user: flags.user ?? env.BERTH_NATS_USER,
    pass: flags.pass ?? env.BERTH_NATS_PASS,
    token: flags.token ?? env.BERTH_NATS_TOKEN,
    credsFile: flags.credsFile ?? env.BERTH_NATS_CREDS,
    inboxPrefix: flags.inboxPrefix ?? env.BERTH_NATS_INBOX,
  }
}

export async function connectNats(s: NatsSettings): Promise<NatsConnection> {
  const servers = s.url.split(',').map((u) => u.trim()).filter(Boolean)
  let authenticator
  if (s.credsFile) {
    const creds = readFileSync(s.credsFile)
    authenticator = credsAuthenticator(creds)
  }
  try {
    const nc = await connect({
      servers,
      name: s.name,
      user: s.user || undefined,
      pass: s.pass || undefined,
      token: s.token || undefined,
      authenticator,
      inboxPrefix: s.inboxPrefix || inboxPrefixFor(s.user || userInUrl(servers)),
      timeout: s.connectTimeoutMs ?? 10_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // A disconnected client must not sit on requests forever; request() retries.
      pingInterval: 10_000,
      maxPingOut: 2,
    })
    trackConnection(nc)
    return nc
  } catch (err) {
    const code = (err as { code?: string }).code ?? ''
    throw new BerthError(code === 'AUTHORIZATION_VIOLATION' ? 'EAUTH' : 'EIO', `cannot connect to NATS at ${s.url}: ${(err as Error).message}`, { cause: err })
  }
}
