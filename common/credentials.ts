/**
 * Credentials files are env-style `KEY=VALUE` lines (the same keys as the
 * environment: BERTH_NATS_URL, BERTH_NATS_USER, BERTH_NATS_PASS, BERTH_NATS_TOKEN,
 * BERTH_NATS_CREDS, BERTH_CLUSTER). `berth up` writes one for clients, and
 * `mount -o credentials=FILE`, `berth status --credentials FILE` read it.
 */
import { readFileSync, statSync } from 'node:fs'
import { BerthError } from './errors'

export function readCredentialsFile(path: string): Record<string, string> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new BerthError('ENOENT', `cannot read credentials file ${path}: ${(err as Error).message}`)
  }
  warnIfWorldReadable(path)
  const out: Record<string, string> = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const eq = line.indexOf('=')
    if (eq <= 0) throw new BerthError('EINVAL', `${path}: expected KEY=VALUE, got "${line.slice(0, 40)}"`)
    let value = line.slice(eq + 1).trim()
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1)
    out[line.slice(0, eq).trim()] = value
  }
  return out
}

export function formatCredentialsFile(values: Record<string, string>): string {
  return Object.entries(values).map(([k, v]) => `${k}=${v}`).join('\n') + '\n'
}

/** Passwords in a file anyone can read are everyone's passwords: say so (once per file). */
const warned = new Set<string>()
function warnIfWorldReadable(path: string): void {
  try {
    const mode = statSync(path).mode & 0o777
    if ((mode & 0o004) === 0 || warned.has(path)) return
    warned.add(path)
    process.stderr.write(`berth: warning: credentials file ${path} is readable by every user (mode ${mode.toString(8)}); run: chmod 600 ${path}\n`)
  } catch {
    // unreadable files fail in the read above
  }
}

/**
 * The environment over a credentials file, as every command reads them: a set
 * variable wins, but an empty one (BERTH_NATS_PASS= in a unit file or a
 * wrapper script) is "not set" and must not blank out the file's value.
 */
export function envOverFile(file: Record<string, string>, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...file }
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') out[k] = v
  return out
}
