/**
 * `berth status`: the cluster as meta sees it. Human table by default,
 * `--json` for scripts. Without --nats it reads ./.berth/client.env (written by
 * `berth up`).
 */
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { readCredentialsFile } from '../common/credentials'
import { MetaClient } from '../common/meta-client'
import { connectNats, natsAuthFromEnv } from '../common/nats-connect'
import type { StatusReply } from '../common/protocol'
import { DEFAULT_CLUSTER } from '../common/wire'

const HELP = `usage: berth status [--nats URL] [--credentials FILE] [--cluster NAME] [--json]
  --nats URL           NATS server (default: BERTH_NATS_URL, or ./.berth/client.env)
  --credentials FILE   env-style file with BERTH_NATS_URL/USER/PASS (default ./.berth/client.env if present)
  --user, --pass, --token, --creds   NATS auth (or BERTH_NATS_USER/PASS/TOKEN/CREDS)
  --json               machine-readable output
`

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      nats: { type: 'string' },
      credentials: { type: 'string' },
      cluster: { type: 'string' },
      json: { type: 'boolean', default: false },
      user: { type: 'string' },
      pass: { type: 'string' },
      token: { type: 'string' },
      creds: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const credPath = values.credentials ?? (existsSync('.berth/client.env') ? '.berth/client.env' : undefined)
  const file = credPath ? readCredentialsFile(credPath) : {}
  const env = { ...file, ...process.env }
  const url = values.nats ?? env.BERTH_NATS_URL
  if (!url) throw new Error('no NATS URL: pass --nats URL (or run `berth up` in this folder first)')
  const auth = natsAuthFromEnv({ user: values.user, pass: values.pass, token: values.token, credsFile: values.creds }, env)
  const nc = await connectNats({ url, name: 'berth-status', ...auth, connectTimeoutMs: 5000 })
  try {
    const meta = new MetaClient(nc, { cluster: values.cluster ?? env.BERTH_CLUSTER ?? DEFAULT_CLUSTER, deadlineMs: 5000 })
    const status = await meta.call('status', {})
    process.stdout.write(values.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status))
  } finally {
    await nc.close()
  }
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

export function formatStatus(s: StatusReply): string {
  const rows = [['NODE', 'URL', 'STATE', 'BLOCKS', 'USED', 'CAPACITY', 'LAST SEEN']]
  const now = Date.now()
  for (const n of s.nodes) {
    rows.push([n.id, n.url, n.alive ? n.state : 'dead', String(n.blocks), bytes(n.used), bytes(n.capacity), `${((now - n.seen) / 1000).toFixed(1)}s ago`])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
  const live = s.nodes.filter((n) => n.alive).length
  return [
    `meta ${s.metaId}, up since ${new Date(s.startedAt).toISOString()}`,
    `nodes: ${live} live of ${s.nodes.length}`,
    table,
    `inodes: ${s.inodes}  blocks: ${s.blocks} (${bytes(s.bytes)})  under-replicated: ${s.underReplicated}`,
    `sessions: ${s.sessions}  open files: ${s.openFiles}`,
    '',
  ].join('\n')
}
