/**
 * The data-plane client: places blocks through NATS (`<cluster>.data.place`) and
 * moves their bytes over HTTP to the data nodes (undici pool per node, keep-alive).
 *
 * Writes (write quorum): ask any node with free space for targets, PUT to the
 * first with the rest as the replica chain; the reply lists the nodes where the
 * block is durable. Until min(R, writable live nodes) hold it, placement is asked
 * again for the missing copies, excluding the holders and the nodes that just
 * failed, and those are PUT too: a put resolves only with a quorum, and a chain
 * member that failed is replaced before the ack. A node that answers 503 (busy)
 * is retried with backoff.
 *
 * Reads (verified end to end): try the given replicas in order (recently failed
 * or known-bad ones last), then every other live node. A whole block is checked
 * against its name (BLAKE3 or SHA-256, common/block-hash.ts); a range against
 * the writer's piece sums (the covering 64 KiB pieces are fetched and checked,
 * common/verified-range.ts). A corrupt, short or missing copy is skipped and,
 * once a good copy proved it bad, reported through `onBadCopy` (meta drops it
 * and repairs). Failover is silent;
 * only "nobody has a good copy" (EIO) or the deadline (ETIMEDOUT) surface: never
 * unverified bytes, never zeros in place of bytes that could not be read.
 *
 * The live node set comes from heartbeats only: no static node list anywhere.
 */
import type { Readable } from 'node:stream'
import { ErrorCode as NatsErrorCode, type NatsConnection, type Subscription } from 'nats'
import { Pool } from 'undici'
import { z } from 'zod'
import { blockName, namesBlock, type BlockHash } from './block-hash'
import { pieceSumsAsync } from './async-checksums'
import { SUM_PIECE } from './checksums'
import { coveringPieces, pieceCount, verifyPieces, type PieceSpan } from './verified-range'
import { BerthError, isErrorCode, type ErrorCode } from './errors'
import { deadPeerSignal } from './dead-peer-signal'
import { replyMux } from './reply-mux'
import { blockHash, CHAIN_HEADER, HEARTBEAT_MS, heardButDead, heartbeat, NODE_DEAD_MS, seenAt, type Heartbeat, type PlaceReply, type PutReply } from './protocol'
import { encode, parseBody, request, subjects, SUBJECT_TOKEN, unwrap, type Subjects } from './wire'

export interface BlockTarget {
  id: string
  url: string
}

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
    if (eq <= 0 || !SUBJECT_TOKEN.test(id)) throw new BerthError('EINVAL', `bad ${CHAIN_HEADER} entry "${part.slice(0, 80)}"`)
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
    case 503:
      return 'EAGAIN'
    case 507:
      return 'ENOSPC'
    default:
      return 'EIO'
  }
}

/** The code a node put in its JSON error body (`{error, code}`), else the status's. */
function replyCode(status: number, text: string): ErrorCode {
  try {
    const code: unknown = (JSON.parse(text) as { code?: unknown }).code
    if (typeof code === 'string' && isErrorCode(code)) return code
  } catch {
    // not JSON (truncated or from a proxy): the status says enough
  }
  return statusCode(status)
}

async function drain(body: AsyncIterable<unknown> & { dump?: () => Promise<void> }): Promise<void> {
  if (body.dump) await body.dump().catch(() => undefined)
}

/**
 * A body of exactly `target.length` bytes, copied into `target` as it comes.
 * undici's arrayBuffer() collects the pieces and joins them in a fresh
 * buffer: 1 GiB of cold reads allocated 1 GiB of blocks, and V8 ran 16-18
 * full collections for it (docs/bench.md "Fetched blocks reused").
 */
