/**
 * The RPC layer: `<cluster>.meta.<op>` in queue group `meta` and
 * `<cluster>.metaat.<metaId>.<op>`, this meta's own (common/meta-route.ts), in front of a
 * MetaEngine (meta/engine.ts). Every body is validated against its schema
 * before the engine sees it; the engine answers a repeated request id from its
 * durable table and reports what each mutation changed, which is published as
 * an invalidation on `<cluster>.inval`.
 */
import type { Msg, NatsConnection, Subscription } from 'nats'
import { codeOf, fsError } from '../common/errors'
import type { Logger } from '../common/log'
import { metaRequests, type Invalidation, type MetaOp, type MetaParsed } from '../common/protocol'
import { encode, parseBody, serve, subjects } from '../common/wire'
import type { ZodType } from 'zod'
import type { Changes, MetaEnv } from './context'
import type { EngineHandle } from './engine'

function isMetaOp(op: string): op is MetaOp {
  return Object.hasOwn(metaRequests, op)
}

/** What a mutation changed, as mounts hear it on `<cluster>.inval`. */
export function invalidation(ch: Changes): Invalidation {
  return { inos: [...ch.inos], dirs: [...ch.dirs], ...(ch.entries.length ? { entries: ch.entries } : {}), ...(ch.by ? { by: ch.by } : {}), ...(ch.locks.size ? { locks: [...ch.locks] } : {}) }
}

export function publishChanges(nc: NatsConnection, cluster: string, ch: Changes): void {
  if (ch.empty || nc.isClosed()) return
  nc.publish(subjects(cluster).inval, encode(invalidation(ch)))
}

/**
 * Tells every mount to forget its whole metadata cache (`Invalidation.all`).
 * Called when this process starts serving, before it subscribes to requests:
 * a meta that died after a commit and before its outbox was flushed took that
 * mutation's invalidation with it, and the retry of the request is answered
 * from the request table, which publishes nothing. Published on the
 * connection the replies use, so it is on the wire before any reply of this
 * process (NATS keeps one connection's messages in order for a subscriber).
 * What is published while that connection is down, nats.js discards when it
 * reconnects, so Serving publishes it again after every reconnect.
 */
export function publishForgetAll(nc: Pick<NatsConnection, 'publish' | 'isClosed'>, cluster: string): void {
  if (nc.isClosed()) return
  const all: Invalidation = { inos: [], dirs: [], all: true }
  nc.publish(subjects(cluster).inval, encode(all))
}

/**
 * Invalidations of request mutations, sent together with the next reply.
 *
 * Published at once, a mutation's invalidation left in a socket write of its
 * own: nats.js flushes its buffer one microtask after the first message, and
 * the reply comes a few microtasks later. A write to nats-server was the
 * largest single cost in meta's profile under `rm -rf` (13 % of its time,
 * two writes per mutation). Here the invalidation is held until the next
 * reply and published just before it, in the same synchronous step, so both
 * leave in one write; a turn of the event loop (setImmediate) sends whatever
 * no reply took along (a request that got no reply, a burst of them).
 *
 * Order: a mutation's invalidation is always on the wire before its reply (its
 * own reply flushes it, or an earlier one did), so a mount applies its own
 * invalidation before the reply that carries the new attributes.
 */
export class InvalidationOutbox {
  private readonly pending: Uint8Array[] = []
  private scheduled = false

  /**
   * `dropAll`: test only (BERTH_TEST_DROP_INVALIDATIONS=1, meta/config.ts):
   * publish nothing, as if meta died after each commit before its flush, so
   * a test can hold the case publishForgetAll exists for. Never in production.
   */
  constructor(
    private readonly nc: Pick<NatsConnection, 'publish' | 'isClosed'>,
    private readonly cluster: string,
    private readonly dropAll = false,
  ) {}

  add(ch: Changes): void {
    if (ch.empty || this.dropAll) return
    this.pending.push(encode(invalidation(ch)))
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  /** Publishes what is held; the caller's next publish (a reply) joins the same write. */
  flush(): void {
    this.scheduled = false
    if (!this.pending.length) return
    const subject = subjects(this.cluster).inval
    const held = this.pending.splice(0)
    if (this.nc.isClosed()) return
    for (const data of held) this.nc.publish(subject, data)
  }
}

export interface MetaServer {
  /** The queue group's subscription and this meta's own. */
  subs: Subscription[]
  /** Resolves when every request received so far has been answered. */
  idle(): Promise<void>
}

/** `observe` hears every answered request (op, seconds, error code or null): metrics. */
export function serveMeta(
  nc: NatsConnection,
  env: MetaEnv,
  engine: EngineHandle,
  log: Logger,
  observe?: (op: string, seconds: number, code: string | null) => void,
  outbox?: InvalidationOutbox,
): MetaServer {
  const inflight = new Set<Promise<unknown>>()
  const s = subjects(env.cluster)

  function dispatch<Op extends MetaOp>(op: Op, data: Uint8Array): Promise<object> {
    const body = parseBody(metaRequests[op] as unknown as ZodType<MetaParsed<Op>>, data)
    return engine.call(op, body)
  }

  const handle = (msg: Msg) => {
    // the op is the subject's last token on both subjects (wildcards match one token each)
    const op = msg.subject.slice(msg.subject.lastIndexOf('.') + 1)
    if (!isMetaOp(op)) throw fsError('ENOSYS', `unknown metadata operation "${op}"`)
    const started = process.hrtime.bigint()
    const p = dispatch(op, msg.data)
    if (observe) {
      const took = () => Number(process.hrtime.bigint() - started) / 1e9
      p.then(
        () => observe(op, took(), null),
        (err: unknown) => observe(op, took(), codeOf(err)),
      )
    }
    inflight.add(p)
    void p.then(
      () => inflight.delete(p),
      () => inflight.delete(p),
    )
    return p
  }
  const opts = { onError: (err: unknown, subject: string) => log.error(`${subject}: unexpected failure`, err), beforeReply: outbox && (() => outbox.flush()) }
  const subs = [serve(nc, s.metaAll, { ...opts, queue: 'meta' }, handle), serve(nc, s.metaAt(env.metaId, '*'), opts, handle)]
  return {
    subs,
    async idle() {
      while (inflight.size) await Promise.allSettled([...inflight])
      await new Promise((resolve) => setImmediate(resolve))
    },
  }
}
