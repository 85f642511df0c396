/**
 * Unlinks (and rmdirs of directories this mount emptied) answered before
 * meta has applied them (docs/semantics.md#unlink).
 *
 * `rm -rf` removes one name per syscall and waits for each; at one meta trip
 * per unlink (about 1 ms here, 0.4 ms of it inside meta) the trip is the whole
 * cost of a delete. When the mount can predict an unlink's outcome (the VFS
 * decides when: client/vfs.ts unlink), the kernel is answered at once and the
 * request goes to meta without the caller waiting: up to `window` are in
 * flight, and meta's group commit applies them together.
 *
 * Order is kept by a barrier: every other request of this mount waits until
 * the unlinks sent before it have settled. So meta applies this mount's
 * operations in the order their syscalls returned, a reply never shows a
 * name this mount already removed, and a request that depends on an unlink
 * (rmdir of the parent, a create of the same name) comes after it.
 *
 * States of one unlink sent ahead:
 *
 *   waiting for a slot --(fewer than `window` in flight)--> in flight
 *   in flight --(meta answers, or its deadline passes)--> settled (`after` runs)
 *
 * The caller's syscall returns when the unlink enters "in flight".
 */
import type { MetaOp, MetaReplies, MetaRequest } from '../common/protocol'
import { logger } from '../common/log'
import type { MetaApi } from './stores'

const log = logger('client')

/** What may go ahead: removals whose outcome the mount predicted (both reply with the parent's attributes). */
export type AheadOp = 'unlink' | 'rmdir'

export type UnlinkOutcome = { ok: true; reply: MetaReplies[AheadOp] } | { ok: false; error: unknown }

export class UnlinkPipeline implements MetaApi {
  /** Unlinks in flight, each with what follows its answer; they never reject. */
  private readonly inflight = new Set<Promise<void>>()

  constructor(
    private readonly meta: MetaApi,
    readonly window: number,
  ) {
    if (!(window >= 1)) throw new RangeError(`unlink window must be at least 1, got ${window}`)
  }

  /** MetaApi: waits for the unlinks sent before this call, then makes it. */
  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>, opts?: { deadlineMs?: number }): Promise<MetaReplies[Op]> {
    if (this.inflight.size) await this.settled()
    return this.meta.call(op, body, opts)
  }

  /** Resolves once every unlink sent so far has settled (fsync, fsyncdir, unmount). */
  async settled(): Promise<void> {
    await Promise.all([...this.inflight])
  }

  /**
   * Sends `op` (unlink or rmdir) of `name` in `parent` and resolves once it
   * is in flight (after a slot frees when `window` are). `after` hears its
   * outcome; it must not throw (a throw is logged).
   */
  async send(op: AheadOp, body: { parent: number; name: string }, after: (outcome: UnlinkOutcome) => void): Promise<void> {
    while (this.inflight.size >= this.window) await Promise.race(this.inflight)
    const p: Promise<void> = this.meta
      .call(op, body)
      .then(
        (reply) => after({ ok: true, reply }),
        (error: unknown) => after({ ok: false, error }),
      )
      .catch((err: unknown) => log.error(`handling an ${op} outcome failed`, err))
      .finally(() => this.inflight.delete(p))
    this.inflight.add(p)
  }
}
