/**
 * Data node failures: a kill -9 of one node leaves every R=2 block readable
 * through BlockClient failover (hash verified); a restarted node keeps its id
 * and blocks; a reader fails over past a copy corrupted on disk, and scrub drops
 * it; SIGTERM exits 0.
 */
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import t from 'tap'
import { request as httpRequest } from 'undici'
import { BlockClient } from '../common/block-client'
import type { BerthError } from '../common/errors'
import { join } from 'node:path'
import type { Test } from 'tap'
import { startCluster, type TestCluster } from './helpers/cluster'
import { stderrWhen } from './helpers/lifecycle'
import { namesBlock } from '../common/block-hash'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function head(url: string, hash: string, token: string): Promise<number> {
  const res = await httpRequest(`${url}/v1/blocks/${hash}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` } })
  await res.body.dump()
  return res.statusCode
}

async function client(t: Test, c: TestCluster): Promise<BlockClient> {
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 10_000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < c.nodes.length; i++) await sleep(100)
  return bc
}

t.test('kill -9 of one node: every block still readable', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const bc = await client(t, c)
  t.equal(bc.liveNodes().size, 3)
  const written: Array<{ data: Buffer; hash: string; nodes: string[] }> = []
  for (let i = 0; i < 20; i++) {
    const data = randomBytes(64 * 1024 + i)
    const r = await bc.put(data)
    t.equal(r.nodes.length, 2, `block ${i} on 2 nodes`)
    written.push({ data, ...r })
  }
  // Kill a node that holds blocks (every node does with 20 blocks over 3, but be sure).
  const victimIdx = c.nodes.findIndex((n) => written.some((w) => w.nodes.includes(String(n.ready.id))))
  const victim = c.nodes[victimIdx]!
  const victimId = String(victim.ready.id)
  await victim.kill()
  const affected = written.filter((w) => w.nodes.includes(victimId))
  t.ok(affected.length > 0, `${affected.length} blocks had a replica on the killed node`)
  for (const w of written) {
    const got = await bc.get(w.hash, w.nodes)
    t.ok(namesBlock(w.hash, got), 'hash verified')
    if (!got.equals(w.data)) t.fail(`block ${w.hash} differs`)
  }
  // Victim listed first for every affected block: failover must be silent.
  for (const w of affected) {
    const order = [victimId, ...w.nodes.filter((n) => n !== victimId)]
    t.ok((await bc.get(w.hash, order)).equals(w.data), 'failover past the dead node')
  }
  const after = await bc.put(randomBytes(10_000))
  t.ok(after.nodes.length >= 1, 'writes still succeed')
  t.notOk(after.nodes.includes(victimId), 'not stored on the dead node')
})

t.test('no replica can serve: EIO', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const bc = await client(t, c)
  await t.rejects(bc.get(sha(Buffer.from('never stored')), [String(c.nodes[0]!.ready.id)]), { code: 'EIO' })
})

t.test('a node gone mid-put: a put that runs out of time says so, not that a disk is full', async (t) => {
  // One of two nodes dies while the client still counts it live (7 s), so a
  // put wants two copies: the chain stores one, the dead node refuses, and
  // placement, with both excluded, answers ENOSPC ("nobody left to place
  // on"). That is no node out of space: a put that ends on it must time out.
  const c = await startCluster(t, { nodes: 2 })
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 3000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < 2; i++) await sleep(100)
  await c.nodes[0]!.kill()
  const err = await bc.put(randomBytes(10_000)).then(
    () => null,
    (e: unknown) => e as BerthError,
  )
  t.ok(err, 'the put fails within its 3 s deadline (the dead node still counts as live)')
  t.not(err?.code, 'ENOSPC', `not ENOSPC: ${err?.code} ${err?.message}`)
  t.equal(err?.code, 'ETIMEDOUT', 'a timeout')
})

t.test('restart keeps node id and blocks; SIGTERM exits 0', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const bc = await client(t, c)
  const node = c.nodes[0]!
  const data = randomBytes(50_000)
  const { hash } = await bc.put(data)
  await node.stop()
  t.equal(node.child.exitCode, 0, 'clean exit on SIGTERM')
  const again = await c.startNode({ dir: join(c.dir, 'node0') })
  t.equal(again.ready.id, node.ready.id, 'same id from DIR/node-id')
  t.equal(await head(String(again.ready.url), hash, c.secret), 200, 'block still there')
  const metrics = await httpRequest(`${String(again.ready.url)}/metrics`, { headers: { authorization: `Bearer ${c.secret}` } })
  t.match(await metrics.body.text(), /berth_node_blocks_stored 1\b/, 'usage counted at start')
})

t.test('a replica corrupted on disk: the reader gets the good bytes from the other one', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const bc = await client(t, c)
  const data = randomBytes(300_000)
  const w = await bc.put(data)
  t.equal(w.nodes.length, 2)
  const firstIdx = c.nodes.findIndex((n) => String(n.ready.id) === w.nodes[0])
  const path = join(c.dir, `node${firstIdx}`, 'blocks', w.hash.slice(0, 2), w.hash.slice(2, 4), w.hash)
  writeFileSync(path, Buffer.concat([data.subarray(0, 1000), Buffer.from('bit rot'), data.subarray(1007)]))
  // the corrupt replica is asked first; its bytes fail the hash check
  const got = await bc.get(w.hash, w.nodes)
  t.ok(got.equals(data), 'the bytes that were written, from the healthy replica')
})

t.test('scrub drops a corrupt copy', async (t) => {
  const c = await startCluster(t, { nodes: 1, nodeArgs: ['--scrub-interval-ms', '20'] })
  const bc = await client(t, c)
  const node = c.nodes[0]!
  const good = randomBytes(20_000)
  const bad = randomBytes(20_000)
  const g = await bc.put(good)
  const b = await bc.put(bad)
  const path = join(c.dir, 'node0', 'blocks', b.hash.slice(0, 2), b.hash.slice(2, 4), b.hash)
  writeFileSync(path, Buffer.concat([bad.subarray(0, 100), Buffer.from('bit rot'), bad.subarray(107)]))
  let status = 200
  for (let i = 0; i < 100 && status === 200; i++) {
    await sleep(100)
    status = await head(String(node.ready.url), b.hash, c.secret)
  }
  t.equal(status, 404, 'corrupt copy deleted')
  t.equal(await head(String(node.ready.url), g.hash, c.secret), 200, 'good block kept')
  t.match(await stderrWhen(node, /corrupt/), /corrupt/, 'logged')
})
