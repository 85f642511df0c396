/**
 * Starts a private nats-server (from PATH) for the embedded cluster and tests:
 * generated config, users per role, a free 127.0.0.1 port, JetStream on.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { MAX_MESSAGE_BYTES } from '../common/protocol'
import { inboxPrefixFor } from '../common/nats-connect'
import { DEFAULT_CLUSTER, subjects } from '../common/wire'

export interface NatsUsers {
  meta: { user: string; pass: string }
  node: { user: string; pass: string }
  client: { user: string; pass: string }
}

export interface NatsServerHandle {
  /** nats://HOST:PORT (no credentials in it; HOST 127.0.0.1 unless given). */
  url: string
  port: number
  users: NatsUsers
  child: ChildProcess
  /** SIGTERM and wait for exit; safe to call twice. */
  stop(): Promise<void>
}

export function natsServerPath(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' })
  const path = r.stdout.trim()
  return r.status === 0 && path ? path : null
}

export const NATS_INSTALL_HINT = 'nats-server is not installed: on Debian/Ubuntu run `sudo apt-get install nats-server` (or put the nats-server binary on PATH)'

export function generateUsers(): NatsUsers {
  const pw = () => randomBytes(18).toString('base64url')
  return { meta: { user: 'meta', pass: pw() }, node: { user: 'node', pass: pw() }, client: { user: 'client', pass: pw() } }
}

export type NatsRole = keyof NatsUsers

export interface RolePermissions {
  publish: string[]
  subscribe: string[]
  /** May answer requests it received (publish to their reply subjects only). */
  allowResponses: boolean
}

/**
 * What each role may publish and subscribe to, from the subjects the code uses
 * (common/wire.ts subjects()). docker/nats.conf spells out the same lists for the
 * default cluster name; test/nats-permissions.test.ts checks both.
 *  meta:   serves meta ops and the leader probe, hears heartbeats, publishes
 *          invalidations and node commands.
 *  node:   publishes heartbeats, serves placement and its commands, reports
 *          a copy its scrub found corrupt (meta's badCopy, that op only).
 *  client: asks meta (after asking the leader probe who serves) and
 *          placement, hears invalidations and heartbeats; it can
 *          neither publish a heartbeat or a node command nor answer anything,
 *          so it cannot impersonate a server.
 * Each credential subscribes only to its own reply inbox (`_INBOX_<user>.>`,
 * common/nats-connect.ts), so no credential reads replies meant for another.
 */
export function rolePermissions(cluster: string = DEFAULT_CLUSTER, users: Record<NatsRole, string> = { meta: 'meta', node: 'node', client: 'client' }): Record<NatsRole, RolePermissions> {
  const s = subjects(cluster)
  // replies come back on the credential's own prefix (inboxPrefixFor), never _INBOX.>
  const inbox = (role: NatsRole) => `${inboxPrefixFor(users[role])}.>`
  const nodeCmds = s.nodeCmd('*')
  const metactl = `${cluster}.metactl.>`
  return {
    meta: {
      // <cluster>.metalog: the replicated log (meta/log/stream.ts); $O.>: its snapshots
      // (meta/log/snapshot.ts); both meta only
      publish: [metactl, s.inval, nodeCmds, s.place, s.placeAtAll, `${cluster}.metalog`, '$JS.API.>', '$KV.>', '$O.>'],
      subscribe: [s.metaAll, s.metaAtAll, metactl, s.heartbeat, s.inval, inbox('meta')],
      allowResponses: true,
    },
    node: {
      publish: [s.heartbeat, s.meta('badCopy')],
      subscribe: [s.place, s.placeAtAll, nodeCmds, s.heartbeat, inbox('node')],
      allowResponses: true,
    },
    client: {
      // metaLeader: a client asks who serves, then that meta by its own subject (common/meta-route.ts)
      // placeAt: a client asks a node with fresh heartbeats by its own subject (common/block-client.ts)
      publish: [s.metaAll, s.metaAtAll, s.metaLeader, s.place, s.placeAtAll],
      subscribe: [s.inval, s.heartbeat, inbox('client')],
      allowResponses: false,
    },
  }
}

