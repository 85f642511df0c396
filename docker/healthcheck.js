#!/usr/bin/env node
'use strict'
/*
 * Container HEALTHCHECK for both roles. It finds the container's `berth meta`
 * or `berth node` process (PID 1, or a child of an init) and reads the role and
 * flags from its command line, so one image needs no per-role configuration:
 *   berth node: GET /healthz on every TCP port PID 1 listens on (found through
 *               /proc, so `--listen HOST:0` works too); healthy when one answers 200.
 *   berth meta: a NATS request to <cluster>.metactl.leader with the container's
 *               credentials; healthy when a meta answers (any envelope, even an
 *               error, proves the service loop runs). "No responders" is unhealthy.
 * Anything else (e.g. `berth --help`) counts as healthy. Exit 0 healthy, 1 not.
 */
const { readFileSync, readdirSync, readlinkSync } = require('node:fs')
const http = require('node:http')

const TIMEOUT_MS = 4000

/** The berth service process: the lowest pid running `.../berth meta|node ...`. */
function findService() {
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b)
  for (const pid of pids) {
    if (pid === process.pid) continue
    let argv
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
    } catch {
      continue
    }
    const i = argv.findIndex((a, j) => j > 0 && /(^|\/)berth(\.js)?$/.test(argv[j - 1]) && (a === 'meta' || a === 'node'))
    if (i > 0) return { pid, role: argv[i], args: argv.slice(i + 1) }
  }
  return { pid: 0, role: null, args: [] }
}

function flag(args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1]
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3)
  }
  return undefined
}

/** TCP ports in LISTEN state owned by the service's sockets. */
function listeningPorts(pid) {
  const inodes = new Set()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1])
    } catch {
      // fd closed meanwhile
    }
  }
  const ports = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue
      ports.push(parseInt(f[1].split(':')[1], 16))
    }
  }
  return [...new Set(ports)]
}

function getHealthz(host, port) {
  return new Promise((resolve) => {
    const headers = process.env.BERTH_SECRET ? { authorization: `Bearer ${process.env.BERTH_SECRET.trim()}` } : {}
    const req = http.get({ host, port, path: '/healthz', headers, timeout: TIMEOUT_MS }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
  })
}

async function checkNode(pid, args) {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(flag(args, 'listen') ?? '')
  const bound = m ? (m[1] ?? m[2]) : ''
  const host = !bound || bound === '0.0.0.0' || bound === '::' ? '127.0.0.1' : bound
  const ports = listeningPorts(pid)
  if (m && Number(m[3]) !== 0) ports.unshift(Number(m[3]))
  for (const port of new Set(ports)) {
    if (await getHealthz(host, port)) return { ok: true, why: `GET ${host}:${port}/healthz -> 200` }
  }
  return { ok: false, why: `no /healthz answered on ports [${[...new Set(ports)].join(', ')}]` }
}

async function checkMeta(args) {
  const { connect } = require('nats')
  const url = flag(args, 'nats') ?? process.env.BERTH_NATS_URL
  if (!url) return { ok: false, why: 'no --nats URL on the meta command line' }
  const cluster = flag(args, 'cluster') ?? process.env.BERTH_CLUSTER ?? 'berth'
  const nc = await connect({
    servers: url.split(','),
    user: flag(args, 'user') ?? process.env.BERTH_NATS_USER,
    pass: flag(args, 'pass') ?? process.env.BERTH_NATS_PASS,
    token: flag(args, 'token') ?? process.env.BERTH_NATS_TOKEN,
    name: 'berth-healthcheck',
    timeout: TIMEOUT_MS,
  })
  try {
    await nc.request(`${cluster}.metactl.leader`, new Uint8Array(0), { timeout: TIMEOUT_MS })
    return { ok: true, why: 'meta answered on NATS' }
  } catch (err) {
    return { ok: false, why: `meta did not answer: ${err.code ?? err.message}` }
  } finally {
    await nc.close()
  }
}

async function main() {
  const { pid, role, args } = findService()
  const result = role === 'node' ? await checkNode(pid, args) : role === 'meta' ? await checkMeta(args) : { ok: true, why: 'no service role' }
  process.stdout.write(`${result.ok ? 'healthy' : 'unhealthy'}: ${result.why}\n`)
  process.exit(result.ok ? 0 : 1)
}

setTimeout(() => {
  process.stdout.write('unhealthy: healthcheck timed out\n')
  process.exit(1)
}, TIMEOUT_MS * 2).unref()
main().catch((err) => {
  process.stdout.write(`unhealthy: ${err.message}\n`)
  process.exit(1)
})