function bodyInto(body: Readable, target: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let at = 0
    let settled = false
    const done = (err?: Error) => {
      if (settled) return
      settled = true
      body.off('data', onData)
      if (err) {
        body.destroy()
        reject(err)
      } else resolve(target)
    }
    const onData = (piece: Buffer) => {
      if (at + piece.length > target.length) return done(new BerthError('EBADMSG', `reply body longer than its content-length ${target.length}`))
      piece.copy(target, at)
      at += piece.length
    }
    body.on('data', onData)
    body.once('end', () => done(at === target.length ? undefined : new BerthError('EBADMSG', `reply body of ${at} bytes, content-length ${target.length}`)))
    body.once('error', (err: Error) => done(err))
  })
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

  /**
   * PUTs one block; resolves with the node's PutReply or throws a BerthError.
   * `signal` ends it early (common/dead-peer-signal.ts: the target stopped).
   */
  async put(target: BlockTarget, hash: string, body: Uint8Array | Readable, size: number, chain: BlockTarget[], timeoutMs: number, signal?: AbortSignal): Promise<PutReply> {
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      'content-type': 'application/octet-stream',
      'content-length': String(size),
    }
    if (chain.length) headers[CHAIN_HEADER] = formatChain(chain)
    const res = await this.call(target, () =>
      this.pool(target.url).request({
        path: `/v1/blocks/${hash}`,
        method: 'PUT',
        headers,
        body,
        signal: signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]) : AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      }),
    )
    if (res.statusCode !== 200) {
      const text = await readText(res.body)
      throw new BerthError(replyCode(res.statusCode, text), `PUT ${hash.slice(0, 12)} on ${target.id}: HTTP ${res.statusCode} ${text}`)
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
   * ERANGE when the range starts past its end. `signal` ends it early
   * (common/dead-peer-signal.ts: the node stopped); so does a reply that has
   * not begun within `answerMs` (ETIMEDOUT), when given.
   */
  async get(target: BlockTarget, hash: string, range: { start: number; end?: number } | null, timeoutMs: number, signal?: AbortSignal, answerMs?: number, into?: GetOptions['into']): Promise<Buffer> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` }
    if (range) headers.range = `bytes=${range.start}-${range.end ?? ''}`
    const res = await this.call(target, () =>
      this.pool(target.url).request({
        path: `/v1/blocks/${hash}`,
        method: 'GET',
        headers,
        signal: signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]) : AbortSignal.timeout(timeoutMs),
        headersTimeout: Math.min(answerMs ?? timeoutMs, timeoutMs),
        bodyTimeout: timeoutMs,
      }),
    )
    const ok = range ? res.statusCode === 206 || res.statusCode === 200 : res.statusCode === 200
    if (!ok) {
      await drain(res.body)
      throw new BerthError(statusCode(res.statusCode), `GET ${hash.slice(0, 12)} on ${target.id}: HTTP ${res.statusCode}`)
    }
    try {
      const size = Number(res.headers['content-length'])
      const reused = !range && into && Number.isSafeInteger(size) && size > 0 ? into(size) : undefined
      const buf = reused ? await bodyInto(res.body, reused) : Buffer.from(await res.body.arrayBuffer())
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

/**
 * The check of a whole block: its pieces against the writer's CRC32 sums when
 * meta has them (3.6 GB/s here, SHA-256 1.3 GB/s: in a cold read the hash was
 * 11 % of the mount's CPU, docs/bench.md), else its name. Bytes whose
 * sums disagree are still good if they hash to the name: sums recorded wrong
 * must not fail every copy of a good block.
 */
export function wholeBlockCheck(hash: string, sums: Uint8Array | undefined): BlockCheck {
  const byName = (buf: Buffer) => (namesBlock(hash, buf) ? null : 'not named by its bytes (BLAKE3 or SHA-256)')
  const n = sums ? pieceCount(sums) : 0
  if (!sums || n === 0) return byName
  const all: PieceSpan = { first: 0, last: n - 1, start: 0, end: n * SUM_PIECE - 1 }
  const slow = (buf: Buffer) => {
    const bad = verifyPieces(sums, all, buf)
    return bad === null || byName(buf) === null ? null : bad
  }
  return async (buf) => {
    // the common case, a good copy: its sums, computed off the event loop
    // (common/async-checksums.ts), are the stored ones; anything else takes
    // the piece-by-piece check, which says why, and the name as fallback
    if (buf.length > (n - 1) * SUM_PIECE && buf.length <= n * SUM_PIECE) {
      const got = await pieceSumsAsync(buf)
      if (Buffer.compare(got, sums.subarray(0, n * 4)) === 0) return null
    }
    return slow(buf)
  }
}

/** A fetched copy's check: null when good, else why not. */
export type BlockCheck = (buf: Buffer) => string | null | Promise<string | null>

/**
 * How long each placement attempt waits for an answer (the last one repeats).
 * Short at first: with one of N members stopped, k attempts in a row reach it
 * with odds N^-k, and each costs its wait.
 */
const PLACE_WAITS_MS: readonly number[] = [250, 250, 250, 500, 1000, 2000]

/**
 * A node is asked for placement by its own subject only while its last
 * heartbeat is this recent (beats come every HEARTBEAT_MS): one that stopped
 * drops out of the choice within this, not after NODE_DEAD_MS.
 */
const PLACE_FRESH_MS = HEARTBEAT_MS + 1500

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
  /**
   * A replica listed for a block turned out bad (checksum, short, missing) while
   * another one served good bytes. Called once per (hash, node) per minute;
   * the FUSE client forwards it to meta's `badCopy`.
   */
  onBadCopy?: (report: BadCopy) => void
}

export interface BadCopy {
  hash: string
  node: string
  reason: string
}

/** A range read: `length` bytes at `offset`, checked against the writer's piece sums when given. */
export interface GetOptions {
  offset?: number
  length?: number
  /** ChunkRef.sums; without them a range is cut from a whole block verified by SHA-256. */
  sums?: Uint8Array
  /**
   * Where a whole block's body of `size` bytes goes: a buffer of exactly that
   * size the caller reuses (client/chunk-buffers.ts), or undefined for a fresh
   * one. Its bytes count only if the get resolves with it.
   */
  into?: (size: number) => Buffer | undefined
}

interface Peer {
  url: string
  seen: number
  state: Heartbeat['state']
  /** Its heartbeats list BLAKE3 among the block names it accepts (unknown: false). */
  blake3: boolean
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
/** After a failure a node is tried last for this long. */
const SUSPECT_MS = 5000
/**
 * How long a read waits for a replica's reply to begin while another replica
 * could serve it. A node answers a GET's headers once the file is open (a few
 * ms); one that has not in a second is stopped, frozen or swamped, and the
 * next replica is asked (it is also suspected, so reads prefer others for
 * SUSPECT_MS). Without it, a read waited for the stopped node to count as dead
 * (NODE_DEAD_MS, 7 s). The last candidate gets the whole deadline.
 */
export const REPLICA_ANSWER_MS = 1000
/** First and longest pause between tries of a read whose replica failed in a way that may pass. */
const RETRY_FIRST_MS = 100
const RETRY_MAX_MS = 2000
/** A (hash, node) reported bad is not reported again, and is asked last, for this long. */
const BAD_COPY_MS = 60_000
const BAD_COPY_MAX = 10_000

/** Codes that no other node or later attempt can fix: the put fails at once. */
const FATAL_PUT = new Set<string>(['EHASH', 'EAUTH', 'EFBIG'])

type Range = { start: number; end?: number } | null

export class BlockClient {
  private readonly subjects: Subjects
  private readonly http: NodeHttp
  private readonly peers = new Map<string, Peer>()
  private readonly failedAt = new Map<string, number>()
  /** `${hash} ${node}` -> when it was found bad. */
  private readonly badCopies = new Map<string, number>()
  /** Called on every heartbeat, and with `true` at close (give up waiting). */
  private readonly waiters = new Set<(closing?: boolean) => void>()
  private sub: Subscription | null = null
  private readonly deadlineMs: number
  /** False once NATS refused this credential a node's own placement subject (an older nats.conf). */
  private placeDirect = true
  /** When start() subscribed to heartbeats: until PLACE_FRESH_MS later this client has not heard every node. */
  private listeningSince = Infinity

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
    this.listeningSince = Date.now()
    this.sub = this.nc.subscribe(this.subjects.heartbeat, {
      callback: (err, msg) => {
        if (err) return
        let hb: Heartbeat
        try {
          hb = parseBody(heartbeat, msg.data)
        } catch {
          return
        }
        this.peers.set(hb.id, { url: hb.url, seen: seenAt(hb, Date.now()), state: hb.state, blake3: hb.blockHashes?.includes('blake3') ?? false })
        for (const wake of this.waiters) wake()
      },
    })
    await this.waitForPeers(HEARTBEAT_MS + 500)
  }

  /**
   * Seeds the live set from meta's view (HelloReply.nodes) before the first
   * heartbeat round has been heard: the write quorum is min(R, live), and a
   * client that had heard one node so far would otherwise ask for, and accept,
   * a single copy right after mounting.
   */
  seed(nodes: ReadonlyArray<{ id: string; url: string; state: Heartbeat['state']; alive: boolean; blockHashes?: string[] }>): void {
    const now = Date.now()
    for (const n of nodes) if (n.alive && !this.peers.has(n.id)) this.peers.set(n.id, { url: n.url, seen: now, state: n.state, blake3: n.blockHashes?.includes('blake3') ?? false })
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

  /**
   * Asks for placement, later attempts waiting longer than the first ones
   * (PLACE_WAITS_MS). Each attempt goes to one node this client picked at
   * random among those taking writes whose heartbeat is fresh
   * (PLACE_FRESH_MS), by that node's own subject; with none to pick, or
   * where the node or NATS does not know the subject (an older node: no
   * responders; an older nats.conf: permission refused, then never again),
   * to the queue group `data`. The queue group alone is not enough: NATS
   * hands each request to a random member, and a member that stopped
   * without leaving (SIGSTOP, a frozen VM) keeps its share for as long as it
   * is stopped (nats-server delays its pings while it sends the member
   * messages, so it never closes that connection; docs/meta.md): a third of
   * the writes on a 3-node cluster waited there. A live node answers in
   * milliseconds. Placement reserves nothing, so a retry is harmless.
   */
  private async place(body: { size: number; replicas: number; exclude: string[] }, deadline: number): Promise<PlaceReply> {
    const asked = new Set(body.exclude)
    for (let attempt = 0; ; attempt++) {
      const wait = PLACE_WAITS_MS[Math.min(attempt, PLACE_WAITS_MS.length - 1)]!
      const left = deadline - Date.now()
      const timeoutMs = Math.max(1, Math.min(wait, left))
      const direct = this.placeDirect ? this.pickPlacer(asked) : null
      if (direct) {
        asked.add(direct)
        try {
          // a publish NATS refuses fails this at once (common/reply-mux.ts matches the server's
          // permission error to the pending request): that is how an older nats.conf is told apart
          const msg = await replyMux(this.nc).request(this.subjects.placeAt(direct), encode(body), timeoutMs)
          return unwrap<PlaceReply>(msg.data)
        } catch (err) {
          const code = (err as { code?: string }).code
          if (code === NatsErrorCode.PermissionsViolation) this.placeDirect = false
          // ENOSPC and the like are answers: the node said so
          else if (err instanceof BerthError && code !== 'ETIMEDOUT') throw err
          if (Date.now() >= deadline) throw new BerthError('ETIMEDOUT', `placement: no node answered within ${this.deadlineMs} ms`, { cause: err })
          continue
        }
      }
      try {
        return await request<PlaceReply>(this.nc, this.subjects.place, body, { timeoutMs, deadlineMs: Math.max(1, left) })
      } catch (err) {
        // an attempt that got no answer: another one, to whichever member NATS picks next
        if ((err as BerthError).code !== 'ETIMEDOUT' || Date.now() >= deadline) throw err
      }
    }
  }

  /** A node to ask for placement by its own subject: taking writes, heard within PLACE_FRESH_MS, not in `asked`. */
  private pickPlacer(asked: ReadonlySet<string>): string | null {
    const now = Date.now()
    // a client that has not listened for a whole round knows only some nodes: the queue group
    // spreads its first writes over all of them (test/block-client-fresh)
    if (now - this.listeningSince < PLACE_FRESH_MS) return null
    const fresh: string[] = []
    for (const [id, p] of this.peers) if (p.state === 'up' && now - p.seen <= PLACE_FRESH_MS && !asked.has(id) && SUBJECT_TOKEN.test(id)) fresh.push(id)
    return fresh.length ? fresh[Math.floor(Math.random() * fresh.length)]! : null
  }

  /** Heard from, but not within NODE_DEAD_MS (a node never heard from is not dead). */
  private isDead(id: string): boolean {
    return heardButDead(this.peers.get(id)?.seen)
  }

  /** Live node id -> url as learned from heartbeats. */
  liveNodes(): Map<string, string> {
    const now = Date.now()
    const out = new Map<string, string>()
    for (const [id, p] of this.peers) if (now - p.seen <= NODE_DEAD_MS) out.set(id, p.url)
    return out
  }

  /**
   * The hash new blocks are named with: BLAKE3 when every live node accepts it,
   * else SHA-256, so that during a rolling upgrade (nodes before clients, or a
   * node of an older release started again) no copy goes to a node that would
   * refuse its name (common/block-hash.ts). No live node yet: SHA-256.
   */
  naming(): BlockHash {
    const now = Date.now()
    let any = false
    for (const p of this.peers.values()) {
      if (now - p.seen > NODE_DEAD_MS) continue
      if (!p.blake3) return 'sha256'
      any = true
    }
    return any ? 'blake3' : 'sha256'
  }

  /** The name `data` is stored under (naming()). */
  nameOf(data: Uint8Array): string {
    return blockName(data, this.naming())
  }

  /** True when nodes are live and every one of them reports itself full. */
  private allFull(): boolean {
    const now = Date.now()
    const live = [...this.peers.values()].filter((p) => now - p.seen <= NODE_DEAD_MS)
    return live.length > 0 && live.every((p) => p.state === 'full')
  }

  /** True when some live node reports itself full. */
  private anyFull(): boolean {
    const now = Date.now()
    return [...this.peers.values()].some((p) => now - p.seen <= NODE_DEAD_MS && p.state === 'full')
  }

  /**
   * Copies a put must reach before it resolves: min(R, live nodes), draining
   * ones aside (they are leaving), plus those already holding this block. A
   * full node counts: a write it cannot take fails with ENOSPC rather than
   * being acknowledged short. A node that died counts until its heartbeat is
   * stale (NODE_DEAD_MS); until then the put keeps placing elsewhere.
   */
  private quorum(holders: ReadonlySet<string>): number {
    const now = Date.now()
    let able = 0
    for (const [id, p] of this.peers) if (holders.has(id) || (now - p.seen <= NODE_DEAD_MS && p.state !== 'draining')) able++
    return Math.max(1, Math.min(this.opts.replicas, able))
  }

  private suspect(id: string): void {
    this.failedAt.set(id, Date.now())
  }

  private isSuspect(id: string): boolean {
    const t = this.failedAt.get(id)
    return t !== undefined && Date.now() - t < SUSPECT_MS
  }

  private isBad(hash: string, node: string): boolean {
    const t = this.badCopies.get(`${hash} ${node}`)
    return t !== undefined && Date.now() - t < BAD_COPY_MS
  }

  private reportBad(bad: BadCopy): void {
    if (this.isBad(bad.hash, bad.node)) return
    if (this.badCopies.size >= BAD_COPY_MAX) {
      const now = Date.now()
      for (const [k, t] of this.badCopies) if (now - t >= BAD_COPY_MS) this.badCopies.delete(k)
      if (this.badCopies.size >= BAD_COPY_MAX) this.badCopies.clear()
    }
    this.badCopies.set(`${bad.hash} ${bad.node}`, Date.now())
    try {
      this.opts.onBadCopy?.(bad)
    } catch {
      // a report is advice; a failing callback must not fail the read
    }
  }

  /**
   * Stores the block on min(R, writable live nodes) nodes and resolves with
   * their ids (see quorum()). Normal case: one placement, one PUT down a chain
   * of R (about one disk write of latency). When the chain comes back short (a
   * member failed or was busy), the missing copies are placed again, excluding
   * the holders and the failed nodes, and PUT before the put resolves.
   */
  async put(data: Uint8Array, hash?: string): Promise<{ hash: string; nodes: string[]; sums: Uint8Array }> {
    const h = hash ?? this.nameOf(data)
    if (!/^[0-9a-f]{64}$/.test(h)) throw new BerthError('EINVAL', `not a block name: "${h.slice(0, 80)}"`)
    // the piece sums are computed on a pool thread while the PUT travels
    const sums = pieceSumsAsync(data)
    sums.catch(() => undefined) // awaited below; a put that fails first must not leave it unhandled
    const deadline = Date.now() + this.deadlineMs
    const holders = new Set<string>()
    /** Nodes that failed this put; forgotten when placement has nobody else. */
    const failed = new Set<string>()
    let last: unknown = null
    let backoff = 50
    const pause = async () => {
      // jitter: many clients turned away by one busy node must not return in step
      await sleep(Math.min(backoff * (0.5 + Math.random()), Math.max(0, deadline - Date.now())))
      backoff = Math.min(backoff * 2, 1000)
    }
    for (;;) {
      const want = this.quorum(holders)
      if (holders.size >= want) return { hash: h, nodes: [...holders], sums: await sums }
      // Full nodes leave the placement group, so a full cluster would look
      // like an unreachable one; their heartbeats say which it is.
      if (holders.size === 0 && this.allFull()) throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: every live data node is full`)
      const left = deadline - Date.now()
      const got = holders.size ? ` (durable on ${holders.size} of ${want} nodes)` : ''
      // nodes refusing for space until the end: that is the answer, not a timeout
      const noRoom = (last as BerthError | null)?.code === 'ENOSPC' || (holders.size > 0 && this.anyFull())
      if (left <= 0 && noRoom) throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: no data node has room for it${got}`, { cause: last })
      if (left <= 0) throw new BerthError('ETIMEDOUT', `put ${h.slice(0, 12)}: not stored on ${want} nodes within ${this.deadlineMs} ms${got}${last ? ` (last error: ${(last as Error).message})` : ''}`, { cause: last })
      let reply: PlaceReply
      try {
        reply = await this.place({ size: data.length, replicas: want - holders.size, exclude: [...holders, ...failed].slice(0, 64) }, deadline)
      } catch (err) {
        const code = (err as BerthError).code
        if (code === 'ENOSPC' && (failed.size > 0 || holders.size > 0)) {
          // Everyone left was excluded: forget the failures and try again
          // later (the live view may also shrink to what can be had). This
          // ENOSPC means "nobody left to place on", not a node out of space:
          // it is not kept as the last error, or a put that runs out of time
          // here would be reported as a full disk.
          failed.clear()
          last ??= new BerthError('EIO', `put ${h.slice(0, 12)}: no other node to place the missing copies on`, { cause: err })
          await pause()
          continue
        }
        if (this.allFull() || (holders.size > 0 && this.anyFull())) throw new BerthError('ENOSPC', `put ${h.slice(0, 12)}: no data node has room for the ${want - holders.size} missing copies`, { cause: err })
        throw err
      }
      const targets = (Array.isArray(reply.targets) ? reply.targets : []).filter((t) => typeof t?.id === 'string' && typeof t?.url === 'string' && !holders.has(t.id))
      const first = targets[0]
      if (!first) throw new BerthError('EBADMSG', 'placement reply without new targets')
      for (const t of targets) {
        const known = this.peers.get(t.id)
        this.peers.set(t.id, { url: t.url, seen: Math.max(Date.now(), known?.seen ?? 0), state: known?.state ?? 'up', blake3: known?.blake3 ?? false })
      }
      const before = holders.size
      // a first node that stopped (its heartbeats did) is given up on then, not at the deadline;
      // the chain's other members are its to watch (node/http-api.ts forward)
      const watch = deadPeerSignal([first.id], (id) => this.isDead(id), `PUT ${h.slice(0, 12)}`)
      try {
        const res = await this.http.put(first, h, data, data.length, targets.slice(1), Math.max(1, deadline - Date.now()), watch.signal)
        for (const id of res.stored) holders.add(id)
        // chain members that did not store it failed or were busy: place around them
        for (const t of targets) if (!holders.has(t.id)) failed.add(t.id)
        if (holders.size < want) last = new BerthError('EIO', `chain from ${first.id} stored ${res.stored.length} of ${targets.length} copies`)
      } catch (err) {
        const code = (err as BerthError).code
        // a node that does not list BLAKE3 names (an older release, heard of
        // after this block was named) refuses a good BLAKE3-named body with
        // EHASH: place around it; a node that accepts both names refusing is final
        const olderNode = code === 'EHASH' && this.peers.get(first.id)?.blake3 !== true
        if (FATAL_PUT.has(code) && !olderNode) throw err
        last = err
        failed.add(first.id)
        // a busy node (503) is healthy: do not push it to the back of reads
        if (code !== 'EAGAIN') this.suspect(first.id)
      } finally {
        watch.stop()
      }
      if (holders.size === before) await pause()
    }
  }

  /**
   * Fetches from any of the given node ids (unknown or dead ones skipped,
   * silent failover in order), else from every other live node. Every byte
   * returned is verified: a whole block against `sums` (every piece), or its
   * name without them; a range against `sums` (the pieces covering it), or,
   * without sums, cut from a verified whole block. A range past the end of
   * the block gives fewer bytes (none past its end).
   */
  async get(hash: string, nodes: string[], opts: GetOptions = {}): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new BerthError('EINVAL', `not a block name: "${hash.slice(0, 80)}"`)
    const ranged = opts.offset !== undefined || opts.length !== undefined
    if (!ranged) return this.fetchVerified(hash, nodes, null, wholeBlockCheck(hash, opts.sums), opts.into)
    const offset = opts.offset ?? 0
    if (opts.length === 0) return Buffer.alloc(0)
    const sums = opts.sums
    if (!sums || sums.length < 4 || opts.length === undefined) {
      // older data without sums (or an open-ended range): a whole verified block
      const whole = await this.get(hash, nodes)
      return whole.subarray(Math.min(offset, whole.length), opts.length === undefined ? undefined : offset + opts.length)
    }
    const span = coveringPieces(sums, offset, opts.length)
    if (!span) return Buffer.alloc(0)
    const pieces = await this.fetchVerified(hash, nodes, { start: span.start, end: span.end }, (buf) => verifyPieces(sums, span, buf))
    const from = offset - span.start
    return pieces.subarray(from, from + opts.length)
  }

  /**
   * get() with a check: the first copy passing `check` (null = good), tried
   * again until the deadline while a listed replica is still unheard or a
   * node failed in a way that may pass (no answer, reset, 5xx).
   */
  private async fetchVerified(hash: string, nodes: string[], range: Range, check: BlockCheck, into?: GetOptions['into']): Promise<Buffer> {
    const deadline = Date.now() + this.deadlineMs
    if (this.liveNodes().size === 0) await this.waitForPeers(Math.min(HEARTBEAT_MS + 1000, this.deadlineMs))
    let backoff = RETRY_FIRST_MS
    for (;;) {
      const got = await this.getOnce(hash, nodes, range, check, deadline, into)
      if (got.buf) return got.buf
      if (Date.now() >= deadline) throw got.err
      // A listed replica this pass did not ask, because we had not heard from
      // it (this client just started, or the node is restarting), may still
      // serve it: wait for its heartbeat and try again. Judged by the live set
      // the pass used, not a fresh one: a heartbeat that arrived while the pass
      // ran makes the replica live now, but it was never asked (a fresh
      // reader failed exactly so, test/block-client-retry.test.ts).
      const unheard = nodes.filter((id) => !got.asked.has(id))
      if (unheard.length) {
        const heard = () => unheard.some((id) => this.liveNodes().has(id))
        await this.waitForPeers(Math.min(HEARTBEAT_MS + 500, deadline - Date.now()), heard)
        continue
      }
      // Every listed replica is live. Copies that are missing or bad are
      // final (waiting would not bring them back), but a node that did not
      // answer, reset the connection or was busy may answer the next try: on
      // a loaded machine the only holder of a block did exactly that, and the
      // read failed at once with EIO (test/block-client-retry.test.ts).
      if (!got.transient) throw got.err
      await new Promise((r) => setTimeout(r, Math.min(backoff, Math.max(0, deadline - Date.now()))))
      backoff = Math.min(backoff * 2, RETRY_MAX_MS)
    }
  }

  /**
   * One pass over the candidates: the first verified bytes, or the error to
   * report if nothing changes. Copies found bad on listed replicas are reported
   * only once a good copy has been read: then the good one proves them bad (a
   * wrong checksum in meta, or a flaky network, must not condemn every copy).
   */
  private async getOnce(hash: string, nodes: string[], range: Range, check: BlockCheck, deadline: number, into?: GetOptions['into']): Promise<{ buf?: Buffer; err?: unknown; transient?: boolean; asked: ReadonlyMap<string, string> }> {
    const live = this.liveNodes()
    // the nodes this pass asks (or would have, had the deadline allowed)
    const asked: ReadonlyMap<string, string> = live
    const given = nodes.filter((id, i) => live.has(id) && nodes.indexOf(id) === i)
    const others = [...live.keys()].filter((id) => !given.includes(id))
    // Stable within each group: preferred replicas first, suspects and known-bad copies to the back.
    const order = [...given, ...others].map((id, i) => ({ id, i, s: this.isBad(hash, id) ? 2 : this.isSuspect(id) ? 1 : 0 }))
    order.sort((a, b) => a.s - b.s || a.i - b.i)

    const bad: BadCopy[] = []
    const condemn = (id: string, reason: string) => {
      if (nodes.includes(id)) bad.push({ hash, node: id, reason })
    }
    let last: unknown = null
    let transient = false
    for (const [k, { id }] of order.entries()) {
      const left = deadline - Date.now()
      if (left <= 0) return { err: new BerthError('ETIMEDOUT', `get ${hash.slice(0, 12)}: no replica answered within ${this.deadlineMs} ms`, { cause: last }), asked }
      const url = live.get(id)
      if (!url) continue
      let buf: Buffer
      // a replica that stopped (SIGSTOP, hung) is left once it counts as dead, for the next one;
      // before, the read waited out the whole deadline (30 s) on it
      const watch = deadPeerSignal([id], (n) => this.isDead(n), `GET ${hash.slice(0, 12)}`)
      try {
        // every candidate is live: any after this one may serve it
        buf = await this.http.get({ id, url }, hash, range, left, watch.signal, k < order.length - 1 ? REPLICA_ANSWER_MS : undefined, into)
      } catch (err) {
        const code = (err as BerthError).code
        if (code === 'EAUTH') throw err
        // 404: the node lost it; 416: its copy ends before the range (truncated)
        if (code === 'ENOENT') condemn(id, 'missing')
        else if (code === 'ERANGE') condemn(id, 'short: range past the end of the copy')
        else {
          this.suspect(id)
          // a listed replica (or any node, for a block listed nowhere) may answer the next try
          if (nodes.length === 0 || nodes.includes(id)) transient = true
        }
        last = err
        continue
      } finally {
        watch.stop()
      }
      const why = await check(buf)
      if (why === null) {
        for (const b of bad) this.reportBad(b)
        return { buf, asked }
      }
      condemn(id, why)
      // The copy is bad, not the node (isBad() sends this copy to the back once
      // reported): suspecting the node would also reorder reads of its good copies.
      last = new BerthError('EHASH', `node ${id} sent bad bytes for ${hash.slice(0, 12)}: ${why}`)
    }
    if (Date.now() >= deadline) return { err: new BerthError('ETIMEDOUT', `get ${hash.slice(0, 12)}: no replica answered within ${this.deadlineMs} ms`, { cause: last }), asked }
    return { err: new BerthError('EIO', `get ${hash.slice(0, 12)}: no live node has a good copy (tried ${order.length}: ${order.map((o) => o.id).join(', ')})`, { cause: last }), transient, asked }
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
