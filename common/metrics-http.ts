/**
 * `GET /metrics` (Prometheus text) on its own small HTTP listener, for the
 * processes that have no HTTP API of their own: meta and the mount client.
 * Opt-in (`--metrics-listen HOST:PORT`, `-o metrics=HOST:PORT`); 127.0.0.1 is
 * the sensible host, as the endpoint has no authentication.
 */
import { createServer, type Server } from 'node:http'
import type { Registry } from 'prom-client'
import { BerthError } from './errors'

export function parseListen(value: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new BerthError('EINVAL', `${what} must be HOST:PORT, got "${value}"`)
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port }
}

/** Listens and resolves with the server and the port it got (PORT 0 picks one). */
export async function serveMetrics(registry: Registry, listen: { host: string; port: number }): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : listen.port
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host
  return { server, url: `http://${host}:${port}/metrics` }
}
