/**
 * `berth up`: the embedded cluster. Starts nats-server (generated config and
 * credentials, free 127.0.0.1 port), one meta and N data nodes as child
 * processes with all data under one folder, then mounts it. Ctrl-C or SIGTERM
 * unmounts (flushing dirty data) and stops every child, newest first.
 *
 * State kept in DIR between runs: meta/meta.db, node-<i>/ (blocks and node id),
 * secret (data-plane token), nats-state.json (NATS port, --listen address and
 * users, so mounts and other hosts survive a restart), client.env for `berth
 * status`, `berth mount` and scripts, node.env for data nodes on other hosts,
 * ui-token and ui.json (the dashboard's token and port, cli/up-ui.ts),
 * logs/<child>.log. DIR/up.pid locks the folder (cli/up-lock.ts);
 * every child that dies is restarted with backoff (cli/supervise.ts).
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { formatCredentialsFile } from '../common/credentials'
import { DEFAULT_REPLICAS } from '../common/protocol'
import { DEFAULT_CLUSTER } from '../common/wire'
import { hostPort, launchNatsServer, type NatsServerHandle, type NatsUsers } from './nats-server'
import { spawnService, type ServiceHandle } from './spawn-service'
import { BerthError } from '../common/errors'
import { acquireUpLock } from './up-lock'
import { UpLogs } from './up-logs'
import { checkMountpoint } from '../client/mountpoint-check'
import { berthCommandHint } from './up-hints'
import { loadOrCreateNatsState } from './up-state'
import { Supervised } from './supervise'
import { intFlag } from '../common/flags'
import { dashboardUrl, loadOrCreateDashboard, replaceDashboardPort } from './up-ui'

const HELP = `usage: berth up [--dir DIR] [--nodes 3] [--replicas 2] [--mount DIR | --no-mount] [-o OPTS] [--ha] [--listen HOST]
Starts a local cluster on 127.0.0.1 (or --listen HOST): nats-server, one meta, N data nodes; mounts it.
  --ha             replicated meta: 3 clustered nats-servers (JetStream), 2 meta
                   replicas (one leads by lease, docs/meta.md#replication); a
                   replica that dies is started again and rejoins as a follower
  --dir DIR        where all cluster data lives (default ./.berth); one berth up per DIR
  --nodes N        data nodes to start (default 3)
  --replicas R     copies of each block (default 2, capped by live nodes)
  --mount DIR      mountpoint (default ./mnt)
  --no-mount       start the cluster only
  -o OPTS          mount options, as for \`berth mount -o\` (allow_other, nonempty, ...)
  --nats-port N    NATS port (default: chosen at the first start, then kept in DIR)
  --listen HOST    the address NATS and the data nodes listen on and advertise: an IP
                   address of this host that other hosts reach (default 127.0.0.1,
                   kept in DIR); other hosts' nodes and mounts use DIR/node.env and
                   DIR/client.env (docs/deploy.md)
  --ui-port N      port of the live dashboard, on 127.0.0.1 even with --listen (default:
                   chosen at the first start, then kept in DIR); token in DIR/ui-token
  --cluster NAME   subject prefix (default berth)
  --json           also print one JSON line {"event":"ready",...} on stdout (for supervisors)
Children that die are restarted; their logs are in DIR/logs/.
Press Ctrl-C to unmount and stop everything.

Exit status: 0 after Ctrl-C/SIGTERM, 1 if the cluster could not start (the
reason on stderr; e.g. another berth up already runs on DIR), 2 on bad usage.
`

interface UpConfig {
  dir: string
  nodes: number
  replicas: number
  mount: string | null
  mountOptions: string[]
  natsPort: number | null
  uiPort: number | null
  /** --listen; null: the one kept in DIR (127.0.0.1 at first). */
  listen: string | null
  json: boolean
  cluster: string
  ha: boolean
}

function parseConfig(argv: string[]): UpConfig | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string', default: '.berth' },
      nodes: { type: 'string', default: '3' },
      replicas: { type: 'string', default: String(DEFAULT_REPLICAS) },
      mount: { type: 'string', default: 'mnt' },
      'no-mount': { type: 'boolean', default: false },
      ha: { type: 'boolean', default: false },
      cluster: { type: 'string', default: DEFAULT_CLUSTER },
      o: { type: 'string', short: 'o', multiple: true },
      'nats-port': { type: 'string' },
      'ui-port': { type: 'string' },
      listen: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) return null
  const nodes = intFlag('--nodes', values.nodes, 3, 1, 64)
  const replicas = intFlag('--replicas', values.replicas, DEFAULT_REPLICAS, 1, 16)
  return Object.freeze({
    dir: resolve(values.dir),
    nodes,
    replicas,
    mount: values['no-mount'] ? null : resolve(values.mount),
    mountOptions: values.o ?? [],
    natsPort: values['nats-port'] === undefined ? null : intFlag('--nats-port', values['nats-port'], 4222, 1, 65535),
    listen: values.listen === undefined ? null : listenHost(values.listen),
    uiPort: values['ui-port'] === undefined ? null : intFlag('--ui-port', values['ui-port'], 0, 1, 65535),
    json: values.json,
    cluster: values.cluster,
    ha: values.ha,
  })
}

