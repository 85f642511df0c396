/**
 * meta's dashboard listener (`--ui-listen HOST:PORT`, docs/operations.md#dashboard):
 *
 *   GET /            the page: one self-contained HTML document (inline script
 *                    and style, no other request but /api/state); it holds no
 *                    data, so it is served without the token and asks for one
 *   GET /api/state   the cluster as JSON (meta/dashboard/types.ts); needs the
 *                    read-only token: `Authorization: Bearer T` or `?token=T`
 *   GET /leader      200 on the meta that serves (single or --ha leader), 503
 *                    on a follower: for a proxy that should send people to the leader
 *
 * The token is compared in constant time and never logged; URLs are not
 * logged at all (a `?token=` would be in them). The Content-Security-Policy
 * lets the page run only its own inline script and talk only to this origin,
 * so the browser itself refuses any external asset.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Logger } from '../../common/log'
import { dashboardPage } from './page'
import type { DashboardStateReader } from './state'

export interface DashboardServer {
  server: Server
  /** http://HOST:PORT/ (no token in it). */
  url: string
  close(): Promise<void>
}

export async function serveDashboard(opts: { listen: { host: string; port: number }; token: string; reader: DashboardStateReader; log: Logger }): Promise<DashboardServer> {
  const page = dashboardPage()
  const want = digest(opts.token)
  const authorized = (req: IncomingMessage, url: URL): boolean => {
    const header = req.headers.authorization
    const given = header?.startsWith('Bearer ') ? header.slice(7).trim() : url.searchParams.get('token')
    // digests of equal length: timingSafeEqual needs it, and the length of the token leaks nothing
    return given !== null && given !== '' && timingSafeEqual(digest(given), want)
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://dashboard')
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET here\n', { allow: 'GET, HEAD' })
    switch (url.pathname) {
      case '/':
      case '/index.html':
        return send(res, 200, 'text/html; charset=utf-8', page.html, { 'content-security-policy': page.csp, 'cache-control': 'no-cache' }, req.method === 'HEAD')
      case '/api/state': {
        if (!authorized(req, url)) return send(res, 401, 'application/json', JSON.stringify({ error: 'a read-only dashboard token is required (Authorization: Bearer T or ?token=T)' }) + '\n', { 'www-authenticate': 'Bearer realm="berth"' })
        const since = Number(url.searchParams.get('since') ?? 0)
        opts.reader.read(Number.isFinite(since) ? since : 0).then(
          (state) => send(res, 200, 'application/json', JSON.stringify(state), { 'cache-control': 'no-store' }, req.method === 'HEAD'),
          (err: unknown) => {
            opts.log.warn(`dashboard: reading the state failed: ${(err as Error).message}`)
            send(res, 503, 'application/json', JSON.stringify({ error: (err as Error).message }) + '\n', { 'cache-control': 'no-store' })
          },
        )
        return
      }
      case '/favicon.ico':
        // browsers ask for it; there is none (no asset but the page)
        return send(res, 204, 'text/plain', '')
      case '/leader':
        return opts.reader.serving() ? send(res, 200, 'text/plain', 'leader\n') : send(res, 503, 'text/plain', 'not serving (a follower of a replicated meta)\n')
      default:
        return send(res, 404, 'text/plain', 'not found\n')
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.listen.port, opts.listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : opts.listen.port
  const host = opts.listen.host.includes(':') ? `[${opts.listen.host}]` : opts.listen.host
  let closing: Promise<void> | undefined
  return {
    server,
    url: `http://${host}:${port}/`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

function send(res: ServerResponse, code: number, type: string, body: string, headers: Record<string, string> = {}, head = false): void {
  res.writeHead(code, { 'content-type': type, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY', ...headers })
  res.end(head ? undefined : body)
}
