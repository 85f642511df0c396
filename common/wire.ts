/**
 * NATS plumbing shared by every berth process: subject names, the msgpack codec,
 * the reply envelope, a validating server loop and a request helper with a
 * deadline and bounded retries.
 *
 * Envelope: a reply is `{ ok: true, ...result }` or `{ ok: false, code, message }`
 * where `code` is an errno name (common/errors.ts). A request that cannot be
 * decoded or fails its schema gets `EBADMSG`; the server keeps running.
 */
import { whenConnected } from './nats-state'
import { replyMux } from './reply-mux'
import { Packr } from 'msgpackr'
import { ErrorCode as NatsErrorCode, type Msg, type NatsConnection, type Subscription } from 'nats'
import type { ZodType } from 'zod'
import { BerthError, codeOf, fsError, isErrorCode, type ErrorCode } from './errors'
import { MAX_MESSAGE_BYTES } from './protocol'

export const DEFAULT_CLUSTER = 'berth'

/** One NATS subject token as berth names them: a cluster, a meta's or a node's id. */
export const SUBJECT_TOKEN = /^[A-Za-z0-9_-]{1,64}$/

/** Every subject berth uses, for one cluster name. */
export function subjects(cluster: string) {
  if (!SUBJECT_TOKEN.test(cluster)) throw new BerthError('EINVAL', `bad cluster name "${cluster}"`)
  return {
    /** A meta operation, to the queue group `meta` (whoever serves). */
    meta: (op: string) => `${cluster}.meta.${op}`,
    metaAll: `${cluster}.meta.*`,
    /**
     * A meta operation, to one serving meta by its id (common/meta-route.ts): a
     * leader that stopped without going away keeps its place in the queue group.
     */
    metaAt: (metaId: string, op: string) => `${cluster}.metaat.${metaId}.${op}`,
    metaAtAll: `${cluster}.metaat.*.*`,
    /**
     * Answered by the one serving meta with its id (MetaLeaderReply); a starting
     * meta probes it to refuse a split namespace, a client to learn metaAt.
     */
    metaLeader: `${cluster}.metactl.leader`,
    /** Every replicated meta publishes its role and applied log sequence here each second (berth status). */
    metaReplica: `${cluster}.metactl.replica`,
    /** Placement, to the queue group `data` (any node taking writes). */
    place: `${cluster}.data.place`,
    /**
     * Placement, to one node by its id (common/block-client.ts): a node that
     * stopped without going away keeps its place in the queue group.
     */
    placeAt: (nodeId: string) => `${cluster}.data.placeat.${nodeId}`,
    placeAtAll: `${cluster}.data.placeat.*`,
    heartbeat: `${cluster}.node.hb`,
    nodeCmd: (id: string) => `${cluster}.node.${id}.cmd`,
    inval: `${cluster}.inval`,
  } as const
}
export type Subjects = ReturnType<typeof subjects>

/** The leader probe's answer. `direct`: it serves `metaAt(metaId, op)` (older metas do not). */
export interface MetaLeaderReply {
  metaId: string
  direct?: boolean
}

/** Plain maps, binary as Buffer; no msgpackr records so any msgpack peer can talk to us. */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true })

export function encode(value: unknown): Uint8Array {
  return packr.pack(value)
}

export function decode(data: Uint8Array): unknown {
  return packr.unpack(data)
}

export type Envelope<T> = ({ ok: true } & T) | { ok: false; code: ErrorCode; message: string }

export function okReply<T extends object>(value: T): Uint8Array {
  return encode({ ok: true, ...value })
}

export function errorReply(err: unknown): Uint8Array {
  const code = codeOf(err)
  const message = err instanceof Error ? err.message : String(err)
  return encode({ ok: false, code, message })
}

/** Unwraps an envelope, rethrowing a failure as a BerthError with the same code. */
export function unwrap<T>(data: Uint8Array): T {
  let body: unknown
  try {
    body = decode(data)
  } catch (err) {
    throw new BerthError('EBADMSG', 'reply is not msgpack', { cause: err })
  }
  if (typeof body !== 'object' || body === null || !('ok' in body)) {
    throw new BerthError('EBADMSG', 'reply is not an envelope')
  }
  const env = body as { ok: boolean; code?: unknown; message?: unknown }
  if (env.ok === true) return body as T
  const code = isErrorCode(env.code) ? env.code : 'EIO'
  throw fsError(code, typeof env.message === 'string' ? env.message : code)
}

