/**
 * Direct commands to one node on `<cluster>.node.<id>.cmd` (from meta's GC,
 * reconciliation and repair, and from fsck): clock, delete (conditional),
 * replicate, inventory, has, verify, drain, refuse. Every body is validated; a bad one gets
 * an EBADMSG reply and the node keeps serving.
 */
import type { NatsConnection, Subscription } from 'nats'
import type { NodeHttp } from '../common/block-client'
import { BerthError } from '../common/errors'
import type { Logger } from '../common/log'
import { nodeCommand, type NodeCommandReplies } from '../common/protocol'
import { parseBody, serve } from '../common/wire'
import type { BlockStore } from './block-store'

const REPLICATE_TIMEOUT_MS = 60_000

export interface CommandDeps {
  nc: NatsConnection
  subject: string
  store: BlockStore
  http: NodeHttp
  log: Logger
  /** Re-hashes one copy now; 'bad' ones are already in trash (node/scrub.ts). */
  verify(hash: string): Promise<'good' | 'bad' | 'missing'>
  /** Operator drain on or off; returns whether the node now drains. */
  drain?(on: boolean): boolean
  /** Meta refuses this node's protocol: log the reason and stop. */
  refuse?(reason: string): void
  clock?: () => number
}

export function serveCommands(deps: CommandDeps): Subscription {
  const { store } = deps
  const clock = deps.clock ?? Date.now
  return serve(deps.nc, deps.subject, { onError: (e) => deps.log.warn('command', e) }, async (msg) => {
    const cmd = parseBody(nodeCommand, msg.data)
    switch (cmd.op) {
      case 'clock':
        return { now: clock() } satisfies NodeCommandReplies['clock']
      case 'delete': {
        let deleted = 0
        const kept: string[] = []
        for (const h of cmd.hashes) {
          const r = await store.delete(h, cmd.putBefore)
          if (r === 'deleted') deleted++
          else if (r === 'kept') kept.push(h)
        }
        if (kept.length) deps.log.info(`delete: kept ${kept.length} copy(ies) PUT since the delete was decided`)
        return { deleted, kept } satisfies NodeCommandReplies['delete']
      }
      case 'has': {
        const present: string[] = []
        for (const h of cmd.hashes) if (await store.has(h)) present.push(h)
        return { present } satisfies NodeCommandReplies['has']
      }
      case 'inventory': {
        // the token is taken before the listing: every age in it is at least as old
        const now = clock()
        return { ...(await store.list(cmd.after, cmd.limit)), now } satisfies NodeCommandReplies['inventory']
      }
      case 'verify': {
        const bad: string[] = []
        const missing: string[] = []
        for (const h of cmd.hashes) {
          const r = await deps.verify(h)
          if (r === 'bad') bad.push(h)
          else if (r === 'missing') missing.push(h)
        }
        return { bad, missing } satisfies NodeCommandReplies['verify']
      }
      case 'drain': {
        if (!deps.drain) throw new BerthError('ENOSYS', 'this node cannot drain')
        return { draining: deps.drain(cmd.on) } satisfies NodeCommandReplies['drain']
      }
      case 'refuse': {
        deps.refuse?.(cmd.reason)
        return { ok: true } satisfies NodeCommandReplies['refuse']
      }
      case 'replicate': {
        const size = await store.stat(cmd.hash)
        if (size === null) throw new BerthError('ENOENT', `block ${cmd.hash} not stored on this node`)
        const reply = await deps.http.put(cmd.to, cmd.hash, await store.get(cmd.hash), size, [], REPLICATE_TIMEOUT_MS)
        if (!reply.stored.includes(cmd.to.id)) throw new BerthError('EIO', `${cmd.to.id} did not report the block durable`)
        return { ok: true } satisfies NodeCommandReplies['replicate']
      }
    }
  })
}
