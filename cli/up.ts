/**
 * `berth up`: the embedded cluster. Starts nats-server (generated config and
 * credentials, free 127.0.0.1 port), one meta and N data nodes as child
 * processes with all data under one folder, then mounts it. Ctrl-C or SIGTERM
 * unmounts (flushing dirty data) and stops every child, newest first.
 *
 * State kept in DIR between runs: meta/meta.db, node-<i>/ (blocks and node id),
 * secret (data-plane token). NATS credentials are generated on every start and
 * written to DIR/client.env for `berth status`, `berth mount` and scripts.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { formatCredentialsFile } from '../common/credentials'
import { DEFAULT_REPLICAS } from '../common/protocol'
import { DEFAULT_CLUSTER } from '../common/wire'
import { launchNatsCluster, launchNatsServer, type NatsServerHandle, type NatsUsers } from './nats-server'
import { spawnService, type ServiceHandle } from './spawn-service'
import { intFlag } from '../common/flags'

const HELP = `usage: berth up [--dir DIR] [--nodes 3] [--replicas 2] [--mount DIR | --no-mount] [--ha]
Starts a local cluster on 127.0.0.1: nats-server, one meta, N data nodes; mounts it.
  --ha             replicated meta: 3 clustered nats-servers (JetStream), 2 meta
                   replicas (one leads by lease, docs/meta.md#replication); a
                   replica that dies is started again and rejoins as a follower
  --dir DIR        where all cluster data lives (default ./.berth)
  --nodes N        data nodes to start (default 3)
  --replicas R     copies of each block (default 2, capped by live nodes)
  --mount DIR      mountpoint (default ./mnt)
  --no-mount       start the cluster only
  --cluster NAME   subject prefix (default berth)
Press Ctrl-C to unmount and stop everything.
`

interface UpConfig {
  dir: string
  nodes: number
  replicas: number
  mount: string | null
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
    cluster: values.cluster,
    ha: values.ha,
  })
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
  const started = Date.now()
  const children: ServiceHandle[] = []
  let nats: Pick<NatsServerHandle, 'url' | 'users' | 'stop'> | undefined
  let stopping: Promise<void> | undefined
  const stopAll = () => {
    stopping ??= (async () => {
      // Newest first: the mount flushes while meta and nodes are still there.
      for (const c of children.reverse()) await c.stop()
      await nats?.stop()
    })()
    return stopping
  }
  /**
   * --ha: a meta replica that dies is started again (it rejoins as a follower
   * and catches up from the log), as compose's restart policy does.
   */
  const supervise = (first: ServiceHandle, restart: () => Promise<ServiceHandle>, what: string) => {
    const slot = { current: first }
    children.push({ ...first, stop: () => slot.current.stop() } as ServiceHandle)
    const watch = (h: ServiceHandle) =>
      h.child.once('exit', (code, signal) => {
        if (stopping) return
        process.stderr.write(`berth up: ${what} (pid ${h.pid}) exited (${code ?? signal}); starting it again\n`)
        setTimeout(() => {
          if (stopping) return
          restart().then(
            (next) => {
              slot.current = next
              watch(next)
            },
            (err: unknown) => process.stderr.write(`berth up: restarting ${what} failed: ${(err as Error).message}\n`),
          )
        }, 1000)
      })
    watch(first)
  }
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nberth up: ${sig}, stopping...\n`)
    void stopAll().then(() => process.exit(0))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const secret = loadOrCreateSecret(cfg.dir)
    nats = cfg.ha
      ? await launchNatsCluster({ dir: join(cfg.dir, 'nats'), n: 3, cluster: cfg.cluster })
      : await launchNatsServer({ dir: join(cfg.dir, 'nats'), cluster: cfg.cluster })
    const users = nats.users
    const env = (role: keyof NatsUsers): NodeJS.ProcessEnv => ({
      BERTH_NATS_USER: users[role].user,
      BERTH_NATS_PASS: users[role].pass,
      BERTH_SECRET: secret,
    })
    const common = ['--nats', nats.url, '--cluster', cfg.cluster]
    const credentials = join(cfg.dir, 'client.env')
    writeFileSync(credentials, formatCredentialsFile({
      BERTH_NATS_URL: nats.url,
      BERTH_NATS_USER: users.client.user,
      BERTH_NATS_PASS: users.client.pass,
      BERTH_CLUSTER: cfg.cluster,
    }), { mode: 0o600 })

    const metaArgs = (i: number) =>
      cfg.ha
        ? ['meta', ...common, '--db', join(cfg.dir, `meta-${i}`, 'meta.db'), '--replicas', String(cfg.replicas), '--ha', '--log-replicas', '3']
        : ['meta', ...common, '--db', join(cfg.dir, 'meta', 'meta.db'), '--replicas', String(cfg.replicas)]
    const metas = await Promise.all(Array.from({ length: cfg.ha ? 2 : 1 }, (_, i) => spawnService(metaArgs(i), { env: env('meta'), inheritStderr: true, readyTimeoutMs: 60_000 })))
    const meta = metas[0]!
    if (cfg.ha) metas.forEach((m, i) => supervise(m, () => spawnService(metaArgs(i), { env: env('meta'), inheritStderr: true, readyTimeoutMs: 60_000 }), `meta replica ${i}`))
    else children.push(meta)
    const nodes = await Promise.all(
      Array.from({ length: cfg.nodes }, (_, i) =>
        spawnService(['node', ...common, '--dir', join(cfg.dir, `node-${i}`), '--listen', '127.0.0.1:0'], { env: env('node'), inheritStderr: true }),
      ),
    )
    children.push(...nodes)
    for (const c of children) {
      c.child.once('exit', (code, signal) => {
        if (!stopping) process.stderr.write(`berth up: ${c.ready.role ?? 'child'} (pid ${c.pid}) exited unexpectedly (${code ?? signal})\n`)
      })
    }
    if (cfg.mount) {
      mkdirSync(cfg.mount, { recursive: true })
      const mount = await spawnService(['mount', nats.url, cfg.mount, '--foreground', '--cluster', cfg.cluster], { env: env('client'), inheritStderr: true, readyTimeoutMs: 30_000 })
      children.push(mount)
    }
    const lines = [
      `berth up: cluster "${cfg.cluster}" ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `  NATS          ${nats.url}`,
      `  credentials   ${credentials}`,
      cfg.ha
        ? `  meta          2 replicas (--ha), pids ${metas.map((m) => m.pid).join(', ')}, dbs ${cfg.dir}/meta-{0,1}/meta.db; NATS cluster of 3`
        : `  meta          pid ${meta.pid}, db ${join(cfg.dir, 'meta', 'meta.db')}`,
      ...nodes.map((n, i) => `  node ${i}        ${String(n.ready.url)} (id ${String(n.ready.id)}, pid ${n.pid})`),
      cfg.mount ? `  mounted at    ${cfg.mount}` : '  not mounted (--no-mount)',
      'Press Ctrl-C to stop.',
      '',
    ]
    process.stderr.write(lines.join('\n'))
    process.stdout.write(JSON.stringify({ event: 'ready', role: 'up', nats: nats.url, credentials, mount: cfg.mount, nodes: nodes.map((n) => n.ready) }) + '\n')
  } catch (err) {
    await stopAll()
    throw err
  }
  // Stay up until a signal arrives.
  setInterval(() => undefined, 1 << 30)
  await new Promise<never>(() => undefined)
}