/** Decodes and validates a request body; throws EBADMSG with the reason. */
export function parseBody<T>(schema: ZodType<T>, data: Uint8Array): T {
  if (data.length > MAX_MESSAGE_BYTES) throw new BerthError('EMSGSIZE', `message over ${MAX_MESSAGE_BYTES} bytes`)
  let body: unknown
  try {
    body = decode(data)
  } catch {
    throw new BerthError('EBADMSG', 'body is not msgpack')
  }
  const parsed = schema.safeParse(body)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue?.path.length ? issue.path.join('.') : 'body'
    throw new BerthError('EBADMSG', `bad request: ${where}: ${issue?.message ?? 'invalid'}`)
  }
  return parsed.data
}

export interface ServeOptions {
  queue?: string
  /** Called for failures that are not the caller's fault (for logs and metrics). */
  onError?: (err: unknown, subject: string) => void
  /**
   * Runs right before each reply is published, in the same synchronous step:
   * whatever it publishes leaves in the same socket write as the reply, ahead
   * of it (meta's invalidations, meta/server.ts).
   */
  beforeReply?: () => void
}

/**
 * Subscribes and answers every request with an envelope. The handler gets the raw
 * message; a throw becomes an error reply. Messages without a reply subject are
 * handed to the handler too and its result dropped.
 */
/**
 * Thrown by a handler that cannot know its request's outcome (meta lost its
 * leadership while appending it): no answer is sent, so the caller times out
 * and retries, and the retry is answered by whoever serves then, from the
 * durable request table if the first attempt did reach the log.
 */
export class NoReply extends Error {}

export function serve(
  nc: NatsConnection,
  subject: string,
  opts: ServeOptions,
  handler: (msg: Msg) => Promise<object> | object,
): Subscription {
  return nc.subscribe(subject, {
    queue: opts.queue,
    callback: (err, msg) => {
      if (err) {
        opts.onError?.(err, subject)
        return
      }
      void (async () => {
        let reply: Uint8Array
        try {
          reply = okReply(await handler(msg))
        } catch (e) {
          if (e instanceof NoReply) return
          if (!(e instanceof BerthError)) opts.onError?.(e, msg.subject)
          reply = errorReply(e)
        }
        if (msg.reply) {
          try {
            opts.beforeReply?.()
            msg.respond(reply)
          } catch (e) {
            opts.onError?.(e, msg.subject)
          }
        }
      })()
    },
  })
}

export interface RequestOptions {
  /** Per-attempt timeout. */
  timeoutMs?: number
  /** Overall time budget; after it the call fails with ETIMEDOUT. */
  deadlineMs?: number
  /**
   * Retry attempts that timed out. Safe only for idempotent calls or calls
   * carrying a request id the server deduplicates. "No responders" is always
   * retried: the request provably reached no server.
   */
  retryTimeouts?: boolean
  /**
   * How long "no responders" is retried, when shorter than the deadline. For
   * a subject one process serves (a data node's commands): that process is
   * gone or restarting, and a caller holding a lock while it waits (meta's
   * maintenance turn) must not wait out a whole deadline for a dead node.
   */
  noRespondersMs?: number
}

/**
 * A destination that can move between attempts (common/meta-route.ts): asked
 * for its subject before each attempt, and told of each attempt that timed out
 * or found nobody subscribed.
 */
export interface RequestRoute {
  subject(): string
  /**
   * An attempt timed out or found nobody subscribed: find out where to send
   * the next, within `budgetMs`. When subject() then differs from the one the
   * attempt used, the next attempt is sent at once.
   */
  failed(code: string, budgetMs: number): Promise<void>
  /**
   * An attempt has waited SLOW_ATTEMPT_MS: the same question, while it goes on
   * waiting. When subject() then differs, the attempt is abandoned (its late
   * reply dropped) and sent again at once.
   */
  slow?(budgetMs: number): Promise<void>
}

