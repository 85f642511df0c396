/**
 * What `berth up` keeps in its folder so a restart is the same cluster to
 * everyone outside it: the NATS port and the per-role NATS users. An fstab
 * line, a mount started by hand or another host's node keep working across
 * restarts, and the generated nats.conf listens on that fixed port, so a
 * nats-server restarted from its own config comes back where clients look.
 *
 * DIR/nats-state.json (mode 0600): { "port": 4222, "host": "127.0.0.1", "users": { ... } }; with
 * --ha also "cluster": { "ports": [p0, p1, p2], "routes": [r0, r1, r2] } (the
 * client and route ports of the three clustered servers; ports[0] is `port`).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BerthError } from '../common/errors'
import { freeLocalPort, freeLocalPorts, generateUsers, type NatsUsers } from './nats-server'

export interface NatsState {
  port: number
  /** `--listen`: the address NATS and the nodes listen on and advertise (absent: 127.0.0.1). */
  host?: string
  users: NatsUsers
  /** --ha: the clustered servers' client and route ports. */
  cluster?: { ports: number[]; routes: number[] }
}

/** What `berth up` starts: one client port per server, route ports when clustered. */
export interface NatsLayout {
  users: NatsUsers
  host: string
  ports: number[]
  routes: number[] | null
}

export const DEFAULT_HOST = '127.0.0.1'

export function natsStatePath(dir: string): string {
  return join(dir, 'nats-state.json')
}

/**
 * Loads the kept ports and users, or picks them once; `--nats-port` overrides
 * the first server's port and is kept, `--listen` (wantedHost) the address,
 * likewise. `servers` > 1: a clustered layout
 * (`berth up --ha`), kept beside the single server's port.
 */
export async function loadOrCreateNatsState(dir: string, wantedPort: number | null, servers = 1, wantedHost: string | null = null): Promise<NatsLayout> {
  const path = natsStatePath(dir)
  let state: NatsState | null = null
  if (existsSync(path)) {
    try {
      const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<NatsState>
      if (Number.isInteger(v.port) && v.users?.meta && v.users.node && v.users.client) state = { port: v.port!, ...(typeof v.host === 'string' ? { host: v.host } : {}), users: v.users, ...(v.cluster ? { cluster: v.cluster } : {}) }
    } catch (err) {
      throw new BerthError('EINVAL', `${path} is damaged (${(err as Error).message})\n  hint: remove it to get a new NATS port and passwords (mounts and other hosts then need the new client.env)`)
    }
  }
  const port = wantedPort ?? state?.port ?? (await freeLocalPort())
  let cluster = state?.cluster
  if (servers > 1 && (!cluster || cluster.ports.length !== servers || cluster.ports[0] !== port)) {
    const more = await freeLocalPorts(2 * servers - 1, [port])
    cluster = { ports: [port, ...more.slice(0, servers - 1)], routes: more.slice(servers - 1) }
  }
  const host = wantedHost ?? state?.host ?? DEFAULT_HOST
  const next: NatsState = { port, ...(host !== DEFAULT_HOST || state?.host ? { host } : {}), users: state?.users ?? generateUsers(), ...(cluster ? { cluster } : {}) }
  if (!state || JSON.stringify(state) !== JSON.stringify(next)) {
    writeFileSync(`${path}.tmp`, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 })
    renameSync(`${path}.tmp`, path)
  }
  return servers > 1 && cluster ? { users: next.users, host, ports: cluster.ports, routes: cluster.routes } : { users: next.users, host, ports: [port], routes: null }
}