function permissionsBlock(p: RolePermissions): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`
  return `{ publish: { allow: ${list(p.publish)} }, subscribe: { allow: ${list(p.subscribe)} }${p.allowResponses ? ', allow_responses: true' : ''} }`
}

/** Clustering of one server of a local NATS cluster (`berth up --ha`, tests). */
export interface ClusterRoute {
  serverName: string
  /** Port this server listens on for routes (127.0.0.1). */
  port: number
  /** Route ports of every server, this one included. */
  routes: number[]
}

/**
 * nats-server config text; `port` may be -1 for a random free port. `host`:
 * the address clients connect to (default 127.0.0.1; another host's meta,
 * nodes and mounts need an address they can reach, docs/deploy.md).
 */
export function natsConfig(opts: { port: number; storeDir: string; users: NatsUsers; cluster?: string; route?: ClusterRoute; host?: string }): string {
  const u = opts.users
  const q = (s: string) => JSON.stringify(s)
  const perms = rolePermissions(opts.cluster, { meta: u.meta.user, node: u.node.user, client: u.client.user })
  const user = (role: NatsRole) => `    { user: ${q(u[role].user)}, password: ${q(u[role].pass)}, permissions: ${permissionsBlock(perms[role])} }`
  const r = opts.route
  return [
    ...(r
      ? [
          `server_name: ${q(r.serverName)}`,
          `cluster { name: "berth", listen: "127.0.0.1:${r.port}", routes: [${r.routes.map((p) => q(`nats-route://127.0.0.1:${p}`)).join(', ')}] }`,
        ]
      : []),
    `listen: ${hostPort(opts.host ?? '127.0.0.1', opts.port)}`,
    `max_payload: ${MAX_MESSAGE_BYTES + 64 * 1024}`,
    // a connection that stops answering pings is closed after ~6-8 s instead of the default
    // 2 min x 2: until then the server keeps routing queue-group requests to a partitioned
    // meta's dead subscription (it prefers subscribers on the requester's own server)
    'ping_interval: "2s"',
    'ping_max: 3',
    `jetstream { store_dir: ${q(opts.storeDir)}, max_memory_store: 64MB, max_file_store: 256MB }`,
    'authorization {',
    '  users = [',
    user('meta'),
    user('node'),
    user('client'),
    '  ]',
    '}',
    '',
  ].join('\n')
}

/** HOST:PORT, with an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** A port free right now on 127.0.0.1; another process may bind it before its user does. */
export function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

/**
 * `n` ports free right now on 127.0.0.1, all different and none in `avoid`:
 * two calls of freeLocalPort may return the same port (it is free again once
 * the probe closes), and a cluster whose route port was its own client port
 * failed to start (CI, test/up: nats-server "Error listening on router port").
 */
export async function freeLocalPorts(n: number, avoid: Iterable<number> = [], pick: () => Promise<number> = freeLocalPort): Promise<number[]> {
  const taken = new Set(avoid)
  const out: number[] = []
  while (out.length < n) {
    const port = await pick()
    if (taken.has(port)) continue
    taken.add(port)
    out.push(port)
  }
  return out
}

export interface NatsClusterHandle {
  /** Every server's client URL, comma separated (what --nats takes). */
  url: string
  /** Client port of the first server. */
  port: number
  servers: NatsServerHandle[]
  users: NatsUsers
  stop(): Promise<void>
  /** SIGKILL of server `i` (a fault test's crash), resolved once it has exited. */
  kill(i: number): Promise<void>
  /** Starts server `i` again on its port, folder and routes (it rejoins the cluster). */
  restart(i: number): Promise<void>
}

/**
 * `n` nats-servers clustered on 127.0.0.1 with JetStream (Raft-replicated
 * streams and KV), one folder each under `dir`: the replicated log and lease
 * of `berth meta --ha` survive the loss of any one of them (with n = 3).
 */
export async function launchNatsCluster(opts: { dir: string; n?: number; users?: NatsUsers; cluster?: string; pickPort?: () => Promise<number> }): Promise<NatsClusterHandle> {
  const n = opts.n ?? 3
  const users = opts.users ?? generateUsers()
  const clientPorts: number[] = []
  const routePorts: number[] = []
  const pickPort = opts.pickPort ?? freeLocalPort
  const launch = (i: number) =>
    launchNatsServer({ dir: join(opts.dir, `nats-${i}`), port: clientPorts[i]!, users, cluster: opts.cluster, route: { serverName: `berth-nats-${i}`, port: routePorts[i]!, routes: routePorts } })
  let servers: NatsServerHandle[] = []
  // A port that was free when freeLocalPort closed it can be bound by another
  // process before nats-server binds it: that attempt fails as a whole (every
  // route list names every port), so all of it is stopped and tried again
  // with new ports.
  for (let attempt = 1; ; attempt++) {
    clientPorts.length = 0
    routePorts.length = 0
    for (let i = 0; i < n; i++) {
      clientPorts.push(await pickPort())
      routePorts.push(await pickPort())
    }
    const started = await Promise.allSettled(clientPorts.map((_, i) => launch(i)))
    const up = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    const failed = started.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []))
    if (failed.length === 0) {
      servers = up
      break
    }
    await Promise.all(up.map((x) => x.stop()))
    if (attempt >= 3 || !failed.every((err) => PORT_TAKEN.test(err.message))) throw failed[0]!
  }
  return {
    url: servers.map((x) => x.url).join(','),
    port: servers[0]!.port,
    servers,
    users,
    stop: async () => {
      await Promise.all(servers.map((x) => x.stop()))
    },
    kill: async (i) => {
      const child = servers[i]!.child
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((ok) => child.once('exit', () => ok()))
      child.kill('SIGKILL')
      await exited
    },
    restart: async (i) => {
      servers[i] = await launch(i)
    },
  }
}

/** How nats-server says that a port it was told to listen on is in use. */
const PORT_TAKEN = /address already in use/

export async function launchNatsServer(opts: { dir: string; port?: number; users?: NatsUsers; cluster?: string; readyTimeoutMs?: number; route?: ClusterRoute; host?: string }): Promise<NatsServerHandle> {
  const bin = natsServerPath()
  if (!bin) throw new Error(NATS_INSTALL_HINT)
  mkdirSync(opts.dir, { recursive: true })
  const users = opts.users ?? generateUsers()
  const confPath = join(opts.dir, 'nats.conf')
  writeFileSync(confPath, natsConfig({ port: opts.port ?? -1, storeDir: join(opts.dir, 'jetstream'), users, cluster: opts.cluster, route: opts.route, host: opts.host }), { mode: 0o600 })
  const child = spawn(bin, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] })
  const port = await new Promise<number>((resolve, reject) => {
    let log = ''
    const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000
    const timer = setTimeout(() => {
      fail(new Error(`nats-server did not start within ${readyTimeoutMs} ms:\n${log}`))
      child.kill('SIGKILL')
    }, readyTimeoutMs)
    // 'close', not 'exit': by then its last words (a fatal error) are in the log
    const exited = (code: number | null) => fail(new Error(`nats-server exited with ${code}:\n${log}`))
    const settle = () => {
      clearTimeout(timer)
      child.off('error', fail)
      child.off('close', exited)
      child.stderr?.off('data', heard)
    }
    const fail = (err: Error) => {
      settle()
      reject(err)
    }
    const heard = (chunk: string) => {
      log += chunk
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log)
      // "Server is ready" comes before the route port is bound: a server
      // whose route port is taken logs that and exits just after, so with
      // routes it is ready only once that port listens too.
      if (m && /Server is ready/.test(log) && (!opts.route || /Listening for route connections on/.test(log))) {
        settle()
        // keep draining stderr so the pipe never fills
        child.stderr?.resume()
        resolve(Number(m[1]))
      }
    }
    child.once('error', fail)
    child.once('close', exited)
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', heard)
  })
  let stopping: Promise<void> | undefined
  return {
    url: `nats://${hostPort(opts.host ?? '127.0.0.1', port)}`,
    port,
    users,
    child,
    stop() {
      stopping ??= stopChild(child)
      return stopping
    },
  }
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the child is gone. */
export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}
