/**
 * Secrets must never reach a terminal, a log file or `ps`: NATS URLs may carry
 * `user:pass@` or `token@` (the form compose.yml's header shows), and flags
 * like `--pass P` sit in argv. Everything that prints a URL, an error message
 * or a command line goes through here.
 */

const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^/\s@:,]*)(?::([^/\s@,]*))?@/gi
const SECRET_FLAGS = new Set(['--pass', '--token', '--secret'])

/** `nats://client:hunter2@h:4222` -> `nats://client:***@h:4222`; `nats://tok@h` -> `nats://***@h`. */
export function maskSecrets(text: string): string {
  return text.replace(URL_USERINFO, (_m, scheme: string, user: string, pass: string | undefined) =>
    pass === undefined ? `${scheme}***@` : `${scheme}${user}:***@`,
  )
}

/** argv with secret flag values and URL passwords masked (for process.title and messages). */
export function maskArgv(argv: readonly string[]): string[] {
  return argv.map((a, i) => {
    if (i > 0 && SECRET_FLAGS.has(argv[i - 1]!)) return '***'
    const eq = a.indexOf('=')
    if (eq > 0 && SECRET_FLAGS.has(a.slice(0, eq))) return `${a.slice(0, eq)}=***`
    return maskSecrets(a)
  })
}

/** Does argv hold anything maskArgv would hide? */
export function argvHasSecrets(argv: readonly string[]): boolean {
  const masked = maskArgv(argv)
  return masked.some((a, i) => a !== argv[i])
}

export interface UrlCredentials {
  /** The URL list without any user info. */
  url: string
  user?: string
  pass?: string
  token?: string
}

/**
 * Takes credentials out of a (comma-separated) NATS URL list. nats.js ignores
 * user info in server URLs, so berth lifts it into connect options itself.
 */
export function splitUrlCredentials(urls: string): UrlCredentials {
  const out: UrlCredentials = { url: '' }
  const parts = urls.split(',').map((u) => u.trim()).filter(Boolean)
  out.url = parts
    .map((u) => {
      const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^/@]*)@(.*)$/i.exec(u)
      if (!m) return u
      const info = m[2]!
      const colon = info.indexOf(':')
      if (colon >= 0) {
        out.user ??= decodeURIComponent(info.slice(0, colon))
        out.pass ??= decodeURIComponent(info.slice(colon + 1))
      } else if (info) {
        out.token ??= decodeURIComponent(info)
      }
      return `${m[1] ?? ''}${m[3]}`
    })
    .join(',')
  return out
}
