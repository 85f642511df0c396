/**
 * What `berth up` keeps in its folder so a restart is the same cluster to
 * everyone outside it: the NATS port and the per-role NATS users. An fstab
 * line, a mount started by hand or another host's node keep working across
 * restarts, and the generated nats.conf listens on that fixed port, so a
 * nats-server restarted from its own config comes back where clients look.
 *
 * DIR/nats-state.json (mode 0600): { "port": 4222, "users": { ... } }.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { BerthError } from '../common/errors'
import { generateUsers, type NatsUsers } from './nats-server'

export interface NatsState {
  port: number
  users: NatsUsers
}

export function natsStatePath(dir: string): string {
  return join(dir, 'nats-state.json')
}

/** Loads the kept port and users, or picks them once; `--nats-port` overrides and is kept. */
export async function loadOrCreateNatsState(dir: string, wantedPort: number | null): Promise<NatsState> {
  const path = natsStatePath(dir)
  let state: NatsState | null = null
  if (existsSync(path)) {
    try {
      const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<NatsState>
      if (Number.isInteger(v.port) && v.users?.meta && v.users.node && v.users.client) state = { port: v.port!, users: v.users }
    } catch (err) {
      throw new BerthError('EINVAL', `${path} is damaged (${(err as Error).message})\n  hint: remove it to get a new NATS port and passwords (mounts and other hosts then need the new client.env)`)
    }
  }
  const port = wantedPort ?? state?.port ?? (await freeLocalPort())
  const next: NatsState = { port, users: state?.users ?? generateUsers() }
  if (!state || state.port !== next.port) {
    writeFileSync(`${path}.tmp`, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 })
    renameSync(`${path}.tmp`, path)
  }
  return next
}

/** A port free right now on 127.0.0.1 (chosen once, then kept). */
function freeLocalPort(): Promise<number> {
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
