/** A file's whole chunk map as meta lists it, paged. */
import type { ChunkRef } from '../../common/protocol'
import type { TestCluster } from './cluster'

export async function chunkMap(c: TestCluster, ino: number): Promise<ChunkRef[]> {
  const meta = await c.metaClient()
  const out: ChunkRef[] = []
  for (let from = 0; ; ) {
    const page = await meta.call('chunks', { ino, from, limit: 1000 })
    out.push(...page.chunks)
    if (!page.more || page.chunks.length === 0) return out
    from = page.chunks[page.chunks.length - 1]!.idx + 1
  }
}
