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
  waiters: Set<() => void>
  /** Called after every reconnect (e.g. caches fed by messages sent meanwhile). */
  onReconnect: Set<() => void>
}

const states = new WeakMap<NatsConnection, State>()

/** Starts following `nc`'s status; connections not tracked count as always up. */
export function trackConnection(nc: NatsConnection): void {
  if (states.has(nc)) return
  const state: State = { up: true, waiters: new Set(), onReconnect: new Set() }
  states.set(nc, state)
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') state.up = false
      else if (s.type === 'reconnect') {
        state.up = true
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
