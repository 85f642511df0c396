/**
 * The data-plane client: places blocks through NATS (`<cluster>.data.place`) and
 * moves their bytes over HTTP to the data nodes (undici pool per node, keep-alive).
 *
 * Writes: ask any node with free space for targets, PUT to the first with the rest
 * as the replica chain; the reply lists the nodes where the block is durable. A
 * failed target is excluded and placement asked again, until the deadline.
 *
 * Reads: try the given replicas in order (recently failed ones last), then every
 * other live node; a whole-block read is verified against its SHA-256. Failover is
 * silent; only "nobody has it" (EIO) or the deadline (ETIMEDOUT) surface.
 *
 * The live node set comes from heartbeats only: no static node list anywhere.
 */
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { NatsConnection, Subscription } from 'nats'
import { Pool } from 'undici'
import { z } from 'zod'
import { pieceSums } from './checksums'
import { BerthError, type ErrorCode } from './errors'
import { blockHash, CHAIN_HEADER, HEARTBEAT_MS, heartbeat, NODE_DEAD_MS, type Heartbeat, type PlaceReply, type PutReply } from './protocol'
import { parseBody, request, subjects, type Subjects } from './wire'

export interface BlockTarget {
  id: string
  url: string
}

const CHAIN_ID_RE = /^[A-Za-z0-9_-]{1,64}$/
const MAX_CHAIN = 16

/** `id=url,id=url` as carried in CHAIN_HEADER. */
export function formatChain(chain: BlockTarget[]): string {
  return chain.map((t) => `${t.id}=${t.url}`).join(',')
}

/** Parses CHAIN_HEADER; throws EINVAL on anything that is not a list of id=http(s)-url. */
export function parseChain(header: string | undefined): BlockTarget[] {
  if (header === undefined || header.trim() === '') return []
  if (header.length > 8192) throw new BerthError('EINVAL', `${CHAIN_HEADER} too long`)
  const parts = header.split(',')
  if (parts.length > MAX_CHAIN) throw new BerthError('EINVAL', `${CHAIN_HEADER} lists more than ${MAX_CHAIN} nodes`)
  return parts.map((part) => {
    const eq = part.indexOf('=')
    const id = part.slice(0, eq).trim()
    const url = part.slice(eq + 1).trim()
    if (eq <= 0 || !CHAIN_ID_RE.test(id)) throw new BerthError('EINVAL', `bad ${CHAIN_HEADER} entry "${part.slice(0, 80)}"`)
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new BerthError('EINVAL', `bad URL in ${CHAIN_HEADER}: "${url.slice(0, 80)}"`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new BerthError('EINVAL', `bad URL scheme in ${CHAIN_HEADER}: "${url.slice(0, 80)}"`)
    return { id, url }
  })
}

export const putReplySchema = z.object({ hash: blockHash, stored: z.array(z.string().max(64)).max(MAX_CHAIN + 1) })

/** The BerthError code for a block API status. */
export function statusCode(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'EHASH'
    case 401:
    case 403:
      return 'EAUTH'
    case 404:
      return 'ENOENT'
    case 413:
      return 'EFBIG'
    case 416:
      return 'ERANGE'
    case 507:
      return 'ENOSPC'
    default:
      return 'EIO'
  }
}

async function drain(body: AsyncIterable<unknown> & { dump?: () => Promise<void> }): Promise<void> {
  if (body.dump) await body.dump().catch(() => undefined)
}

async function readText(body: { text(): Promise<string> }): Promise<string> {
  return (await body.text().catch(() => '')).slice(0, 300)
}

/**
 * HTTP to data nodes: one undici Pool per node origin, with the bearer token.
 * Shared by BlockClient and by nodes forwarding along a chain.
 */
export class NodeHttp {
  private readonly pools = new Map<string, Pool>()
  private closed = false

  constructor(
    private readonly token: string,
    private readonly connections = 8,
  ) {}

  private pool(url: string): Pool {
    if (this.closed) throw new BerthError('EIO', 'block client is closed')
    const origin = new URL(url).origin
    let pool = this.pools.get(origin)
    if (!pool) {
      pool = new Pool(origin, { connections: this.connections, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000 })
      this.pools.set(origin, pool)
    }
    return pool
  }

