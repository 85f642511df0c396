/**
 * `berth init-cluster --dir DIR --listen HOST`: what a multi-host cluster
 * needs, written once and started by nothing (docs/deploy.md): the
 * nats-server config with one user per role and its permissions, and one
 * env file per role with the NATS URL, that role's credentials and (for meta
 * and nodes) the data-plane secret. The files go to /etc/berth/ on the hosts
 * that run each role; tools/systemd's units read them there.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { formatCredentialsFile } from '../common/credentials'
import { BerthError } from '../common/errors'
import { intFlag } from '../common/flags'
import { DEFAULT_CLUSTER, subjects } from '../common/wire'
import { generateUsers, hostPort, natsConfig, type NatsRole } from './nats-server'

const HELP = `usage: berth init-cluster --dir DIR --listen HOST [--nats-port 4222] [--cluster NAME] [--nats-store DIR] [--json]
Writes the configuration of a multi-host cluster into DIR, starts nothing:
  nats.conf    nats-server config: listens on HOST:PORT, one user per role
               (meta, node, client) with its permissions      -> the NATS host
  meta.env     NATS URL, meta's credentials, the secret          -> the meta host
  node.env     NATS URL, the node credentials, the secret        -> every data node host
  client.env   NATS URL, the client credentials (no secret)      -> every mounting host
Every file is mode 0600 (passwords); install them as /etc/berth/<name>
(docs/deploy.md, tools/systemd/).
  --dir DIR          where to write them (created; existing files are never overwritten)
  --listen HOST      the address of the NATS host the others reach (an IP or DNS name)
  --nats-port N      NATS client port (default 4222)
  --cluster NAME     subject prefix (default ${DEFAULT_CLUSTER})
  --nats-store DIR   nats-server's JetStream folder on the NATS host (default /var/lib/berth/nats)
  --json             print {dir, natsUrl, files} on stdout

Exit status: 0 written, 1 a file exists or cannot be written, 2 bad usage.
`

const FILES = ['nats.conf', 'meta.env', 'node.env', 'client.env'] as const

/** A host name or IP address NATS can listen on and others can dial. */
function parseHost(v: string): string {
  const host = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v
  if (host === '0.0.0.0' || host === '::') throw new BerthError('EINVAL', `--listen ${v}: give the address other hosts reach (it goes into every env file's NATS URL)`)
  if (!isIP(host) && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(host)) throw new BerthError('EINVAL', `--listen must be an IP address or a host name, got "${v}"`)
  return host
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      listen: { type: 'string' },
      'nats-port': { type: 'string' },
      cluster: { type: 'string', default: DEFAULT_CLUSTER },
      'nats-store': { type: 'string', default: '/var/lib/berth/nats' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  if (!values.dir) throw Object.assign(new Error('--dir DIR is required'), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' })
  if (!values.listen) throw Object.assign(new Error('--listen HOST is required (the NATS host\'s address)'), { code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' })
  const host = parseHost(values.listen)
  const port = intFlag('--nats-port', values['nats-port'], 4222, 1, 65535)
  const cluster = values.cluster
  subjects(cluster) // throws on a name NATS subjects cannot carry
  const dir = resolve(values.dir)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const taken = FILES.filter((f) => existsSync(join(dir, f)))
  if (taken.length > 0) {
    throw new BerthError('EEXIST', `${taken.map((f) => join(dir, f)).join(', ')} exist(s); init-cluster never overwrites credentials\n  hint: choose another --dir, or remove them (every host then needs the new files)`)
  }

  const users = generateUsers()
  const secret = randomBytes(32).toString('base64url')
  const natsUrl = `nats://${hostPort(host, port)}`
  const env = (role: NatsRole, withSecret: boolean) =>
    formatCredentialsFile({
      BERTH_NATS_URL: natsUrl,
      BERTH_NATS_USER: users[role].user,
      BERTH_NATS_PASS: users[role].pass,
      BERTH_CLUSTER: cluster,
      ...(withSecret ? { BERTH_SECRET: secret } : {}),
    })
  // NATS listens on every address of its host; the URL in the env files names the one the others dial
  const conf = natsConfig({ port, host: '0.0.0.0', storeDir: values['nats-store'], users, cluster })
  const contents: Record<(typeof FILES)[number], string> = {
    'nats.conf': `# berth init-cluster: nats-server config for cluster "${cluster}" (clients dial ${natsUrl})\n${conf}`,
    'meta.env': `# berth init-cluster: /etc/berth/meta.env on the meta host\n${env('meta', true)}`,
    'node.env': `# berth init-cluster: /etc/berth/node.env on every data node host; add this host's\n# BERTH_NODE_ADVERTISE=http://ADDRESS:7001 (and BERTH_ZONE=...) below\n${env('node', true)}`,
    'client.env': `# berth init-cluster: /etc/berth/client.env on every mounting host\n${env('client', false)}`,
  }
  for (const f of FILES) writeFileSync(join(dir, f), contents[f], { mode: 0o600, flag: 'wx' })

  if (values.json) {
    process.stdout.write(JSON.stringify({ dir, natsUrl, cluster, files: Object.fromEntries(FILES.map((f) => [f, join(dir, f)])) }) + '\n')
    return
  }
  process.stdout.write(
    [
      `wrote the configuration of cluster "${cluster}" (NATS at ${natsUrl}) to ${dir}:`,
      `  nats.conf   -> /etc/berth/nats.conf on the NATS host (tools/systemd/berth-nats.service)`,
      `  meta.env    -> /etc/berth/meta.env on the meta host (berth-meta.service)`,
      `  node.env    -> /etc/berth/node.env on each data node host (berth-node.service; add BERTH_NODE_ADVERTISE)`,
      `  client.env  -> /etc/berth/client.env on each mounting host (mnt-berth.mount)`,
      'Copy them with mode 0600 (they hold passwords); next steps: docs/deploy.md',
      '',
    ].join('\n'),
  )
}
