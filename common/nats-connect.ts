/**
 * One way to connect to NATS for every berth process. Credentials come from
 * flags or the environment (BERTH_NATS_USER/BERTH_NATS_PASS, BERTH_NATS_TOKEN,
 * BERTH_NATS_CREDS), never from code; user:pass in the URL works too.
 */
import { trackConnection } from './nats-state'
import { setInboxPrefix } from './reply-mux'
import { readFileSync } from 'node:fs'
import { connect, credsAuthenticator, type NatsConnection } from 'nats'
import { BerthError } from './errors'
import { maskSecrets, splitUrlCredentials } from './mask-secrets'

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
  /** Connect to server `onlyServer` (0-based) of the URL list alone (meta's append route). */
  onlyServer?: number
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

/** The server URLs of a comma-separated list, credentials taken out. */
export function natsServers(url: string): string[] {
  return splitUrlCredentials(url).url.split(',').map((u) => u.trim()).filter(Boolean)
}

export async function connectNats(s: NatsSettings): Promise<NatsConnection> {
  // user:pass@ in the URL is what the user typed last: it wins over env and files
  const fromUrl = splitUrlCredentials(s.url)
  const listed = natsServers(s.url)
  const servers = s.onlyServer === undefined ? listed : listed.slice(s.onlyServer, s.onlyServer + 1)
  const shown = fromUrl.url
  const user = fromUrl.user ?? s.user
  const pass = fromUrl.user !== undefined ? fromUrl.pass : s.pass
  const token = fromUrl.token ?? (fromUrl.user !== undefined ? undefined : s.token)
  let authenticator
  if (s.credsFile) {
    let creds: Buffer
    try {
      creds = readFileSync(s.credsFile)
    } catch (err) {
      throw new BerthError('ENOENT', `cannot read NATS creds file ${s.credsFile}: ${(err as Error).message}`)
    }
    authenticator = credsAuthenticator(creds)
  }
  const inboxPrefix = s.inboxPrefix || inboxPrefixFor(s.user || userInUrl(listed))
  try {
    const nc = await connect({
      servers,
      name: s.name,
      user: user || undefined,
      pass: pass || undefined,
      token: token || undefined,
      authenticator,
      inboxPrefix,
      timeout: s.connectTimeoutMs ?? 10_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // A disconnected client must not sit on requests forever; request() retries.
      pingInterval: 10_000,
      maxPingOut: 2,
      // nats.js otherwise builds an Error per request to keep the caller's
      // stack for a timeout: 1.4 % of a mount's time under rm -rf (profile,
      // docs/bench.md "Metadata latency"); request() names the subject instead
      noAsyncTraces: true,
      // The servers in the order given, nearest first: nats.js would shuffle
      // them, and a mount and the meta leader on two servers of one cluster
      // pay a route hop on every request (docs/meta.md "Throughput of --ha")
      noRandomize: true,
    })
    trackConnection(nc)
    setInboxPrefix(nc, inboxPrefix)
    return nc
  } catch (err) {
    const code = (err as { code?: string }).code ?? ''
    const why = maskSecrets((err as Error).message)
    if (code === 'AUTHORIZATION_VIOLATION' || /authoriz/i.test(why)) {
      const sent = user ? `user "${user}"` : token ? 'a token' : authenticator ? `creds file ${s.credsFile}` : 'no credentials'
      throw new BerthError('EAUTH', `NATS at ${shown} refused the connection (${why}; sent ${sent})\n` +
        '  hint: pass --credentials FILE (`berth up` writes DIR/client.env), or set BERTH_NATS_USER/BERTH_NATS_PASS, or put them in the URL (USER:PASS@ after nats://)', { cause: err })
    }
    throw new BerthError('EIO', `cannot connect to NATS at ${shown}: ${why}\n` +
      '  hint: is nats-server running there? `berth up` prints its URL and keeps it in DIR/client.env', { cause: err })
  }
}
