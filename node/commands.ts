/**
 * Direct commands to one node on `<cluster>.node.<id>.cmd` (from meta's repair,
 * GC and rebalance): delete, replicate, inventory, has. Every body is validated;
 * a bad one gets an EBADMSG reply and the node keeps serving.
 */
import type { NatsConnection, Subscription } from 'nats'
import type { NodeHttp } from '../common/block-client'
import { BerthError } from '../common/errors'
import type { Logger } from '../common/log'
import { nodeCommand, type NodeCommandReplies } from '../common/protocol'
import { parseBody, serve } from '../common/wire'
import type { BlockStore } from './block-store'

const REPLICATE_TIMEOUT_MS = 60_000

export function serveCommands(deps: { nc: NatsConnection; subject: string; store: BlockStore; http: NodeHttp; log: Logger }): Subscription {
  const { store } = deps
  return serve(deps.nc, deps.subject, { onError: (e) => deps.log.warn('command', e) }, async (msg) => {
    const cmd = parseBody(nodeCommand, msg.data)
    switch (cmd.op) {
      case 'delete': {
        let deleted = 0
        for (const h of cmd.hashes) if (await store.delete(h)) deleted++
        return { deleted } satisfies NodeCommandReplies['delete']
      }
      case 'has': {
        const present: string[] = []
        for (const h of cmd.hashes) if (await store.has(h)) present.push(h)
        return { present } satisfies NodeCommandReplies['has']
      }
      case 'inventory':
        return (await store.list(cmd.after, cmd.limit)) satisfies NodeCommandReplies['inventory']
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
