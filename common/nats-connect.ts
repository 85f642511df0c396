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
}

export interface NatsSettings extends NatsAuth {
  url: string
  /** Connection name shown by the server (e.g. "berth-meta"). */
  name: string
  /** Give up connecting at start after this long; reconnects afterwards are unbounded. */
  connectTimeoutMs?: number
}

/** Reads auth from env where the flag was not given. */
export function natsAuthFromEnv(flags: NatsAuth, env: NodeJS.ProcessEnv = process.env): NatsAuth {
  return {
    user: flags.user ?? env.BERTH_NATS_USER,
    pass: flags.pass ?? env.BERTH_NATS_PASS,
    token: flags.token ?? env.BERTH_NATS_TOKEN,
    credsFile: flags.credsFile ?? env.BERTH_NATS_CREDS,
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
