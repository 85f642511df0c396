/**
 * Whether a NATS connection is up right now, from its status events. nats.js
 * has no synchronous "connected" flag, and a request sent while it is
 * reconnecting is dropped at the reconnect, so the caller would sit out a
 * whole per-attempt timeout after the server is back. request() waits here
 * for the reconnect instead and sends once the connection is usable.
 */
import type { NatsConnection } from 'nats'

interface State {
  up: boolean
  /** Disconnects and reconnects so far: a NATS round trip that spans one proves nothing. */
  epoch: number
  waiters: Set<() => void>
  /** Called after every reconnect (e.g. caches fed by messages sent meanwhile). */
  onReconnect: Set<() => void>
}

const states = new WeakMap<NatsConnection, State>()

/** Starts following `nc`'s status; connections not tracked count as always up. */
export function trackConnection(nc: NatsConnection): void {
  if (states.has(nc)) return
  const state: State = { up: true, epoch: 0, waiters: new Set(), onReconnect: new Set() }
  states.set(nc, state)
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        state.up = false
        state.epoch++
      } else if (s.type === 'reconnect') {
        state.up = true
        state.epoch++
        for (const wake of state.waiters) wake()
        state.waiters.clear()
        for (const fn of state.onReconnect) fn()
      }
    }
  })().catch(() => undefined)
}

/** Whether `nc` is connected now (a connection not tracked counts as connected). */
export function isConnected(nc: NatsConnection): boolean {
  return states.get(nc)?.up ?? true
}

/**
 * Resolves true once every message the server had queued for this connection
 * before the call has been received and dispatched (callback subscriptions
 * run synchronously as messages are parsed, before the PONG that settles the
 * flush). False when that cannot be said: disconnected now or meanwhile (what
 * was published then is lost), or the server is one of a NATS cluster, where
 * a message from a client of another server may still be on its way over a
 * route when this server answers the PING. docs/semantics.md#reopening-without-a-meta-request
 */
export async function deliveredSoFar(nc: NatsConnection): Promise<boolean> {
  const state = states.get(nc)
  if (!state || !state.up || nc.info === undefined || nc.info.cluster !== undefined) return false
  const epoch = state.epoch
  try {
    await nc.flush()
  } catch {
    return false
  }
  return state.up && state.epoch === epoch
}

/** Resolves when `nc` is connected, or after `ms` (whichever comes first). */
export function whenConnected(nc: NatsConnection, ms: number): Promise<void> {
  const state = states.get(nc)
  if (!state || state.up || ms <= 0) return Promise.resolve()
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer)
      state.waiters.delete(done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    state.waiters.add(done)
  })
}

/** Runs `fn` after every reconnect of `nc` (which must come from connectNats). */
export function onReconnect(nc: NatsConnection, fn: () => void): void {
  trackConnection(nc)
  states.get(nc)!.onReconnect.add(fn)
}
