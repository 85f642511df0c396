/**
 * Block HTTP API and BlockClient against real data nodes: placed writes land on
 * exactly R nodes, every replica serves identical bytes, ranges, and refusals
 * (hash mismatch, no/wrong token, oversize, bad names) leave nothing behind.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { request as httpRequest } from 'undici'
import { blockName } from '../common/block-hash'
import { BlockClient } from '../common/block-client'
import { request, subjects } from '../common/wire'
import type { Test } from 'tap'
import { startCluster, type TestCluster } from './helpers/cluster'

const MAX_BLOCK = 1024 * 1024
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

async function http(url: string, opts: { method?: 'GET' | 'HEAD' | 'PUT'; token?: string | null; body?: Buffer | Readable; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  const res = await httpRequest(url, { method: opts.method ?? 'GET', headers, body: opts.body })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

/** Every file under a node's block folder and temp folder. */
function files(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    if (!existsSync(d)) return
    for (const e of readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk(join(d, e.name)) : out.push(e.name))
  }
  walk(join(dir, 'blocks'))
  walk(join(dir, 'tmp'))
  return out
}

async function liveClient(t: Test, c: TestCluster, replicas = 2): Promise<BlockClient> {
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas, deadlineMs: 10_000 })
  t.teardown(() => bc.close())
  await bc.start()
  for (let i = 0; i < 100 && bc.liveNodes().size < c.nodes.length; i++) await new Promise((r) => setTimeout(r, 100))
  t.equal(bc.liveNodes().size, c.nodes.length, 'client sees every node through heartbeats')
  return bc
}