  /** PUTs one block; resolves with the node's PutReply or throws a BerthError. */
  async put(target: BlockTarget, hash: string, body: Uint8Array | Readable, size: number, chain: BlockTarget[], timeoutMs: number): Promise<PutReply> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(size),
    }
    if (chain.length) headers[CHAIN_HEADER] = formatChain(chain)
    const res = await this.call(target, () =>
      this.pool(target.url).request({ path: `/v1/blocks/${hash}`, method: 'PUT', headers, body, signal: AbortSignal.timeout(timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
    )
    if (res.statusCode !== 200) {
      const text = await readText(res.body)
      throw new BerthError(statusCode(res.statusCode), `PUT ${hash.slice(0, 12)} on ${target.id}: HTTP ${res.statusCode} ${text}`)
    }
    let json: unknown
    try {
      json = await res.body.json()
    } catch (err) {
      throw new BerthError('EBADMSG', `PUT on ${target.id}: reply is not JSON`, { cause: err })
    }
    const parsed = putReplySchema.safeParse(json)
    if (!parsed.success || parsed.data.hash !== hash) throw new BerthError('EBADMSG', `PUT on ${target.id}: malformed reply`)
    return parsed.data
  }

  /**
   * GETs a block or an inclusive range of it. ENOENT when the node lacks it,
   * ERANGE when the range starts past its end.
   */
  async get(target: BlockTarget, hash: string, range: { start: number; end?: number } | null, timeoutMs: number): Promise<Buffer> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` }
    if (range) headers.range = `bytes=${range.start}-${range.end ?? ''}`
    const res = await this.call(target, () =>
      this.pool(target.url).request({ path: `/v1/blocks/${hash}`, method: 'GET', headers, signal: AbortSignal.timeout(timeoutMs), headersTimeout: timeoutMs, bodyTimeout: timeoutMs }),
    )
    const ok = range ? res.statusCode === 206 || res.statusCode === 200 : res.statusCode === 200
    if (!ok) {
      await drain(res.body)
      throw new BerthError(statusCode(res.statusCode), `GET ${hash.slice(0, 12)} on ${target.id}: HTTP ${res.statusCode}`)
    }
    try {
      const buf = Buffer.from(await res.body.arrayBuffer())
      // A server that ignored Range sends the whole block: cut the slice here.
      if (range && res.statusCode === 200) return buf.subarray(range.start, range.end === undefined ? undefined : range.end + 1)
      return buf
    } catch (err) {
      throw transportError(target, err)
    }
  }

  private async call<T>(target: BlockTarget, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw transportError(target, err)
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)))
  }
}

function transportError(target: BlockTarget, err: unknown): BerthError {
  if (err instanceof BerthError) return err
  const e = err as { name?: string; code?: string; message?: string }
  const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT'
  return new BerthError(timedOut ? 'ETIMEDOUT' : 'EIO', `node ${target.id} (${target.url}): ${e.code ?? e.name ?? ''} ${e.message ?? String(err)}`, { cause: err })
}

export interface BlockClientOptions {
  cluster: string
  /** Data-plane bearer token (HelloReply.token). */
  token: string
  /** Replicas to ask for on put (capped by live nodes at placement). */
  replicas: number
  /** Budget for one put or get including retries and failover (default 30 s). */
  deadlineMs?: number
  maxConnectionsPerNode?: number
}

interface Peer {
  url: string
  seen: number
  state: Heartbeat['state']
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
/** After a failure a node is tried last for this long. */
const SUSPECT_MS = 5000

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export class BlockClient {
  private readonly subjects: Subjects
  private readonly http: NodeHttp
  private readonly peers = new Map<string, Peer>()
  private readonly failedAt = new Map<string, number>()
  /** Called on every heartbeat, and with `true` at close (give up waiting). */
  private readonly waiters = new Set<(closing?: boolean) => void>()
  private sub: Subscription | null = null
  private readonly deadlineMs: number

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: BlockClientOptions,
  ) {
    this.subjects = subjects(opts.cluster)
    this.http = new NodeHttp(opts.token, opts.maxConnectionsPerNode ?? 8)
    this.deadlineMs = opts.deadlineMs ?? 30_000
  }

  /** Subscribes to heartbeats (node id -> url map) and waits briefly for the first one. */
  async start(): Promise<void> {
    if (this.sub) return
    this.sub = this.nc.subscribe(this.subjects.heartbeat, {
      callback: (err, msg) => {
        if (err) return
        let hb: Heartbeat
        try {
          hb = parseBody(heartbeat, msg.data)
        } catch {
          return
        }
        this.peers.set(hb.id, { url: hb.url, seen: Date.now(), state: hb.state })
        for (const wake of this.waiters) wake()
      },
    })
    await this.waitForPeers(HEARTBEAT_MS + 500)
  }

  /** Resolves once `ready()` holds (by default: any node is live), or after `ms`. */
  private async waitForPeers(ms: number, ready: () => boolean = () => this.liveNodes().size > 0): Promise<void> {
    if (ready()) return
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.waiters.delete(wake)
        resolve()
      }
      const wake = (closing?: boolean) => {
        if (closing || ready()) done()
      }
      const timer = setTimeout(done, ms)
      this.waiters.add(wake)
    })
  }

  /** Live node id -> url as learned from heartbeats. */
  liveNodes(): Map<string, string> {
    const now = Date.now()
    const out = new Map<string, string>()
    for (const [id, p] of this.peers) if (now - p.seen <= NODE_DEAD_MS) out.set(id, p.url)
    return out
  }

  /** True when nodes are live and every one of them reports itself full. */
  private allFull(): boolean {
    const now = Date.now()
    const live = [...this.peers.values()].filter((p) => now - p.seen <= NODE_DEAD_MS)
    return live.length > 0 && live.every((p) => p.state === 'full')
  }

  private suspect(id: string): void {
    this.failedAt.set(id, Date.now())
  }

  private isSuspect(id: string): boolean {
    const t = this.failedAt.get(id)
    return t !== undefined && Date.now() - t < SUSPECT_MS
  }

  /**
   * Places the block, PUTs it to the first target with the rest as chain, and
   * resolves when at least one replica is durable; returns the node ids holding it.
   */
  async put(data: Uint8Array, hash?: string): Promise<{ hash: string; nodes: string[]; sums: Uint8Array }> {
    const h = hash ?? sha256hex(data)
    if (!/^[0-9a-f]{64}$/.test(h)) throw new BerthError('EINVAL', `not a block name: "${h.slice(0, 80)}"`)
    const deadline = Date.now() + this.deadlineMs
    const exclude = new Set<string>()
    let last: unknown = null
    let backoff = 50
    for (;;) {
      // Full nodes leave the placement group, so a full cluster would look
      // like an unreachable one; their heartbeats say which it is.
      if (this.allFull()) throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: every live data node is full`)
      const left = deadline - Date.now()
      // nodes refusing for space until the end: that is the answer, not a timeout
      if (left <= 0 && (last as BerthError | null)?.code === 'ENOSPC') throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: no data node has room for it`, { cause: last })
      if (left <= 0) throw new BerthError('ETIMEDOUT', `put ${h.slice(0, 12)}: no node stored it within ${this.deadlineMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`, { cause: last })
      let reply: PlaceReply
      try {
        reply = await request<PlaceReply>(
          this.nc,
          this.subjects.place,
          { size: data.length, replicas: this.opts.replicas, exclude: [...exclude] },
          { timeoutMs: Math.min(2000, left), deadlineMs: left, retryTimeouts: true },
        )
      } catch (err) {
        const code = (err as BerthError).code
        // Everyone left was excluded: forget the exclusions and try again later.
        if (code === 'ENOSPC' && exclude.size > 0) {
          exclude.clear()
          last = err
          await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())))
          backoff = Math.min(backoff * 2, 1000)
          continue
        }
        if (this.allFull()) throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: every live data node is full`, { cause: err })
        throw err
      }
      const targets = Array.isArray(reply.targets) ? reply.targets.filter((t) => typeof t?.id === 'string' && typeof t?.url === 'string') : []
      const first = targets[0]
      if (!first) throw new BerthError('EBADMSG', 'placement reply without targets')
      for (const t of targets) this.peers.set(t.id, { url: t.url, seen: Math.max(Date.now(), this.peers.get(t.id)?.seen ?? 0), state: 'up' })
      try {
        const res = await this.http.put(first, h, data, data.length, targets.slice(1), Math.max(1, deadline - Date.now()))
        if (res.stored.length > 0) return { hash: h, nodes: res.stored, sums: pieceSums(data) }
        last = new BerthError('EIO', `node ${first.id} stored nothing`)
      } catch (err) {
        const code = (err as BerthError).code
        if (code === 'EHASH' || code === 'EAUTH' || code === 'EFBIG') throw err
        last = err
      }
      exclude.add(first.id)
      this.suspect(first.id)
      await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())))
      backoff = Math.min(backoff * 2, 1000)
    }
  }

  /**
   * Fetches from any of the given node ids (unknown or dead ones skipped,
   * silent failover in order), else from every other live node; verifies the
   * SHA-256 when the whole block is read. Range read when offset/length given.
   */
  async get(hash: string, nodes: string[], opts: { offset?: number; length?: number } = {}): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new BerthError('EINVAL', `not a block name: "${hash.slice(0, 80)}"`)
    const ranged = opts.offset !== undefined || opts.length !== undefined
    const offset = opts.offset ?? 0
    if (ranged && opts.length === 0) return Buffer.alloc(0)
    const range = ranged ? { start: offset, end: opts.length === undefined ? undefined : offset + opts.length - 1 } : null
    const deadline = Date.now() + this.deadlineMs
    if (this.liveNodes().size === 0) await this.waitForPeers(Math.min(HEARTBEAT_MS + 1000, this.deadlineMs))
    for (;;) {
      const got = await this.getOnce(hash, nodes, range, deadline)
      if (got.buf) return got.buf
      // A listed replica we have not heard from yet (this client just started,
      // or the node is restarting) may still serve it: wait for heartbeats and
      // try again, until the deadline. When every listed replica is live and
      // failed, the block is gone and waiting would not help.
      const live = this.liveNodes()
      const unheard = nodes.filter((id) => !live.has(id))
      if (unheard.length === 0 || Date.now() >= deadline) throw got.err
      const heard = () => unheard.some((id) => this.liveNodes().has(id))
      await this.waitForPeers(Math.min(HEARTBEAT_MS + 500, deadline - Date.now()), heard)
    }
  }

  /** One pass over the candidates: the bytes, or the error to report if nothing changes. */
  private async getOnce(hash: string, nodes: string[], range: { start: number; end?: number } | null, deadline: number): Promise<{ buf?: Buffer; err?: unknown }> {
    const ranged = range !== null
    const live = this.liveNodes()
    const given = nodes.filter((id, i) => live.has(id) && nodes.indexOf(id) === i)
    const others = [...live.keys()].filter((id) => !given.includes(id))
    // Stable within each group: preferred replicas first, suspects to the back.
    const order = [...given, ...others].map((id, i) => ({ id, i, s: this.isSuspect(id) ? 1 : 0 }))
    order.sort((a, b) => a.s - b.s || a.i - b.i)

    let last: unknown = null
    for (const { id } of order) {
      const left = deadline - Date.now()
      if (left <= 0) return { err: new BerthError('ETIMEDOUT', `get ${hash.slice(0, 12)}: no replica answered within ${this.deadlineMs} ms`, { cause: last }) }
      const url = live.get(id)
      if (!url) continue
      try {
        const buf = await this.http.get({ id, url }, hash, range, left)
        if (!ranged && sha256hex(buf) !== hash) {
          last = new BerthError('EHASH', `node ${id} sent corrupt bytes for ${hash.slice(0, 12)}`)
          this.suspect(id)
          continue
        }
        return { buf }
      } catch (err) {
        const code = (err as BerthError).code
        if (code === 'ERANGE') return { buf: Buffer.alloc(0) } // block shorter than the offset: nothing to read there
        if (code === 'EAUTH') throw err
        if (code !== 'ENOENT') this.suspect(id)
        last = err
      }
    }
    if (Date.now() >= deadline) return { err: new BerthError('ETIMEDOUT', `get ${hash.slice(0, 12)}: no replica answered within ${this.deadlineMs} ms`, { cause: last }) }
    return { err: new BerthError('EIO', `get ${hash.slice(0, 12)}: no live node could serve it (tried ${order.length})`, { cause: last }) }
  }

  /** No pins at this layer (client/pinned-blocks.ts adds them). */
  release(_hashes: string[]): void {}

  async close(): Promise<void> {
    this.sub?.unsubscribe()
    this.sub = null
    for (const wake of this.waiters) wake(true)
    await this.http.close()
  }
}
