/**
 * Ends requests to a data node that stopped without going away.
 *
 * A node that is SIGSTOPped or frozen with its VM keeps its TCP connections
 * and its NATS subscriptions: nothing refuses or resets a
 * request to it, and the request waits out its own timeout (30 s for a
 * client's block write, 60 s for a copy). Its heartbeats stop, though, and
 * after NODE_DEAD_MS every peer counts it dead. This signal aborts at that
 * point, checked every DEAD_CHECK_MS while a request is in flight. Nodes never
 * heard from are not dead (`isDead` says so), so a watch cannot cut short a
 * request to a node that just joined or a process that just started.
 */
import { BerthError } from './errors'

/** How often a request in flight looks at its nodes' heartbeats. */
export const DEAD_CHECK_MS = 500

export interface DeadPeerWatch {
  /** Aborted with an ETIMEDOUT BerthError naming the node, once one of them is dead. */
  signal: AbortSignal
  /** Stops watching (the request ended). */
  stop(): void
}

export function deadPeerSignal(ids: readonly string[], isDead: (id: string) => boolean, what: string): DeadPeerWatch {
  const ac = new AbortController()
  const timer = setInterval(() => {
    const dead = ids.find(isDead)
    if (dead === undefined) return
    clearInterval(timer)
    ac.abort(new BerthError('ETIMEDOUT', `${what}: node ${dead} stopped heartbeating`))
  }, DEAD_CHECK_MS)
  timer.unref()
  return { signal: ac.signal, stop: () => clearInterval(timer) }
}

/** Rejects with the signal's reason once it aborts (never settles otherwise). */
export function aborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason)
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}
