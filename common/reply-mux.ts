/**
 * Request/reply over one connection, the way nats.js's own `request()` does
 * it (one wildcard subscription under the connection's inbox prefix, each
 * request a publish whose reply subject names it), without what that costs
 * per request in nats.js 2.29: every request settles by rejecting its
 * already resolved promise with a fresh NatsError ("cancelled"), and V8
 * captures a stack for each Error it builds (8-9 us in a microbenchmark
 * here, more in a busy process). Under a loop of creates that was the
 * largest single item in a mount's profile once warm, about 6 % of its CPU
 * (docs/bench.md, "Creates: one Error per meta request").
 *
 * Failures keep nats.js's error codes, which common/wire.ts retries on:
 * - TIMEOUT: no reply within the attempt's time;
 * - 503 (no responders): NATS answers a request nobody subscribes to with an
 *   empty message carrying status 503 (the connection announces headers and
 *   no_responders, as nats.js does by default);
 * - PERMISSIONS_VIOLATION: the server refused the publish (reported on the
 *   connection's status) or the inbox subscription (every waiting request
 *   fails, and the next one subscribes again): at once, not at the timeout;
 * - CONNECTION_CLOSED: the connection closed while the request waited.
 * A publish that throws (a bad subject, a payload over the server's limit)
 * rejects with nats.js's own error.
 */
import { createInbox, ErrorCode, NatsError, type Msg, type NatsConnection } from 'nats'

interface Pending {
  readonly subject: string
  readonly resolve: (msg: Msg) => void
  readonly reject: (err: Error) => void
  readonly timer: NodeJS.Timeout
}

/** What a NATS server answers when nobody subscribes to the subject asked. */
function isNoResponders(msg: Msg): boolean {
  return msg.data.length === 0 && msg.headers?.code === 503
}

function natsError(code: ErrorCode, message: string): NatsError {
  return new NatsError(message, code)
}

export class ReplyMux {
  private readonly pending = new Map<string, Pending>()
  /** `<inbox>.`: a request's reply subject is this and its token. */
  private readonly base: string
  private next = 0

  constructor(private readonly nc: NatsConnection, inboxPrefix: string) {
    this.base = `${createInbox(inboxPrefix)}.`
    nc.subscribe(`${this.base}*`, { callback: (err, msg) => this.deliver(err, msg) })
    void nc.closed().then(() => this.failAll(natsError(ErrorCode.ConnectionClosed, 'connection closed')))
    void this.followRefusedPublishes()
  }

  /** Publishes `data` to `subject` and resolves with the first reply, or rejects after `timeoutMs`. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Msg> {
    // on a closed connection publish() throws CONNECTION_CLOSED, which rejects below
    const token = (this.next++).toString(36)
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(token)) reject(natsError(ErrorCode.Timeout, 'timeout'))
      }, timeoutMs)
      this.pending.set(token, { subject, resolve, reject, timer })
      try {
        this.nc.publish(subject, data, { reply: this.base + token })
      } catch (err) {
        this.settle(token)
        reject(err as Error)
      }
    })
  }

  /** Requests waiting for their reply (tests). */
  get waiting(): number {
    return this.pending.size
  }

  private settle(token: string): Pending | undefined {
    const p = this.pending.get(token)
    if (!p) return undefined
    this.pending.delete(token)
    clearTimeout(p.timer)
    return p
  }

  private deliver(err: NatsError | null, msg: Msg): void {
    if (err) {
      // the server refused the subscription and nats.js closed it: what waits
      // fails now, and the next request makes a new mux, as nats.js remakes its own
      if (muxes.get(this.nc) === this) muxes.delete(this.nc)
      this.failAll(err)
      return
    }
    // a late reply (after its timeout) or a second one finds nothing waiting
    const p = this.settle(msg.subject.slice(this.base.length))
    if (!p) return
    if (isNoResponders(msg)) p.reject(natsError(ErrorCode.NoResponders, `no responders: ${p.subject}`))
    else p.resolve(msg)
  }

  private failAll(err: Error): void {
    for (const token of [...this.pending.keys()]) this.settle(token)?.reject(err)
  }

  /**
   * A publish the server refused fails the oldest request to that subject at
   * once (nats.js does the same). A refused subscription needs nothing here:
   * nats.js hands it to the subscription's callback (deliver).
   */
  private async followRefusedPublishes(): Promise<void> {
    try {
      for await (const s of this.nc.status()) {
        if (s.type !== 'error' || s.data !== ErrorCode.PermissionsViolation || s.permissionContext?.operation !== 'publish') continue
        const subject = s.permissionContext.subject
        for (const [token, p] of this.pending) {
          if (p.subject !== subject) continue
          this.settle(token)
          p.reject(natsError(ErrorCode.PermissionsViolation, `permissions violation: publish to ${subject}`))
          break
        }
      }
    } catch {
      // the status iterator ends with the connection; closed() fails what is left
    }
  }
}

const muxes = new WeakMap<NatsConnection, ReplyMux>()
const prefixes = new WeakMap<NatsConnection, string>()

/** The reply-inbox prefix `nc` was opened with (common/nats-connect.ts); `_INBOX` when not told. */
export function setInboxPrefix(nc: NatsConnection, prefix: string): void {
  prefixes.set(nc, prefix)
}

/** The connection's mux, made at its first request. */
export function replyMux(nc: NatsConnection): ReplyMux {
  let mux = muxes.get(nc)
  if (!mux) muxes.set(nc, (mux = new ReplyMux(nc, prefixes.get(nc) ?? '_INBOX')))
  return mux
}
