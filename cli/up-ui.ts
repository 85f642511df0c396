/**
 * The dashboard of `berth up`: a read-only token and one port per meta, made
 * at the first start and kept in the folder so a bookmarked address works
 * after a restart (docs/operations.md#dashboard).
 *
 * DIR/ui-token (mode 0600): the token, passed to meta as --ui-token-file (so
 * it is never on a command line); DIR/ui.json: { "ports": [p0, ...] }, one
 * per meta (two with --ha). `--ui-port N` sets the first and is kept.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freeLocalPort, freeLocalPorts } from './nats-server'

export interface UpDashboard {
  tokenFile: string
  token: string
  /** 127.0.0.1 ports, one per meta. */
  ports: number[]
}

export async function loadOrCreateDashboard(dir: string, metas: number, wantedPort: number | null): Promise<UpDashboard> {
  const tokenFile = join(dir, 'ui-token')
  let token = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : ''
  if (!token) {
    token = randomBytes(24).toString('base64url')
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 })
  }
  const kept = keptPorts(dir)
  const ports = [...kept]
  if (wantedPort !== null) ports[0] = wantedPort
  if (ports.length < metas) ports.push(...(await freeLocalPorts(metas - ports.length, ports)))
  if (JSON.stringify(ports) !== JSON.stringify(kept)) keepPorts(dir, ports)
  return { tokenFile, token, ports: ports.slice(0, metas) }
}

/** DIR/ui.json's ports; none when absent or damaged (the token file is what matters to a bookmark's holder). */
function keptPorts(dir: string): number[] {
  try {
    const v = JSON.parse(readFileSync(join(dir, 'ui.json'), 'utf8')) as { ports?: unknown }
    if (Array.isArray(v.ports) && v.ports.every((p) => Number.isInteger(p))) return v.ports as number[]
  } catch {
    // absent or damaged
  }
  return []
}

function keepPorts(dir: string, ports: number[]): void {
  const statePath = join(dir, 'ui.json')
  writeFileSync(`${statePath}.tmp`, JSON.stringify({ ports }) + '\n')
  renameSync(`${statePath}.tmp`, statePath)
}

/** The address `berth up` prints: with the token, which the page moves into sessionStorage. */
export function dashboardUrl(port: number, token?: string): string {
  return `http://127.0.0.1:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`
}

/**
 * Meta `i`'s dashboard port was taken between the moment it was chosen and
 * meta's bind (another process's socket got it: seen once in the test suite,
 * where many processes bind and connect at once): a new free port, kept in
 * ui.json so later starts use it.
 */
export async function replaceDashboardPort(dir: string, ui: UpDashboard, i: number): Promise<number> {
  const port = await freeLocalPort()
  ui.ports[i] = port
  // ports kept for more metas than run now (a folder once started with --ha) stay
  const ports = keptPorts(dir)
  ui.ports.forEach((p, k) => (ports[k] = p))
  keepPorts(dir, ports)
  return port
}
