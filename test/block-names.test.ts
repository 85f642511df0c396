/**
 * Block names by BLAKE3 or SHA-256 (common/block-hash.ts): the hashes against
 * published vectors; real nodes accept a body named either way and refuse
 * one named neither; a client names with BLAKE3 only while every live node
 * lists it, so in a cluster with a node of an older release
 * (BERTH_FAKE_BLOCK_HASHES=sha256: it accepts and lists SHA-256 only) blocks
 * are named by SHA-256, and a BLAKE3-named block placed on that node is
 * placed around it instead of failing the write; once the node runs this
 * release, new blocks are named by BLAKE3. Scrub's check (`verify`) keeps
 * copies of either name, and a PUT over a copy gone bad on disk replaces it.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { request as httpRequest } from 'undici'
import { BlockClient } from '../common/block-client'
import { BlockNameCheck, blockName, namesBlock } from '../common/block-hash'
import type { NodeCommandReplies } from '../common/protocol'
import { request, subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'
import { blockPath, holders } from './helpers/lifecycle'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

t.test('the hashes give the published digests, and a check accepts either name', async (t) => {
  // BLAKE3's and FIPS 180-2's test vectors for "abc" and the empty input
  t.equal(blockName(Buffer.from('abc'), 'blake3'), '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85')
  t.equal(blockName(Buffer.alloc(0), 'blake3'), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
  t.equal(blockName(Buffer.from('abc'), 'sha256'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  // more than one BLAKE3 chunk (1 KiB) and tree level: its SIMD paths
  const big = Buffer.alloc(4 * 1024 * 1024 + 3)
  for (let i = 0; i < big.length; i++) big[i] = i % 251
  const inside = Buffer.concat([Buffer.from('xx'), big, Buffer.from('yy')])
  const view = new Uint8Array(inside.buffer, inside.byteOffset + 2, big.length)
  t.equal(blockName(view, 'blake3'), blockName(big, 'blake3'), 'a Uint8Array view of other memory: its own bytes only')
  t.equal(blockName(view, 'sha256'), blockName(big, 'sha256'))
  t.not(blockName(big, 'blake3'), blockName(big.subarray(1), 'blake3'))

  const check = new BlockNameCheck()
  const data = randomBytes(100_000)
  t.equal(check.match(blockName(data, 'blake3'), data), 'blake3')
  t.equal(check.match(blockName(data, 'sha256'), data), 'sha256')
  t.equal(check.match(blockName(data, 'blake3'), data), 'blake3', 'after a SHA-256 match, BLAKE3 names still match')
  t.equal(check.match(blockName(data, 'sha256'), data.subarray(1)), null, 'other bytes: no name matches')
  t.equal(check.match('0'.repeat(64), data), null)
  const older = new BlockNameCheck(['sha256'])
  t.equal(older.match(blockName(data, 'blake3'), data), null, 'a SHA-256-only check refuses a BLAKE3 name')
  t.equal(older.match(blockName(data, 'sha256'), data), 'sha256')
  t.ok(namesBlock(blockName(data, 'sha256'), data) && namesBlock(blockName(data, 'blake3'), data))
  t.notOk(namesBlock(blockName(data, 'blake3'), Buffer.concat([data, Buffer.alloc(1)])))
})

t.test('a cluster with a node of an older release names by SHA-256; once it is upgraded, by BLAKE3', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const old = await c.startNode({ env: { BERTH_FAKE_BLOCK_HASHES: 'sha256' } })
  const oldId = String(old.ready.id)
  const nodes = [...c.nodes, old].map((n) => ({ id: String(n.ready.id), url: String(n.ready.url) }))
  const nc = await c.connect('client')
  const cmd = await c.connect('meta') // node commands are meta's to send
  const subj = subjects(c.cluster)
  const bc = new BlockClient(nc, { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 10_000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < 3; i++) await sleep(100)
  t.equal(bc.liveNodes().size, 3, 'the client hears all three nodes')
  // the seeded or placed peers count as SHA-256-only until their heartbeat says otherwise
  for (let i = 0; i < 50 && bc.naming() !== 'sha256'; i++) await sleep(100)
  t.equal(bc.naming(), 'sha256', 'one live node lists SHA-256 only: new blocks are named by SHA-256')

  const put = (url: string, name: string, body: Buffer) =>
    httpRequest(`${url}/v1/blocks/${name}`, { method: 'PUT', body, headers: { authorization: `Bearer ${c.secret}` } }).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }))
  const body = randomBytes(300_000)
  const [n0, , n2] = nodes
  t.equal((await put(n0!.url, blockName(body, 'blake3'), body)).status, 200, 'a node of this release takes a BLAKE3 name')
  t.equal((await put(n0!.url, blockName(body, 'sha256'), body)).status, 200, 'and a SHA-256 name')
  const neither = await put(n0!.url, blockName(body.subarray(1), 'blake3'), body)
  t.equal(neither.status, 400, 'a name by neither is refused')
  t.match(neither.text, /EHASH/)
  t.equal((await put(n2!.url, blockName(body, 'blake3'), body)).status, 400, 'the older node refuses a BLAKE3 name (EHASH)')
  t.equal((await put(n2!.url, blockName(body, 'sha256'), body)).status, 200, 'and takes a SHA-256 one')

  const named = await bc.put(randomBytes(200_000))
  const viaClient = named.hash
  t.equal(named.nodes.length, 2, 'stored twice')

  // a block named by BLAKE3 just before the client heard of the older node:
  // a copy placed on it is refused and placed on another node; the write holds
  let onOld = 0
  for (let i = 0; i < 12; i++) {
    const data = randomBytes(150_000 + i)
    const r = await bc.put(data, blockName(data, 'blake3'))
    t.equal(r.nodes.length, 2, `block ${i}: two copies`)
    if (r.nodes.includes(oldId)) onOld++
    for (const dir of holders(c, r.hash)) if (!namesBlock(r.hash, readFileSync(blockPath(dir, r.hash)))) t.fail(`block ${i}: a bad copy in ${dir}`)
  }
  t.equal(onOld, 0, 'no BLAKE3-named copy on the older node')
  const metrics = await httpRequest(`${n2!.url}/metrics`, { headers: { authorization: `Bearer ${c.secret}` } }).then((r) => r.body.text())
  const refused = Number(/berth_node_http_requests_total\{route="blocks",method="PUT",status="400"\} (\d+)/.exec(metrics)?.[1] ?? 0)
  t.ok(refused > 1, `the older node was placed on and refused (${refused - 1} times besides the direct PUT): the placing around was exercised`)

  // every copy passes a node's own check (what scrub runs), under either name
  for (const n of nodes.slice(0, 2)) {
    const v = await request<NodeCommandReplies['verify']>(cmd, subj.nodeCmd(n.id), { op: 'verify', hashes: [blockName(body, 'blake3'), blockName(body, 'sha256')] })
    t.match(v, n.id === n0!.id ? { bad: [], missing: [] } : { bad: [], missing: [blockName(body, 'blake3'), blockName(body, 'sha256')] }, `${n.id}: both copies good`)
  }
  // a PUT of a block whose stored copy went bad on disk replaces it, under either name
  const n0dir = join(c.dir, 'node0')
  for (const hash of ['blake3', 'sha256'] as const) {
    const name = blockName(body, hash)
    const file = blockPath(n0dir, name)
    const damaged = readFileSync(file)
    damaged[1000] = damaged[1000]! ^ 0xff
    writeFileSync(file, damaged)
    t.equal((await put(n0!.url, name, body)).status, 200, `${hash}: the PUT over a corrupt copy is stored`)
    t.ok(readFileSync(blockPath(n0dir, name)).equals(body), `${hash}: the copy on disk is the uploaded bytes again`)
    const before = statSync(file).ino
    t.equal((await put(n0!.url, name, body)).status, 200, `${hash}: a PUT over a good copy`)
    t.equal(statSync(file).ino, before, `${hash}: keeps it (deduplicated, not rewritten)`)
  }
  t.equal(holders(c, viaClient).length, 2, 'the SHA-256-named block is on disk twice')
  t.ok(namesBlock(viaClient, await bc.get(viaClient, named.nodes)), 'and reads back verified')

  // the older node is upgraded: restarted from its folder without the fake
  await old.stop()
  const upgraded = await c.startNode({ dir: join(c.dir, 'node2') })
  t.equal(String(upgraded.ready.id), oldId, 'the same node, restarted')
  for (let i = 0; i < 100 && bc.naming() !== 'blake3'; i++) await sleep(100)
  t.equal(bc.naming(), 'blake3', 'every live node lists BLAKE3: new blocks are named by it')
  const data = randomBytes(200_000)
  const after = await bc.put(data)
  t.equal(after.hash, blockName(data, 'blake3'), 'named by BLAKE3')
  t.ok((await bc.get(viaClient, named.nodes)).length === 200_000, 'the SHA-256-named block still reads')
  const v = await request<NodeCommandReplies['verify']>(cmd, subj.nodeCmd(oldId), { op: 'verify', hashes: [blockName(body, 'sha256')] })
  t.match(v, { bad: [], missing: [] }, 'the upgraded node keeps its SHA-256-named copy')

  // a mount names by BLAKE3 from its first write: meta's node list (the
  // hello's) says which names each node accepts, before any heartbeat is heard
  const meta = await c.metaClient()
  let status = await meta.call('status', {})
  for (let i = 0; i < 50 && !status.nodes.every((n) => !n.alive || n.blockHashes?.includes('blake3')); i++) {
    await sleep(100)
    status = await meta.call('status', {})
  }
  const fresh = new BlockClient(nc, { cluster: c.cluster, token: c.secret, replicas: 2, deadlineMs: 10_000 })
  t.teardown(() => fresh.close())
  fresh.seed(status.nodes)
  t.equal(fresh.naming(), 'blake3', 'a client seeded from meta names by BLAKE3 before its first heartbeat')
  fresh.seed([{ id: 'n-older', url: 'http://127.0.0.1:1', state: 'up', alive: true }])
  t.equal(fresh.naming(), 'sha256', 'a node meta lists without blockHashes (an older release): SHA-256')
})