t.test('data plane', async (t) => {
  const c = await startCluster(t, { nodes: 3, nodeArgs: ['--max-block', String(MAX_BLOCK)] })
  const nodes = c.nodes.map((n, i) => ({ id: String(n.ready.id), url: String(n.ready.url), dir: join(c.dir, `node${i}`) }))
  const bc = await liveClient(t, c)
  const url = (n: { url: string }, hash: string) => `${n.url}/v1/blocks/${hash}`

  t.test('a placed PUT lands on exactly R=2 nodes, each serving identical bytes', async (t) => {
    const data = randomBytes(300_000)
    const { hash, nodes: holders } = await bc.put(data)
    t.equal(hash, blockName(data, 'blake3'), 'named by BLAKE3: every node lists it')
    t.equal(holders.length, 2)
    t.equal(new Set(holders).size, 2, 'two distinct nodes')
    const present: string[] = []
    for (const n of nodes) {
      const head = await http(url(n, hash), { method: 'HEAD', token: c.secret })
      if (head.status === 200) {
        present.push(n.id)
        t.equal(head.headers['content-length'], String(data.length))
        const got = await http(url(n, hash), { token: c.secret })
        t.equal(got.status, 200)
        t.ok(got.body.equals(data), `node ${n.id} returns identical bytes`)
      } else {
        t.equal(head.status, 404)
      }
    }
    t.same(present.sort(), [...holders].sort(), 'exactly the reported holders have it')
    t.ok((await bc.get(hash, holders)).equals(data), 'BlockClient.get returns the block')
    t.ok((await bc.get(hash, [])).equals(data), 'found without hints by asking every live node')
    t.same(await bc.get(hash, holders, { offset: 1000, length: 10 }), data.subarray(1000, 1010), 'range through the client')
  })

  t.test('a whole-block get skips a copy whose bytes do not hash to its name', async (t) => {
    for (const size of [100_000, 600_000]) {
      const data = randomBytes(size)
      const { hash, nodes: holders } = await bc.put(data)
      const [first, second] = holders.map((id) => nodes.find((n) => n.id === id)!)
      const file = (n: { dir: string }) => join(n.dir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
      const flipped = Buffer.from(data)
      flipped[size >> 1] ^= 0xff
      writeFileSync(file(first!), flipped)
      t.ok((await bc.get(hash, [first!.id, second!.id])).equals(data), `${size} bytes: the good copy is returned, the bad one skipped`)
      writeFileSync(file(second!), flipped)
      await t.rejects(bc.get(hash, [first!.id, second!.id]), { code: 'EIO' }, `${size} bytes: every copy bad is EIO, never the bad bytes`)
    }
  })

  t.test('a whole-block get with the writer\'s sums checks every piece; sums recorded wrong do not fail a good copy', async (t) => {
    const data = randomBytes(600_000) // 10 pieces, the last one short
    const { hash, nodes: holders, sums } = await bc.put(data)
    const [first, second] = holders.map((id) => nodes.find((n) => n.id === id)!)
    const file = (n: { dir: string }) => join(n.dir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)
    t.ok((await bc.get(hash, [first!.id, second!.id], { sums })).equals(data), 'read whole, checked by its sums')
    const wrongSums = Buffer.from(sums)
    wrongSums[5] ^= 0xff
    t.ok((await bc.get(hash, [first!.id, second!.id], { sums: wrongSums })).equals(data), 'wrong sums: the bytes still hash to the name, so they are returned')
    const flipped = Buffer.from(data)
    flipped[599_000] ^= 0x01 // in the short last piece
    writeFileSync(file(first!), flipped)
    t.ok((await bc.get(hash, [first!.id, second!.id], { sums })).equals(data), 'a flipped bit: that copy is skipped, the good one returned')
    writeFileSync(file(first!), data.subarray(0, 9 * 65536)) // cut at a piece boundary: the last piece is gone
    t.ok((await bc.get(hash, [first!.id, second!.id], { sums })).equals(data), 'a copy cut at a piece boundary is skipped')
    writeFileSync(file(second!), flipped)
    await t.rejects(bc.get(hash, [first!.id, second!.id], { sums }), { code: 'EIO' }, 'every copy bad: EIO, never the bad bytes')
  })

  t.test('a second PUT of the same block is deduplicated', async (t) => {
    const data = randomBytes(1000)
    const hash = sha(data)
    const n = nodes[0]!
    for (let i = 0; i < 2; i++) {
      const r = await http(url(n, hash), { method: 'PUT', token: c.secret, body: data })
      t.equal(r.status, 200)
      t.same(JSON.parse(r.body.toString()), { hash, stored: [n.id] })
    }
    t.equal(files(n.dir).filter((f) => f === hash).length, 1)
    t.equal(files(n.dir).filter((f) => f.length !== 64).length, 0, 'no temp files left')
  })

  t.test('chain header replicates to the listed nodes', async (t) => {
    const data = randomBytes(5000)
    const hash = sha(data)
    const [a, b, d] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]
    const r = await http(url(a, hash), { method: 'PUT', token: c.secret, body: data, headers: { 'x-berth-chain': `${b.id}=${b.url},${d.id}=${d.url}` } })
    t.equal(r.status, 200)
    t.same(JSON.parse(r.body.toString()).stored, [a.id, b.id, d.id], 'durable on all three, receiver first')
    for (const n of nodes) t.equal((await http(url(n, hash), { method: 'HEAD', token: c.secret })).status, 200)
    const ghost = await http(url(a, sha(Buffer.from('x'))), { method: 'PUT', token: c.secret, body: Buffer.from('x'), headers: { 'x-berth-chain': `ghost=http://127.0.0.1:1,${b.id}=${b.url}` } })
    t.equal(ghost.status, 400, 'a chain naming a node unknown to the heartbeats is refused (data-plane-hardening.test.ts)')
    const bad = await http(url(a, hash), { method: 'PUT', token: c.secret, body: data, headers: { 'x-berth-chain': 'not a chain' } })
    t.equal(bad.status, 400)
  })

  t.test('a body that does not hash to its name is refused and nothing is stored', async (t) => {
    const data = randomBytes(200_000)
    const wrong = sha(Buffer.from('something else'))
    const n = nodes[1]!
    const r = await http(url(n, wrong), { method: 'PUT', token: c.secret, body: data })
    t.equal(r.status, 400)
    t.match(r.body.toString(), /hashes to/)
    t.equal((await http(url(n, wrong), { method: 'HEAD', token: c.secret })).status, 404)
    t.equal((await http(url(n, sha(data)), { method: 'HEAD', token: c.secret })).status, 404)
    t.notOk(files(n.dir).some((f) => f === wrong || f === sha(data) || f.length !== 64), 'no block and no temp file in the node dir')
    await t.rejects(bc.put(data, wrong), { code: 'EHASH' }, 'the client surfaces the mismatch')
  })

  t.test('Range GET', async (t) => {
    const data = randomBytes(10_000)
    const { hash, nodes: holders } = await bc.put(data)
    const n = nodes.find((x) => x.id === holders[0])!
    const r = await http(url(n, hash), { token: c.secret, headers: { range: 'bytes=100-199' } })
    t.equal(r.status, 206)
    t.equal(r.headers['content-range'], `bytes 100-199/${data.length}`)
    t.ok(r.body.equals(data.subarray(100, 200)))
    const tail = await http(url(n, hash), { token: c.secret, headers: { range: 'bytes=-10' } })
    t.ok(tail.body.equals(data.subarray(data.length - 10)))
    const open = await http(url(n, hash), { token: c.secret, headers: { range: 'bytes=9990-' } })
    t.ok(open.body.equals(data.subarray(9990)))
    const past = await http(url(n, hash), { token: c.secret, headers: { range: 'bytes=10000-10010' } })
    t.equal(past.status, 416)
    t.equal(past.headers['content-range'], `bytes */${data.length}`)
    t.equal((await http(url(n, hash), { token: c.secret, headers: { range: 'bytes=abc' } })).status, 416)
  })

  t.test('no token, wrong token, bad names, oversize', async (t) => {
    const data = randomBytes(100)
    const hash = sha(data)
    const n = nodes[2]!
    t.equal((await http(url(n, hash), { method: 'PUT', body: data })).status, 401, 'PUT without token')
    t.equal((await http(url(n, hash), { method: 'PUT', token: 'wrong', body: data })).status, 401, 'PUT with wrong token')
    t.equal((await http(url(n, hash), { method: 'PUT', token: c.secret + 'x', body: data })).status, 401, 'token with a suffix')
    t.equal((await http(url(n, hash))).status, 401, 'GET without token')
    t.equal((await http(`${n.url}/metrics`)).status, 401, 'metrics need the token')
    t.equal((await http(url(n, hash), { method: 'HEAD' })).status, 401)
    t.equal((await http(url(n, hash), { method: 'HEAD', token: c.secret })).status, 404, 'nothing stored by refused PUTs')
    t.equal((await http(`${n.url}/healthz`)).status, 200, 'healthz is open')
    t.same(JSON.parse((await http(`${n.url}/healthz`)).body.toString()), { id: n.id, state: 'up' })

    t.equal((await http(`${n.url}/v1/blocks/${hash.toUpperCase()}`, { method: 'PUT', token: c.secret, body: data })).status, 400, 'upper case name')
    t.equal((await http(`${n.url}/v1/blocks/..%2F..%2Fetc%2Fpasswd`, { token: c.secret })).status, 400, 'path tricks')
    t.equal((await http(`${n.url}/v1/blocks/${hash}x`, { token: c.secret })).status, 400)

    const big = randomBytes(MAX_BLOCK + 1)
    // the node answers 413 and closes without reading the rest of the body, so
    // an uploader still writing it may see the connection go (EPIPE, ECONNRESET)
    // before it reads the answer: either way the upload was refused
    const refused = (res: Promise<{ status: number }>) =>
      res.then(
        (r) => r.status,
        (err: { code?: string }) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' || err.code === 'UND_ERR_SOCKET' ? 413 : err.code),
      )
    t.equal(await refused(http(url(n, sha(big)), { method: 'PUT', token: c.secret, body: big })), 413, 'declared oversize')
    async function* chunked() {
      for (let off = 0; off < big.length; off += 65536) yield big.subarray(off, off + 65536)
    }
    t.equal(await refused(http(url(n, sha(big)), { method: 'PUT', token: c.secret, body: Readable.from(chunked()) })), 413, 'streamed oversize')
    t.equal((await http(url(n, sha(big)), { method: 'HEAD', token: c.secret })).status, 404)
    t.notOk(files(n.dir).some((f) => f.length !== 64), 'no temp files left')
    await t.rejects(bc.put(big), { code: 'EFBIG' })
    const metrics = await http(`${n.url}/metrics`, { token: c.secret })
    t.match(metrics.body.toString(), /berth_node_http_requests_total\{route="blocks",method="PUT",status="401"\} 3/)
    t.match(metrics.body.toString(), /berth_node_blocks_stored \d+/)
  })

  t.test('node commands: has, inventory, replicate, delete', async (t) => {
    const nc = await c.connect('meta')
    const s = subjects(c.cluster)
    const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
    const blocks = [randomBytes(100), randomBytes(200), randomBytes(300)]
    const hashes = blocks.map(sha)
    for (const blk of blocks) t.equal((await http(url(a, sha(blk)), { method: 'PUT', token: c.secret, body: blk })).status, 200)
    const has = await request<{ present: string[] }>(nc, s.nodeCmd(a.id), { op: 'has', hashes: [...hashes, sha(Buffer.from('nope'))] })
    t.same(has.present.sort(), [...hashes].sort())

    const all: string[] = []
    let after = ''
    for (;;) {
      const page = await request<{ entries: Array<{ hash: string; size: number; age: number }>; more: boolean; now: number }>(nc, s.nodeCmd(a.id), { op: 'inventory', after, limit: 2 })
      t.ok(page.entries.length <= 2)
      t.ok(page.entries.every((e) => e.size >= 0 && e.age >= 0) && page.now > 0, 'entries carry size and age; the page the node clock')
      all.push(...page.entries.map((e) => e.hash))
      if (!page.more) break
      after = page.entries[page.entries.length - 1]!.hash
    }
    t.same(all, [...all].sort(), 'inventory is sorted')
    t.equal(new Set(all).size, all.length, 'no duplicates across pages')
    for (const h of hashes) t.ok(all.includes(h))

    t.same(await request(nc, s.nodeCmd(a.id), { op: 'replicate', hash: hashes[0], to: { id: b.id, url: b.url } }), { ok: true })
    t.equal((await http(url(b, hashes[0]!), { method: 'HEAD', token: c.secret })).status, 200, 'replicated')
    await t.rejects(request(nc, s.nodeCmd(a.id), { op: 'replicate', hash: sha(Buffer.from('nope')), to: { id: b.id, url: b.url } }), { code: 'ENOENT' })

    const { now } = await request<{ now: number }>(nc, s.nodeCmd(a.id), { op: 'clock' })
    t.match(await request(nc, s.nodeCmd(a.id), { op: 'delete', hashes: [hashes[1], sha(Buffer.from('nope'))], putBefore: now + 1 }), { deleted: 1 })
    t.equal((await http(url(a, hashes[1]!), { method: 'HEAD', token: c.secret })).status, 404)
    await t.rejects(request(nc, s.nodeCmd(a.id), { op: 'explode' }), { code: 'EBADMSG' })
    await t.rejects(request(nc, s.nodeCmd(a.id), { op: 'delete', hashes: ['../x'] }), { code: 'EBADMSG' })
  })
})

