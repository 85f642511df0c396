/**
 * End-to-end verified reads (issue 7, "End-to-end verified reads";
 * docs/data-node.md#verified-reads): a replica corrupted or truncated on disk
 * never reaches an application. A 4 KiB read at the damaged offset, through a
 * fresh mount (cold cache), returns the bytes that were written, served by the
 * good replica; the bad copy is reported and repaired (R good copies again,
 * checked on the nodes). When every replica is bad the read fails with EIO,
 * never zeros.
 */
import { randomBytes } from 'node:crypto'
import { open, truncate, writeFile } from 'node:fs/promises'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { request as httpRequest } from 'undici'
import { HEARTBEAT_MS, type ChunkRef, type NodeCommandReplies } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { startCluster, type TestCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { bounded, MiB } from './helpers/proc'
import { namesBlock } from '../common/block-hash'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function blockPath(c: TestCluster, node: string, hash: string): string {
  const i = c.nodes.findIndex((n) => String(n.ready.id) === node)
  return join(c.dir, `node${i}`, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
}

/** 4 KiB at `pos` of the file through the mount (a fresh handle, a non-sequential offset). */
async function read4k(path: string, pos: number): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.alloc(4096)
    const { bytesRead } = await fh.read(buf, 0, 4096, pos)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

t.test('a corrupt or truncated replica: 4 KiB reads return the written bytes, the copy is repaired', async (t) => {
  t.setTimeout(240_000)
  // scrub off: the reader, not the node's background check, must catch the damage
  const c = await startCluster(t, { nodes: 3, replicas: 2, nodeArgs: ['--scrub-interval-ms', '0'] })
  const meta = await c.metaClient()
  const nc = await c.connect('meta')
  const subj = subjects(c.cluster)
  const m1 = await mountCluster(t, c)
  // one damaged copy per file, on the first listed replica in one file and on
  // the second in its twin, so whichever replica the reader asks first, one of
  // the two reads meets the damage
  const names = ['flip0', 'flip1', 'cut0', 'cut1', 'allBad'] as const
  const files = new Map(names.map((n) => [n, randomBytes(4 * MiB)]))
  for (const [name, data] of files) await writeFile(join(m1.dir, name), data)
  await m1.unmount()

  const chunk0 = async (name: string): Promise<ChunkRef> => {
    const { attr } = await meta.call('lookup', { parent: 1, name })
    const { chunks } = await meta.call('chunks', { ino: attr.ino })
    const ref = chunks.find((ch) => ch.idx === 0)
    if (!ref?.hash) throw new Error(`${name}: no block in chunk 0`)
    return ref
  }
  const pos = 2 * MiB + 1000
  const refs = new Map<string, ChunkRef>()
  for (const name of names) refs.set(name, await chunk0(name))
  for (const [name, which] of [['flip0', 0], ['flip1', 1]] as const) {
    const ref = refs.get(name)!
    const path = blockPath(c, ref.nodes[which]!, ref.hash!)
    const bytes = readFileSync(path)
    bytes[pos] = bytes[pos]! ^ 0xff
    writeFileSync(path, bytes)
  }
  for (const [name, which] of [['cut0', 0], ['cut1', 1]] as const) {
    const ref = refs.get(name)!
    await truncate(blockPath(c, ref.nodes[which]!, ref.hash!), 1 * MiB)
  }
  const allBad = refs.get('allBad')!
  for (const n of allBad.nodes) await truncate(blockPath(c, n, allBad.hash!), 1 * MiB)

  const m2 = await mountCluster(t, c)
  // on failure, what the reader and meta said is the first thing to read
  t.teardown(() => {
    if (t.passing()) return
    for (const s of [m2.client, c.meta]) t.comment(s.stderr().slice(-4000))
  })
  // A fresh mount reads from the replicas it has heard heartbeats from; give it
  // one heartbeat round so the damaged copies are among the ones it can ask.
  await sleep(HEARTBEAT_MS + 1000)
  const at = pos - (pos % 4096)
  for (const name of ['flip0', 'flip1', 'cut0', 'cut1'] as const) {
    const got = await read4k(join(m2.dir, name), at)
    t.ok(got.equals(files.get(name)!.subarray(at, at + 4096)), `${name}: the 4 KiB read returns what was written`)
  }
  const r = await bounded(read4k(join(m2.dir, 'allBad'), at), 60_000)
  t.equal(r.code, 'EIO', 'no good replica: EIO, not zeros')

  /** Nodes holding a copy that hashes to its name, asked directly. */
  async function goodCopies(hash: string): Promise<string[]> {
    const good: string[] = []
    for (const n of c.nodes) {
      const id = String(n.ready.id)
      const { present } = await request<NodeCommandReplies['has']>(nc, subj.nodeCmd(id), { op: 'has', hashes: [hash] })
      if (!present.includes(hash)) continue
      const res = await httpRequest(`${String(n.ready.url)}/v1/blocks/${hash}`, { headers: { authorization: `Bearer ${c.secret}` } })
      if (namesBlock(hash, Buffer.from(await res.body.arrayBuffer()))) good.push(id)
    }
    return good
  }
  /** Repaired: R good copies on the nodes, and every replica meta lists is one of them. */
  async function repaired(name: string): Promise<string> {
    const good = await goodCopies(refs.get(name)!.hash!)
    const listed = (await chunk0(name)).nodes
    return good.length >= 2 && listed.length >= 2 && listed.every((n) => good.includes(n)) ? '' : `${name}: good copies on [${good}], meta lists [${listed}]`
  }
  // The reader meets the damage in one file of each pair (the one whose bad
  // copy it asks first) and only that one is reported; the other stays for
  // scrub and reconciliation to find.
  for (const pair of [['flip0', 'flip1'], ['cut0', 'cut1']] as const) {
    let state: string[] = []
    for (let i = 0; i < 120; i++) {
      state = [await repaired(pair[0]), await repaired(pair[1])]
      if (state.includes('')) break
      await sleep(500)
    }
    t.ok(state.includes(''), `${pair.join('/')}: the copy the reader found bad is repaired (${state.join('; ') || 'both whole'})`)
  }
})
