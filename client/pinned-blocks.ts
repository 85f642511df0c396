/**
 * The client's BlockApi: every upload is pinned with meta before its bytes go
 * out, so GC can never delete a block between the upload that (re)creates it
 * and the commit that references it, even when the upload was deduplicated by
 * a node that already held the content (docs/data-node.md#block-lifecycle).
 * Commit drops the pin; `release` drops pins of uploads that will never be
 * committed (batched, fire and forget: a pin left behind ends with the session).
 */
import type { BlockClient, GetOptions } from '../common/block-client'
import { logger } from '../common/log'
import { markNotPinned, type BlockApi, type BlockPut, type MetaApi } from './stores'

const log = logger('client')
const UNPIN_BATCH = 1000

export class PinnedBlocks implements BlockApi {
  private unpins: string[] = []
  private unpinTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly inner: Pick<BlockClient, 'put' | 'get' | 'nameOf'>,
    private readonly meta: MetaApi,
    private readonly session: string,
  ) {}

  async put(data: Uint8Array, hash?: string): Promise<BlockPut> {
    const h = hash ?? this.inner.nameOf(data)
    // a pin that failed was never taken: releasing it would drop another
    // upload's pin of the same content (meta counts them per session)
    await this.meta.call('pin', { session: this.session, hashes: [h] }).catch((err: unknown) => {
      throw markNotPinned(err)
    })
    return this.inner.put(data, h)
  }

  nameOf(data: Uint8Array): string {
    return this.inner.nameOf(data)
  }

  get(hash: string, nodes: string[], opts?: GetOptions): Promise<Buffer> {
    return this.inner.get(hash, nodes, opts)
  }

  release(hashes: string[]): void {
    this.unpins.push(...hashes)
    if (this.unpins.length >= UNPIN_BATCH) void this.sendUnpins()
    else this.unpinTimer ??= setTimeout(() => void this.sendUnpins(), 50)
  }

  /** Sends queued unpins now (also at unmount). */
  async sendUnpins(): Promise<void> {
    if (this.unpinTimer) clearTimeout(this.unpinTimer)
    this.unpinTimer = undefined
    while (this.unpins.length) {
      // one entry per upload given up: meta counts pins per upload
      const hashes = this.unpins.splice(0, UNPIN_BATCH)
      await this.meta.call('unpin', { session: this.session, hashes }).catch((err: unknown) => {
        log.warn(`unpin of ${hashes.length} block(s) failed; they stay pinned until the session ends: ${(err as Error).message}`)
      })
    }
  }
}