t.test('GET bodies come from reused buffers (node/http-api.ts ReplyBuffers): 4 MiB bodies at once beside readers that read late or hang up, every body whole and its own', async (t) => {
  // 4 MiB: more than loopback's socket buffers take at once, so a late
  // reader's response is still being written while the others are served;
  // a buffer handed out again before its write completed would show here
  const big = 4 * 1024 * 1024
  const c = await startCluster(t, { nodes: 2, nodeArgs: ['--max-block', String(big)] })
  const bc = await liveClient(t, c, 1)
  const blocks: Array<{ data: Buffer; url: string }> = []
  for (let i = 0; i < 4; i++) {
    const data = randomBytes(big)
    const { hash, nodes: holders } = await bc.put(data)
    const holder = c.nodes.find((n) => String(n.ready.id) === holders[0])!
    blocks.push({ data, url: `${String(holder.ready.url)}/v1/blocks/${hash}` })
  }
  const auth = { authorization: `Bearer ${c.secret}` }
  let wrong = 0
  let served = 0
  for (let round = 0; round < 3; round++) {
    const abandoned = blocks.map(async (b) => {
      const res = await httpRequest(b.url, { headers: auth })
      res.body.destroy()
    })
    const late = await Promise.all(blocks.map((b) => httpRequest(b.url, { headers: auth })))
    const wanted = Array.from({ length: 16 }, (_, i) => blocks[(i + round) % blocks.length]!)
    const got = await Promise.all(wanted.map((b) => http(b.url, { token: c.secret })))
    await Promise.allSettled(abandoned)
    got.forEach((r, i) => {
      served++
      if (r.status !== 200 || !r.body.equals(wanted[i]!.data)) wrong++
    })
    for (const [i, res] of late.entries()) {
      served++
      if (res.statusCode !== 200 || !Buffer.from(await res.body.arrayBuffer()).equals(blocks[i]!.data)) wrong++
    }
  }
  t.equal(served, 60, 'every GET answered')
  t.equal(wrong, 0, 'each body is whole and is its own block')
})
