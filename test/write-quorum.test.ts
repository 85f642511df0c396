/**
 * Write quorum (issue 7, "Write quorum"; docs/data-node.md#write-quorum): kill -9
 * one of 3 nodes (R=2) while a loop writes and fsyncs 64 files of 8 MiB through
 * a mount. At every fsync return, every chunk of the file is held by
 * min(R, live) nodes, asked directly with the `has` node command (not meta's
 * replica table); afterwards every file reads back intact through a fresh mount.
 */
import { createHash, randomBytes } from 'node:crypto'
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import type { NodeCommandReplies } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { MiB } from './helpers/proc'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const FILES = 64
const SIZE = 8 * MiB
const R = 2

t.test('kill -9 of one node during fsync loop: every fsync returns with min(R, live) real copies', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: R })
  const m = await mountCluster(t, c)
  const meta = await c.metaClient({ deadlineMs: 20_000 })
  // node commands are meta's to send: ask as meta
  const nc = await c.connect('meta')
  const subj = subjects(c.cluster)
  const alive = new Map(c.nodes.map((n) => [String(n.ready.id), n]))
  const victim = c.nodes[1]!
  const victimId = String(victim.ready.id)

  async function holders(hash: string): Promise<number> {
    let n = 0
    for (const id of alive.keys()) {
      const r = await request<NodeCommandReplies['has']>(nc, subj.nodeCmd(id), { op: 'has', hashes: [hash] }, { timeoutMs: 2000, deadlineMs: 5000 })
      if (r.present.includes(hash)) n++
    }
    return n
  }

  const sums: string[] = []
  const short: string[] = []
  for (let i = 0; i < FILES; i++) {
    const data = randomBytes(SIZE)
    sums.push(sha(data))
    const name = `f${i}`
    const fh = await open(join(m.dir, name), 'w')
    if (i === 6) {
      // mid-write of this file, before its fsync: its first chunk is full and
      // uploading (some copies in flight to the victim) when the victim dies
      const half = SIZE / 2 + 4096
      await fh.write(data.subarray(0, half))
      alive.delete(victimId)
      await victim.kill()
      await fh.write(data.subarray(half), 0, SIZE - half, half)
    } else {
      await fh.write(data)
    }
    await fh.sync()
    // fsync returned: count the copies on the nodes right now
    const want = Math.min(R, alive.size)
    const { attr } = await meta.call('lookup', { parent: 1, name })
    const { chunks } = await meta.call('chunks', { ino: attr.ino })
    for (const ch of chunks) {
      if (!ch.hash) continue
      const have = await holders(ch.hash)
      if (have < want) short.push(`${name} chunk ${ch.idx}: ${have} of ${want} copies`)
    }
    await fh.close()
  }
  t.same(short, [], 'every chunk had min(R, live) copies on the nodes when fsync returned')

  // a fresh mount has a cold cache: the bytes come from the surviving nodes
  await m.unmount()
  const m2 = await mountCluster(t, c)
  let bad = 0
  for (let i = 0; i < FILES; i++) if (sha(await readFile(join(m2.dir, `f${i}`))) !== sums[i]) bad++
  t.equal(bad, 0, `all ${FILES} files read back intact after the kill`)
})
