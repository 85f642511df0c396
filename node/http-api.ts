/**
 * The block HTTP API of a data node (node:http).
 *
 *   PUT  /v1/blocks/<name>     store (name checked: BLAKE3 or SHA-256) and, at the same time, forward
 *                              along the chain in x-berth-chain; JSON PutReply
 *   GET  /v1/blocks/<name>     whole block or one Range (206)
 *   HEAD /v1/blocks/<name>     200 with Content-Length, or 404
 *   GET  /healthz              {id, state}; no token needed
 *   GET  /metrics              Prometheus text
 *
 * Everything but /healthz needs `Authorization: Bearer <cluster secret>`.
 * A PUT answers only when every node listed in `stored` holds the block
 * durably; a downstream node that fails is left out of `stored` (and skipped:
 * the next one in the chain gets the rest of it). The client places the
 * missing copies itself (write quorum, common/block-client.ts).
 *
 * Limits (docs/data-node.md#limits): a chain may name only peers this node
 * knows from heartbeats, by id and URL (no forwarding, with the cluster secret,
 * to an address a client chose); at most `maxPuts` PUT bodies are received at
 * once (503 + Retry-After beyond, so memory is bounded by maxPuts x block
 * size); a body idle for `putIdleMs` is dropped and its capacity reservation
 * released, so stalled uploads cannot keep real writes out.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { parseChain, type BlockTarget, type NodeHttp } from '../common/block-client'
import { BerthError } from '../common/errors'
import type { Logger } from '../common/log'
import { deadPeerSignal } from '../common/dead-peer-signal'
import { CHAIN_HEADER, type NodeState, type PutReply } from '../common/protocol'
import { BodyPool, gatherBody, type BlockBody } from './block-buffer'
import { HASH_RE, type BlockStore, type ByteRange } from './block-store'
import type { NodeMetrics } from './metrics'

/** One hop of chain forwarding may take this long (a 64 MiB block on a slow link). */
const FORWARD_TIMEOUT_MS = 60_000

export interface HttpApiDeps {
  id: string
  secret: string
  maxBlock: number
  store: BlockStore
  metrics: NodeMetrics
  /** Client used to forward blocks down the chain. */
  http: NodeHttp
  state(): NodeState
  /** Bytes this node may still take (capacity minus what is stored). */
  free(): number
  /** URL a peer advertised in its heartbeats; undefined for strangers. */
  peerUrl(id: string): string | undefined
  /** A peer heard from once but not within NODE_DEAD_MS: a forward to it ends (common/dead-peer-signal.ts). */
  peerDead(id: string): boolean
  /** The disk hangs (node/disk-canary.ts): PUTs are refused, 503 EIO, so writers go elsewhere at once. */
  diskStalled(): boolean
  /** PUT bodies received at once; more get 503. */
  maxPuts: number
  /** A PUT body silent for this long is dropped. */
  putIdleMs: number
  log: Logger
}

/** Seconds a client turned away with 503 should wait (it backs off from there). */
const RETRY_AFTER_S = 1
/** A whole request (headers and body) must arrive within this: bounds trickling uploads too. */
const REQUEST_TIMEOUT_MS = 120_000

type Route = 'blocks' | 'healthz' | 'metrics' | 'other'

/** What a forward did: the ids that stored the block, and whether no attempt failed (its body buffer is then free). */
interface Forwarded {
  stored: string[]
  clean: boolean
}

/** GET bodies up to this size are read whole into one buffer and sent with one write. */
const WHOLE_READ_BYTES = 4 * 1024 * 1024
/** Bodies above this come from ReplyBuffers; smaller ones (64 KiB pieces) get a buffer of their own. */
const POOLED_FROM_BYTES = 256 * 1024

/**
 * Buffers for GET bodies, reused. A node serving a cold sequential read spent
 * 22-32 % of its time collecting garbage, driven by the bytes of the buffers
 * each block was read into (docs/bench.md, "Where a cold read's CPU goes").
 * A buffer goes back only when its response has been handed to the kernel
 * ('finish': the socket's last write completed, nothing reads it any more); a
 * response that ends otherwise (the reader hung up) leaves its buffer to the
 * collector, so no buffer is ever handed out while a write may still read it.
 */
