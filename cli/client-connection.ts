/**
 * How operator commands (`berth status`, `berth fsck`) reach a cluster: the same
 * flags everywhere, and ./.berth/client.env (written by `berth up`) as default.
 */
import { existsSync } from 'node:fs'
import type { NatsConnection } from 'nats'
import { envOverFile, readCredentialsFile } from '../common/credentials'
import { MetaClient } from '../common/meta-client'
import { connectNats, natsAuthFromEnv } from '../common/nats-connect'
import { DEFAULT_CLUSTER } from '../common/wire'

export const CONNECTION_OPTIONS = {
  nats: { type: 'string' },
  credentials: { type: 'string' },
  cluster: { type: 'string' },
  user: { type: 'string' },
  pass: { type: 'string' },
  token: { type: 'string' },
  creds: { type: 'string' },
} as const

export const CONNECTION_HELP = `  --nats URL           NATS server (default: BERTH_NATS_URL, or ./.berth/client.env)
  --credentials FILE   env-style file with BERTH_NATS_URL/USER/PASS (default ./.berth/client.env if present)
  --cluster NAME       cluster name (default berth)
  --user, --pass, --token, --creds   NATS auth (or BERTH_NATS_USER/PASS/TOKEN/CREDS)`

export interface ConnectionFlags {
  nats?: string
  credentials?: string
  cluster?: string
  user?: string
  pass?: string
  token?: string
  creds?: string
}

export async function connectClient(flags: ConnectionFlags, name: string, deadlineMs = 5000): Promise<{ nc: NatsConnection; meta: MetaClient }> {
  const credPath = flags.credentials ?? (existsSync('.berth/client.env') ? '.berth/client.env' : undefined)
  const file = credPath ? readCredentialsFile(credPath) : {}
  const env = envOverFile(file, process.env)
  const url = flags.nats ?? env.BERTH_NATS_URL
  if (!url) throw new Error('no NATS URL: pass --nats URL (or run `berth up` in this folder first)')
  const auth = natsAuthFromEnv({ user: flags.user, pass: flags.pass, token: flags.token, credsFile: flags.creds }, env)
  const nc = await connectNats({ url, name, ...auth, connectTimeoutMs: 5000 })
  return { nc, meta: new MetaClient(nc, { cluster: flags.cluster ?? env.BERTH_CLUSTER ?? DEFAULT_CLUSTER, deadlineMs }) }
}
