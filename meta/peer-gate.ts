/**
 * Heartbeats of nodes whose protocol meta does not serve (common/compat.ts):
 * such a node never enters the live set (no placement, repair or GC uses
 * it), meta logs why once a minute per node, and tells the node with a
 * `refuse` command so it stops with the same message on its own stderr. An
 * old node that does not know the command answers EBADMSG and keeps
 * running, unused; meta's log says what to upgrade.
 */
import { refusePeer } from '../common/compat'
import type { Logger } from '../common/log'
import type { Heartbeat } from '../common/protocol'
import type { AskNode } from './node-commands'

const LOG_EVERY_MS = 60_000
const TELL_EVERY_MS = 5_000

export class PeerGate {
  private readonly logged = new Map<string, number>()
  private readonly told = new Map<string, number>()

  constructor(
    private readonly ask: AskNode,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when meta serves this node; otherwise handles the refusal and returns false. */
  admit(hb: Heartbeat): boolean {
    const reason = refusePeer('node', `node ${hb.id} (${hb.url})`, hb)
    if (!reason) return true
    const t = this.now()
    if (t - (this.logged.get(hb.id) ?? -Infinity) >= LOG_EVERY_MS) {
      this.logged.set(hb.id, t)
      this.log.error(reason)
    }
    if (t - (this.told.get(hb.id) ?? -Infinity) >= TELL_EVERY_MS) {
      this.told.set(hb.id, t)
      this.ask(hb.id, { op: 'refuse', reason }, 5000).catch((err: unknown) => this.log.debug(`refuse command to node ${hb.id} failed: ${(err as Error).message}`))
    }
    return false
  }
}