class ReplyBuffers {
  private readonly free: Buffer[] = []
  constructor(private readonly keep: number) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(WHOLE_READ_BYTES)
  }
  give(buf: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buf)
  }
}

/** The copy went between stat and read (trashed by GC, or discarded as corrupt). */
function isGone(err: unknown): boolean {
  return (err as BerthError).code === 'ENOENT'
}

function notStoredHere(res: ServerResponse): void {
  sendJson(res, 404, { error: 'block not stored here' })
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Parses one `bytes=` range against a block of `size` bytes; null when unsatisfiable or malformed. */
export function parseRange(header: string, size: number): ByteRange | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return null
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0 || size === 0) return null
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (!Number.isSafeInteger(start) || start >= size || end < start) return null
  return { start, end }
}

export function createHttpApi(deps: HttpApiDeps): Server {
  /** Bytes of PUTs being received or stored right now. */
  let incoming = 0
  /** PUTs holding a slot (receiving, storing or forwarding). */
  let puts = 0
  const replies = new ReplyBuffers(8)
  // PUT bodies being stored and forwarded at once are at most --max-puts; keep as many
  const bodies = new BodyPool(deps.maxPuts * Math.min(deps.maxBlock, 4 * 1024 * 1024))
  const secretDigest = digest(deps.secret)
  const authorized = (req: IncomingMessage): boolean => {
    const h = req.headers.authorization
    if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false
    return timingSafeEqual(digest(h.slice(7).trim()), secretDigest)
  }

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint()
    const url = req.url ?? '/'
    const path = url.split('?', 1)[0] ?? '/'
    const route: Route = path.startsWith('/v1/blocks/') ? 'blocks' : path === '/healthz' ? 'healthz' : path === '/metrics' ? 'metrics' : 'other'
    const method = req.method ?? 'GET'
    res.once('finish', () => {
      deps.metrics.requests.inc({ route, method, status: String(res.statusCode) })
      deps.metrics.latency.observe({ route, method }, Number(process.hrtime.bigint() - started) / 1e9)
    })
    handle(req, res, route, path, method).catch((err: unknown) => {
      deps.log.error(`${method} ${path}`, err)
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' }, true)
      else res.destroy()
    })
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 70_000
  server.requestTimeout = REQUEST_TIMEOUT_MS
  return server

  async function handle(req: IncomingMessage, res: ServerResponse, route: Route, path: string, method: string): Promise<void> {
    if (route === 'healthz' && (method === 'GET' || method === 'HEAD')) {
      sendJson(res, 200, { id: deps.id, state: deps.state() })
      return
    }
    if (!authorized(req)) {
      res.setHeader('www-authenticate', 'Bearer realm="berth"')
      sendJson(res, 401, { error: 'missing or wrong bearer token' }, hasBody(req))
      return
    }
    if (route === 'metrics' && method === 'GET') {
      const text = await deps.metrics.registry.metrics()
      res.writeHead(200, { 'content-type': deps.metrics.registry.contentType })
      res.end(text)
      return
    }
    if (route !== 'blocks') {
      sendJson(res, 404, { error: 'no such route' }, hasBody(req))
      return
    }
    const hash = path.slice('/v1/blocks/'.length)
    if (!HASH_RE.test(hash)) {
      sendJson(res, 400, { error: 'block name must be 64 lowercase hex digits (a BLAKE3 or SHA-256 hash)' }, hasBody(req))
      return
    }
    if (method === 'PUT') return putBlock(req, res, hash)
    if (method === 'GET' || method === 'HEAD') return getBlock(req, res, hash, method === 'HEAD')
    res.setHeader('allow', 'GET, HEAD, PUT')
    sendJson(res, 405, { error: 'method not allowed' }, hasBody(req))
  }

  async function putBlock(req: IncomingMessage, res: ServerResponse, hash: string): Promise<void> {
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > deps.maxBlock) {
      sendJson(res, 413, { error: `block larger than ${deps.maxBlock} bytes` }, true)
      return
    }
    let chain: BlockTarget[]
    try {
      chain = knownChain(parseChain(header(req, CHAIN_HEADER)))
    } catch (err) {
      sendJson(res, 400, { error: (err as Error).message, code: 'EINVAL' }, true)
      return
    }
    if (deps.diskStalled()) {
      // EIO, not EAGAIN: the writer counts this node failed and suspects it, as for a dead one
      refuseBody(req, res, 503, { error: `node ${deps.id}: its disk does not answer (stalled); place the copy elsewhere`, code: 'EIO' })
      return
    }
    if (puts >= deps.maxPuts) {
      res.setHeader('retry-after', String(RETRY_AFTER_S))
      refuseBody(req, res, 503, { error: `busy: ${puts} uploads in progress`, code: 'EAGAIN' })
      return
    }
    // Capacity is a promise to the cluster, not only the disk's limit: a PUT
    // that would go past it is refused (507) before any byte is read, counting
    // the PUTs still in progress.
    const want = declared === undefined ? deps.maxBlock : Number(declared)
    puts++
    try {
      if (want > deps.free() - incoming && !(await deps.store.has(hash))) {
        refuseBody(req, res, 507, { error: `no space: ${deps.free() - incoming} bytes free here` })
        return
      }
      incoming += want
      try {
        await storeAndForward(req, res, hash, chain)
      } finally {
        incoming -= want
      }
    } finally {
      puts--
    }
  }

  /**
   * Refuses a PUT whose body is still coming (busy, no space) and reads the
   * body to its end, dropping it, on a connection that stays open. Closing
   * with the body unread makes the kernel answer the unread bytes with a
   * reset, which can destroy the response before the client reads it: 11 of
   * 200 concurrent PUTs got ECONNRESET instead of 503 on a loaded machine
   * (test/data-plane-hardening.test.ts). Only for a declared length within
   * one block; a body of unknown length is refused with `connection: close`.
   * A client that stops sending is dropped after putIdleMs, as during a PUT.
   */
  function refuseBody(req: IncomingMessage, res: ServerResponse, status: number, body: object): void {
    const declared = Number(req.headers['content-length'])
    const drain = Number.isSafeInteger(declared) && declared <= deps.maxBlock && req.headers['transfer-encoding'] === undefined
    sendJson(res, status, body, !drain)
    if (!drain || req.complete) return
    const idle = setTimeout(() => req.destroy(), deps.putIdleMs)
    req.on('data', () => idle.refresh())
    req.once('close', () => clearTimeout(idle))
    req.resume()
  }

  /**
   * The chain minus this node, each entry checked against the heartbeats: the
   * id must be a peer we have heard and the URL the one it advertised. Throws
   * EINVAL otherwise, before anything is read or forwarded.
   */
  function knownChain(chain: BlockTarget[]): BlockTarget[] {
    const rest = chain.filter((t) => t.id !== deps.id)
    for (const t of rest) {
      const url = deps.peerUrl(t.id)
      if (url === undefined) throw new BerthError('EINVAL', `${CHAIN_HEADER}: ${t.id} is not a known data node`)
      if (url !== t.url) throw new BerthError('EINVAL', `${CHAIN_HEADER}: ${t.id} is at ${url}, not ${t.url.slice(0, 80)}`)
    }
    return rest
  }

  /**
   * The request body in memory (at most maxBlock); EFBIG past it, ETIMEDOUT
   * when it stalls for putIdleMs, ECONNRESET when the uploader goes away.
   * 'data' events rather than `for await`: the async iterator's promise per
   * 64 KiB piece cost a receiving node about 60 ms of CPU per GiB more
   * (docs/bench.md "Chunk buffers reused; bodies received by 'data' events").
   */
  function receive(req: IncomingMessage, hash: string): Promise<{ parts: Buffer[]; size: number }> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = []
      let size = 0
      let settled = false
      const idle = setTimeout(() => req.destroy(new BerthError('ETIMEDOUT', `PUT ${hash.slice(0, 12)}: no body bytes for ${deps.putIdleMs} ms`)), deps.putIdleMs)
      // the listeners stay on `req` after it settles: an error it emits later must not go unhandled
      const settle = (err?: Error): void => {
        if (settled) return
        settled = true
        clearTimeout(idle)
        if (err) reject(err)
        else resolve({ parts, size })
      }
      req.on('data', (chunk: Buffer) => {
        if (settled) return
        idle.refresh()
        size += chunk.length
        if (size > deps.maxBlock) {
          settle(new BerthError('EFBIG', `block larger than ${deps.maxBlock} bytes`))
          req.destroy() // as leaving a `for await` did: the rest is not read
          return
        }
        deps.metrics.bytesIn.inc(chunk.length)
        parts.push(chunk)
      })
      req.on('end', () => settle())
      req.on('error', (err: Error) => settle(err))
      // 'close' follows 'end' on every PUT: the error is built only when the body never ended
      req.on('close', () => settled || settle(Object.assign(new Error(`PUT ${hash.slice(0, 12)}: the uploader went away mid-body`), { code: 'ECONNRESET' })))
    })
  }

  async function storeAndForward(req: IncomingMessage, res: ServerResponse, hash: string, chain: BlockTarget[]): Promise<void> {
    // The body is gathered in memory (at most maxBlock) so the local write and
    // the forward to the next replica run at the same time: a chain of R
    // replicas then costs about one disk write, not R of them in a row.
    let body: { parts: Buffer[]; size: number }
    try {
      body = await receive(req, hash)
    } catch (err) {
      const code = (err as BerthError).code
      if (code === 'EFBIG') {
        sendJson(res, 413, { error: (err as Error).message }, true)
        return
      }
      if (code === 'ETIMEDOUT' || (err as { code?: string }).code === 'ECONNRESET' || req.destroyed) {
        // the uploader went quiet or away: nobody to answer; the slot and the reservation go with it
        deps.log.warn((err as Error).message)
        res.destroy()
        return
      }
      throw err
    }
    // one copy of the body, in memory the store can write with O_DIRECT and
    // the forward can send in one socket write
    const block = gatherBody(body.parts, body.size, bodies)
    const forwarded = forward(hash, block.bytes, chain)
    try {
      await storeForwarded(res, hash, block, forwarded)
    } finally {
      // reused only when nothing may still read it: the store's write has
      // returned and every forward attempt was answered (none failed mid-body)
      if (block.aligned && (await forwarded).clean) bodies.give(block.aligned)
    }
  }

  async function storeForwarded(res: ServerResponse, hash: string, block: BlockBody, forwarded: Promise<Forwarded>): Promise<void> {
    try {
      await dropCorruptCopy(hash)
      await deps.store.put(hash, block, deps.maxBlock)
    } catch (err) {
      await forwarded
      const code = (err as BerthError).code
      // EAGAIN: a concurrent delete trashed the copy this dedup PUT found; the
      // client retries 503 and the retry writes a fresh copy
      const status = code === 'EHASH' ? 400 : code === 'EFBIG' ? 413 : code === 'ENOSPC' ? 507 : code === 'EAGAIN' ? 503 : 0
      if (status === 0) throw err
      if (status === 503) res.setHeader('retry-after', '1')
      if (status === 507) deps.log.warn(`PUT ${hash}: disk full`)
      sendJson(res, status, { error: (err as Error).message, code })
      return
    }
    const stored = [deps.id]
    for (const id of (await forwarded).stored) if (!stored.includes(id)) stored.push(id)
    const reply: PutReply = { hash, stored }
    sendJson(res, 200, reply)
  }

  /**
   * A PUT of a block already stored here is acknowledged as a durable copy
   * without rewriting it (the store deduplicates), so that copy must really be
   * good: re-hash it, and delete it when it is not, so the put stores the
   * fresh bytes. This is also how meta's repair fixes a copy a reader reported
   * bad on a node that is then chosen to receive the good one again.
   */
  async function dropCorruptCopy(hash: string): Promise<void> {
    if ((await deps.store.checkCopy(hash)) !== 'bad') return
    deps.log.error(`block ${hash}: stored copy is corrupt; replacing it with the uploaded bytes`)
    await deps.store.discard(hash, 'corrupt on disk; replaced by the uploaded bytes')
  }

  /**
   * Sends the block to the first chain member that takes it (with the rest of
   * the chain behind it); a failed member is skipped. Never throws: resolves
   * with the ids that stored it, empty when none did.
   */
  async function forward(hash: string, body: Buffer, chain: BlockTarget[]): Promise<Forwarded> {
    if (chain.length === 0) return { stored: [], clean: true }
    // One buffer, one socket write: sending the ~64 socket-sized pieces as a
    // stream cost the nodes 10-14 % more CPU per GiB than gathering them
    // (tools/bench/blocks.ts, docs/bench.md "One buffer per forwarded block").
    const size = body.length
    let rest = chain
    let clean = true
    while (rest.length > 0) {
      const [next, ...after] = rest as [BlockTarget, ...BlockTarget[]]
      rest = after
      // a member that stopped (SIGSTOP, a frozen VM) is skipped once its heartbeats stop, not after
      // FORWARD_TIMEOUT_MS: the client waits on this reply, and a fsync on the client
      const watch = deadPeerSignal([next.id], deps.peerDead, `PUT ${hash.slice(0, 12)} forwarded`)
      try {
        return { stored: (await deps.http.put(next, hash, body, size, after, FORWARD_TIMEOUT_MS, watch.signal)).stored, clean }
      } catch (err) {
        // a body that does not hash to its name is refused downstream too: not a replica failure
        if ((err as BerthError).code === 'EHASH') return { stored: [], clean }
        // a failed attempt may have left a write of `body` behind: it goes to the collector, not the pool
        clean = false
        deps.log.warn(`PUT ${hash.slice(0, 12)}: replica ${next.id} (${next.url}) failed, skipping it: ${(err as Error).message}`)
      } finally {
        watch.stop()
      }
    }
    return { stored: [], clean }
  }

  async function getBlock(req: IncomingMessage, res: ServerResponse, hash: string, headOnly: boolean): Promise<void> {
    const size = await deps.store.stat(hash)
    if (size === null) return notStoredHere(res)
    let range: ByteRange | undefined
    const rangeHeader = header(req, 'range')
    if (rangeHeader !== undefined && !headOnly) {
      const r = parseRange(rangeHeader, size)
      if (!r) {
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-length': '0' })
        res.end()
        return
      }
      range = r
    }
    const length = range ? range.end - range.start + 1 : size
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'accept-ranges': 'bytes',
      etag: `"${hash}"`,
      'cache-control': 'public, max-age=31536000, immutable',
    }
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`
    if (headOnly || length === 0) {
      res.writeHead(200, headers)
      res.end()
      return
    }
    if (length <= WHOLE_READ_BYTES) return sendWhole(res, hash, range, length, headers)
    let stream
    try {
      stream = await deps.store.get(hash, range)
    } catch (err) {
      if (!isGone(err)) throw err
      notStoredHere(res)
      return
    }
    res.writeHead(range ? 206 : 200, headers)
    stream.on('data', (chunk: Buffer) => deps.metrics.bytesOut.inc(chunk.length))
    await pipeline(stream, res).catch(() => res.destroy()) // a reader that hangs up mid-block is not our error
  }

  /** A body of at most WHOLE_READ_BYTES: one read into one buffer, one write. */
  async function sendWhole(res: ServerResponse, hash: string, range: ByteRange | undefined, length: number, headers: Record<string, string>): Promise<void> {
    const pooled = length > POOLED_FROM_BYTES
    const buf = pooled ? replies.take() : Buffer.allocUnsafe(length)
    let got: number
    try {
      got = await deps.store.readInto(hash, buf, range)
    } catch (err) {
      if (pooled) replies.give(buf)
      if (!isGone(err)) throw err
      notStoredHere(res)
      return
    }
    if (got !== length) {
      // the copy is shorter than it was a moment ago (trashed and replaced, or
      // damaged): a body shorter than its content-length would only confuse
      if (pooled) replies.give(buf)
      sendJson(res, 503, { error: `block ${hash.slice(0, 12)}: copy changed while read`, code: 'EAGAIN' })
      return
    }
    res.writeHead(range ? 206 : 200, headers)
    deps.metrics.bytesOut.inc(length)
    if (pooled) res.once('finish', () => replies.give(buf))
    res.end(buf.subarray(0, length))
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

function hasBody(req: IncomingMessage): boolean {
  return !req.complete && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)
}

/** `close` asks the client to drop the connection: used when we refuse to read a request body. */
function sendJson(res: ServerResponse, status: number, body: object, close = false): void {
  const text = JSON.stringify(body)
  const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }
  if (close) headers.connection = 'close'
  res.writeHead(status, headers)
  res.end(text)
}
