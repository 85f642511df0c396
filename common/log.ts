/**
 * Logs are one line each on stderr: `<time> <component> <level> <message>`.
 * stdout is reserved for machine-readable events (see `emitEvent`).
 */
import { maskSecrets } from './mask-secrets'

export type Level = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }
const threshold = ORDER[(process.env.BERTH_LOG as Level | undefined) ?? 'info'] ?? ORDER.info

export interface Logger {
  debug(msg: string, err?: unknown): void
  info(msg: string, err?: unknown): void
  warn(msg: string, err?: unknown): void
  error(msg: string, err?: unknown): void
}

export function logger(component: string): Logger {
  const write = (level: Level, msg: string, err?: unknown) => {
    if (ORDER[level] < threshold) return
    const detail = err === undefined ? '' : ` ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`
    // a URL with user:pass@ in an error message must not land in a log file
    process.stderr.write(maskSecrets(`${new Date().toISOString()} ${component} ${level} ${msg}${detail}\n`))
  }
  return {
    debug: (m, e) => write('debug', m, e),
    info: (m, e) => write('info', m, e),
    warn: (m, e) => write('warn', m, e),
    error: (m, e) => write('error', m, e),
  }
}

/**
 * A JSON line on stdout that supervisors and tests wait for, e.g.
 * `{"event":"ready","role":"node","id":"...","url":"..."}`.
 */
export function emitEvent(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}