/** How long an attempt on a route waits before the route is asked whether it moved. */
export const SLOW_ATTEMPT_MS = 1000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Sends one request and unwraps the envelope, retrying within the deadline. */
export async function request<T>(nc: NatsConnection, to: string | RequestRoute, body: unknown, opts: RequestOptions = {}): Promise<T> {
  const route = typeof to === 'string' ? null : to
  let subject: string
  const timeoutMs = opts.timeoutMs ?? 5000
  const deadline = Date.now() + (opts.deadlineMs ?? 30_000)
  const data = encode(body)
  if (data.length > MAX_MESSAGE_BYTES) throw new BerthError('EMSGSIZE', `request over ${MAX_MESSAGE_BYTES} bytes`)
  const started = Date.now()
  let backoff = 50
  for (;;) {
    if (nc.isClosed()) throw new BerthError('EIO', 'NATS connection is closed')
    await whenConnected(nc, deadline - Date.now())
    subject = typeof to === 'string' ? to : to.subject()
    const left = deadline - Date.now()
    const attemptMs = Math.max(50, Math.min(timeoutMs, left))
    let msg: Msg
    try {
      const reply = await attempt(replyMux(nc).request(subject, data, attemptMs), route, subject, attemptMs)
      if (reply === 'moved') continue
      msg = reply
    } catch (err) {
      const code = (err as { code?: string }).code
      const retriable =
        code === NatsErrorCode.NoResponders ||
        code === NatsErrorCode.Disconnect ||
        (code === NatsErrorCode.Timeout && opts.retryTimeouts === true)
      if (!retriable) {
        if (code === NatsErrorCode.Timeout) throw new BerthError('ETIMEDOUT', `${subject}: no reply in ${timeoutMs} ms`, { cause: err })
        if (code === NatsErrorCode.ConnectionClosed) throw new BerthError('EIO', 'NATS connection is closed', { cause: err })
        if (code === NatsErrorCode.MaxPayloadExceeded) throw new BerthError('EMSGSIZE', `${subject}: message too large`, { cause: err })
        throw new BerthError('EIO', `${subject}: ${(err as Error).message}`, { cause: err })
      }
      if (code === NatsErrorCode.NoResponders && opts.noRespondersMs !== undefined && Date.now() + backoff - started >= opts.noRespondersMs) {
        throw new BerthError('ETIMEDOUT', `${subject}: nobody subscribed for ${opts.noRespondersMs} ms`, { cause: err })
      }
      // a route that moved is tried at once (it asked who serves, which took a round trip)
      if (route && code !== NatsErrorCode.Disconnect) {
        await route.failed(code ?? '', Math.min(timeoutMs, deadline - Date.now()))
        if (route.subject() !== subject) continue
      }
      if (Date.now() + backoff >= deadline) {
        throw new BerthError('ETIMEDOUT', `${subject}: cluster did not answer within ${opts.deadlineMs ?? 30_000} ms (${code})`, { cause: err })
      }
      await sleep(backoff)
      backoff = Math.min(backoff * 2, 1000)
      continue
    }
    return unwrap<T>(msg.data)
  }
}

/**
 * One attempt's reply, or 'moved' when its route moved while it waited (a
 * leader that stopped without going away: the attempt would wait out its
 * whole timeout). The abandoned request's late reply or timeout is dropped.
 */
async function attempt(pending: Promise<Msg>, route: RequestRoute | null, subject: string, attemptMs: number): Promise<Msg | 'moved'> {
  if (!route?.slow || attemptMs <= SLOW_ATTEMPT_MS) return pending
  const r = route
  const slow = route.slow.bind(route)
  let timer: NodeJS.Timeout | undefined
  let settled = false
  const moved = new Promise<'moved'>((resolve) => {
    timer = setTimeout(() => {
      void slow(attemptMs - SLOW_ATTEMPT_MS).then(() => {
        if (!settled && r.subject() !== subject) resolve('moved')
      })
    }, SLOW_ATTEMPT_MS)
  })
  try {
    return await Promise.race([pending, moved])
  } finally {
    settled = true
    clearTimeout(timer)
    pending.catch(() => undefined)
  }
}