/**
 * `--listen`: one address to listen on and to advertise, so it must be an
 * address of this host (a wildcard cannot be advertised).
 */
function listenHost(v: string): string {
  const host = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v
  if (!isIP(host)) throw new BerthError('EINVAL', `--listen must be an IP address of this host (e.g. 10.0.0.5), got "${v}"`)
  if (host === '0.0.0.0' || host === '::') throw new BerthError('EINVAL', `--listen ${v}: give the address other hosts reach (e.g. 10.0.0.5); NATS and the nodes also advertise it, and a wildcard cannot be advertised`)
  return host
}

/** The data-plane token survives restarts so nodes and meta always agree. */
function loadOrCreateSecret(dir: string): string {
  const path = join(dir, 'secret')
  if (existsSync(path)) return readFileSync(path, 'utf8').trim()
  const secret = randomBytes(32).toString('base64url')
  writeFileSync(path, secret + '\n', { mode: 0o600 })
  return secret
}

export async function run(argv: string[]): Promise<void> {
  const cfg = parseConfig(argv)
  if (!cfg) {
    process.stdout.write(HELP)
    return
  }
  mkdirSync(cfg.dir, { recursive: true, mode: 0o700 })
  // before anything in DIR is read or written: one berth up per folder
  const lock = acquireUpLock(cfg.dir)
  if (cfg.mount) {
    // a mountpoint that cannot work fails now, before any child starts
    mkdirSync(cfg.mount, { recursive: true })
    try {
      checkMountpoint(cfg.mount, { nonempty: cfg.mountOptions.some((o) => o.split(',').includes('nonempty')) })
    } catch (err) {
      lock.release()
      throw err
    }
  }
  const say = (line: string) => process.stderr.write(`berth up: ${line}\n`)
  const logs = new UpLogs(join(cfg.dir, 'logs'), (line) => process.stderr.write(`${line}\n`))
  const started = Date.now()
  const children: Array<Supervised<ServiceHandle>> = []
  // one server, or (--ha) three clustered ones, each supervised on its own
  const nats: Array<Supervised<NatsServerHandle>> = []
  let stopping: Promise<void> | undefined
  const stopAll = () => {
    stopping ??= (async () => {
      // Newest first: the mount flushes while meta and nodes are still there.
      for (const c of children.reverse()) await c.stop()
      for (const n of nats) await n.stop()
      logs.close()
      lock.release()
    })()
    return stopping
  }
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nberth up: ${sig}, stopping...\n`)
    void stopAll().then(() => {
      say(`stopped${cfg.mount ? `, ${cfg.mount} unmounted` : ''}; data kept in ${cfg.dir} (\`berth up --dir ${cfg.dir}\` starts it again)`)
      process.exit(0)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const secret = loadOrCreateSecret(cfg.dir)
    const state = await loadOrCreateNatsState(cfg.dir, cfg.natsPort, cfg.ha ? 3 : 1, cfg.listen)
    const ui = await loadOrCreateDashboard(cfg.dir, cfg.ha ? 2 : 1, cfg.uiPort)
    const startNats = (i: number) => async () => {
      const port = state.ports[i]!
      const route = state.routes ? { serverName: `berth-nats-${i}`, port: state.routes[i]!, routes: state.routes } : undefined
      const h = await launchNatsServer({ dir: join(cfg.dir, cfg.ha ? `nats-${i}` : 'nats'), cluster: cfg.cluster, port, users: state.users, route, host: state.host }).catch((err: unknown) => {
        throw new BerthError('EIO', `${(err as Error).message.trim()}\n  hint: is port ${port} taken by another program? start with --nats-port N (kept for later starts)`)
      })
      logs.follow(cfg.ha ? `nats-${i}` : 'nats', h.child.stderr)
      return h
    }
    // clustered servers wait for their routes: start them together
    const natsFirst = await Promise.all(state.ports.map((_, i) => startNats(i)()))
    natsFirst.forEach((h, i) => nats.push(new Supervised(cfg.ha ? `nats-server-${i}` : 'nats-server', h, startNats(i), say)))
    const natsUrl = nats.map((n) => n.current.url).join(',')
    const users = state.users
    const env = (role: keyof NatsUsers): NodeJS.ProcessEnv => ({
      BERTH_NATS_USER: users[role].user,
      BERTH_NATS_PASS: users[role].pass,
      BERTH_SECRET: secret,
    })
    const common = ['--nats', natsUrl, '--cluster', cfg.cluster]
    const credentials = join(cfg.dir, 'client.env')
    writeFileSync(credentials, formatCredentialsFile({
      BERTH_NATS_URL: natsUrl,
      BERTH_NATS_USER: users.client.user,
      BERTH_NATS_PASS: users.client.pass,
      BERTH_CLUSTER: cfg.cluster,
    }), { mode: 0o600 })
    // what a data node on another host needs (docs/deploy.md): berth node reads these variables
    const nodeEnv = join(cfg.dir, 'node.env')
    writeFileSync(nodeEnv, formatCredentialsFile({
      BERTH_NATS_URL: natsUrl,
      BERTH_NATS_USER: users.node.user,
      BERTH_NATS_PASS: users.node.pass,
      BERTH_SECRET: secret,
      BERTH_CLUSTER: cfg.cluster,
    }), { mode: 0o600 })

    // generous: on a busy machine a node can take well over 15 s to load; a
    // child that fails says why at once ({event:failed} or its exit), so this
    // only bounds a real hang
    const supervise = async (name: string, args: string[] | (() => string[]), role: keyof NatsUsers, readyTimeoutMs = 60_000) => {
      const start = async () => {
        const h = await spawnService(typeof args === 'function' ? args() : args, { env: env(role), readyTimeoutMs }).catch((err: unknown) => {
          logs.follow(name, null, (err as Error).message + '\n')
          throw err
        })
        logs.follow(name, h.child.stderr, h.stderr())
        return h
      }
      const s = new Supervised(name, await start(), start, say)
      children.push(s)
      return s
    }
    // --ha: two replicas, each with its own database; a restarted one rejoins as a follower
    const uiArgs = (i: number) => ['--ui-listen', `127.0.0.1:${ui.ports[i]!}`, '--ui-token-file', ui.tokenFile]
    const metaArgs = (i: number) =>
      cfg.ha
        ? ['meta', ...common, '--db', join(cfg.dir, `meta-${i}`, 'meta.db'), '--replicas', String(cfg.replicas), '--ha', '--log-replicas', '3', ...uiArgs(i)]
        : ['meta', ...common, '--db', join(cfg.dir, 'meta', 'meta.db'), '--replicas', String(cfg.replicas), ...uiArgs(i)]
    // a dashboard port berth up chose (not --ui-port) that another process took
    // before meta bound it: a new one, at most twice
    const superviseMeta = async (i: number) => {
      for (let moved = 0; ; moved++) {
        try {
          return await supervise(cfg.ha ? `meta-${i}` : 'meta', () => metaArgs(i), 'meta')
        } catch (err) {
          const taken = new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${ui.ports[i]!}\\b`).test((err as Error).message)
          if (!taken || moved >= 2 || (i === 0 && cfg.uiPort !== null)) throw err
          const was = ui.ports[i]!
          say(`dashboard port ${was} of meta ${i} was taken meanwhile; using ${await replaceDashboardPort(cfg.dir, ui, i)}`)
        }
      }
    }
    const metas = await Promise.all(Array.from({ length: cfg.ha ? 2 : 1 }, (_, i) => superviseMeta(i)))
    const nodes = await Promise.all(
      Array.from({ length: cfg.nodes }, (_, i) =>
        supervise(`node-${i}`, ['node', ...common, '--dir', join(cfg.dir, `node-${i}`), '--listen', hostPort(state.host, 0)], 'node'),
      ),
    )
    if (cfg.mount) {
      mkdirSync(cfg.mount, { recursive: true })
      const opts = cfg.mountOptions.length > 0 ? ['-o', cfg.mountOptions.join(',')] : []
      await supervise('mount', ['mount', natsUrl, cfg.mount, '--foreground', '--cluster', cfg.cluster, ...opts], 'client')
    }
    const lines = [
      `berth up: cluster "${cfg.cluster}" ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `  NATS          ${natsUrl} (kept across restarts)`,
      `  credentials   ${credentials}`,
      ...(state.host !== '127.0.0.1' ? [`  other hosts   nodes: ${nodeEnv} (node role and secret); mounts: ${credentials} (docs/deploy.md)`] : []),
      cfg.ha
        ? `  meta          2 replicas (--ha), pids ${metas.map((m) => m.current.pid).join(', ')}, dbs ${cfg.dir}/meta-{0,1}/meta.db; NATS cluster of 3`
        : `  meta          pid ${metas[0]!.current.pid}, db ${join(cfg.dir, 'meta', 'meta.db')}`,
      ...nodes.map((n, i) => `  node ${i}        ${String(n.current.ready.url)} (id ${String(n.current.ready.id)}, pid ${n.current.pid})`),
      `  dashboard     ${dashboardUrl(ui.ports[0]!, ui.token)}${cfg.ha ? ` (meta-0; meta-1 on port ${ui.ports[1]!}: the leader's page shows the cluster)` : ''}`,
      `  logs          ${logs.dir}`,
      cfg.mount ? `  mounted at    ${cfg.mount}` : '  not mounted (--no-mount)',
      ...berthCommandHint(credentials),
      'Press Ctrl-C to stop.',
      '',
    ]
    process.stderr.write(lines.join('\n'))
    if (cfg.json) {
      process.stdout.write(JSON.stringify({ event: 'ready', role: 'up', nats: natsUrl, credentials, mount: cfg.mount, ui: ui.ports.map((p) => dashboardUrl(p)), uiToken: ui.tokenFile, nodes: nodes.map((n) => n.current.ready) }) + '\n')
    }
  } catch (err) {
    await stopAll()
    throw err
  }
  // Stay up until a signal arrives.
  setInterval(() => undefined, 1 << 30)
  await new Promise<never>(() => undefined)
}
