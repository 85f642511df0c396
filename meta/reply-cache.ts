/**
 * Answers a repeated request id with the first answer. Clients retry any call
 * after a lost reply (common/meta-client.ts); without this a retried mkdir
 * would fail with EEXIST and a retried link would count twice. The promise is
 * cached, so a retry that arrives while the first attempt still runs waits for
 * it. Internal failures (not BerthError) are forgotten so a retry runs again.
 */
import { LRUCache } from 'lru-cache'
import { BerthError } from '../common/errors'

export class ReplyCache {
  private readonly cache: LRUCache<string, Promise<object>>

  constructor(opts: { max?: number; ttlMs?: number } = {}) {
    this.cache = new LRUCache({ max: opts.max ?? 50_000, ttl: opts.ttlMs ?? 120_000 })
  }

  run(key: string, fn: () => Promise<object>): Promise<object> {
    const hit = this.cache.get(key)
    if (hit) return hit
    const p = fn()
    this.cache.set(key, p)
    p.catch((err: unknown) => {
      if (!(err instanceof BerthError)) this.cache.delete(key)
    })
    return p
  }
}
