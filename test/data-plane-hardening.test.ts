/**
 * Data plane hardening (issue 7, "Data plane hardening"; docs/data-node.md#limits):
 * a node forwards only to peers it knows from heartbeats (id AND url), caps the
 * PUT bodies it receives at once (503 + Retry-After beyond, nothing lost), keeps
 * its memory bounded under 200 concurrent PUTs, and drops stalled uploads after
 * the body idle timeout so they cannot keep real writes out.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import t from 'tap'
import { request as httpRequest } from 'undici'
import { BlockClient } from '../common/block-client'
import { startCluster } from './helpers/cluster'
import { bounded, MiB, sampleRss } from './helpers/proc'

const sha = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest('hex')

/** The RSS cap of a node with default flags under 200 concurrent 4 MiB PUTs (DEFAULT --max-puts 16). */
const RSS_CAP = 400 * MiB

t.test('chain entries must name a known peer by id and url', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const [a, b] = c.nodes.map((n) => ({ id: String(n.ready.id), url: String(n.ready.url) })) as [{ id: string; url: string }, { id: string; url: string }]
  let trapped = 0
  const trap = createServer((req, res) => {
    trapped++
    req.resume()
    res.end('{}')
  })
  await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => trap.close(() => r())))
  const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}`
  const put = async (chain: string) => {
    const data = randomBytes(10_000)
    const res = await httpRequest(`${a.url}/v1/blocks/${sha(data)}`, { method: 'PUT', body: data, headers: { authorization: `Bearer ${c.secret}`, 'x-berth-chain': chain } })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await put(`ghost=${trapUrl}`), 400, 'unknown id and url: 400')
  t.equal(await put(`${b.id}=${trapUrl}`), 400, 'known id, foreign url: 400')
  t.equal(await put(`ghost=${b.url}`), 400, 'unknown id, known url: 400')
  t.equal(trapped, 0, 'nothing was forwarded to the foreign URL')
  t.equal(await put(`${b.id}=${b.url}`), 200, 'a known peer is fine')
})

t.test('200 concurrent 4 MiB PUTs: bounded RSS, every PUT answered 2xx or 503, the stored ones are there', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const node = c.nodes[0]!
  const url = String(node.ready.url)
  const base = randomBytes(4 * MiB)
  const rss = sampleRss(node.pid, 50)
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const prefix = Buffer.from(`put ${i} ${randomBytes(8).toString('hex')}`)
      const hash = sha(prefix, base)
      try {
        const res = await httpRequest(`${url}/v1/blocks/${hash}`, {
          method: 'PUT',
          body: Readable.from([prefix, base]),
          headers: { authorization: `Bearer ${c.secret}`, 'content-length': String(prefix.length + base.length) },
        })
        await res.body.dump()
        return { hash, status: res.statusCode, retryAfter: res.headers['retry-after'] }
      } catch (err) {
        return { hash, status: 0, error: (err as Error).message }
      }
    }),
  )
  const { max } = rss.stop()
  t.ok(max < RSS_CAP, `node RSS peaked at ${(max / MiB).toFixed(0)} MiB (cap ${RSS_CAP / MiB} MiB)`)
  const by = new Map<number, number>()
  for (const r of results) by.set(r.status, (by.get(r.status) ?? 0) + 1)
  t.same(
    results.filter((r) => r.status !== 200 && r.status !== 503),
    [],
    `every PUT answered 200 or 503 (${[...by].map(([s, n]) => `${n} x ${s}`).join(', ')})`,
  )
  t.ok(results.filter((r) => r.status === 503).every((r) => r.retryAfter !== undefined), '503s carry Retry-After')
  let missing = 0
  for (const r of results.filter((x) => x.status === 200)) {
    const res = await httpRequest(`${url}/v1/blocks/${r.hash}`, { method: 'HEAD', headers: { authorization: `Bearer ${c.secret}` } })
    await res.body.dump()
    if (res.statusCode !== 200) missing++
  }
  t.equal(missing, 0, 'every acknowledged PUT is stored')
})

t.test('stalled uploads are dropped after the idle timeout: real writes get through', async (t) => {
  // room for 40 blocks of 8 MB: 45 stalled uploads would reserve it all
  // --put-idle-ms 3000 instead of the default 15 s: the same path, 12 s sooner
  const c = await startCluster(t, { nodes: 1, replicas: 1, nodeArgs: ['--capacity', String(320_000_000), '--put-idle-ms', '3000'] })
  const node = c.nodes[0]!
  const { port } = new URL(String(node.ready.url))
  const sockets: Socket[] = []
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  for (let i = 0; i < 45; i++) {
    const s = connect(Number(port), '127.0.0.1')
    s.on('error', () => undefined)
    s.write(`PUT /v1/blocks/${sha(Buffer.from(`stall ${i}`))} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${c.secret}\r\ncontent-length: 8000000\r\n\r\nxyz`)
    sockets.push(s)
  }
  await new Promise((r) => setTimeout(r, 500))
  const bc = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 1, deadlineMs: 60_000 })
  t.teardown(() => bc.close())
  await bc.start()
  const data = randomBytes(4 * MiB)
  const r = await bounded(bc.put(data), 90_000)
  t.ok(r.ok, `a real write succeeds despite 45 stalled uploads (${r.ok ? `${r.ms} ms` : r.code})`)
})

t.test('an uploader that hangs up mid-body frees its slot at once, not after the idle timeout', async (t) => {
  // one upload at a time; the idle timeout far past the test, so only the hang-up can free the slot
  const c = await startCluster(t, { nodes: 1, replicas: 1, nodeArgs: ['--max-puts', '1', '--put-idle-ms', '120000'] })
  const url = String(c.nodes[0]!.ready.url)
  const { port } = new URL(url)
  const s = connect(Number(port), '127.0.0.1')
  s.on('error', () => undefined)
  s.write(`PUT /v1/blocks/${sha(Buffer.from('left'))} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${c.secret}\r\ncontent-length: ${4 * MiB}\r\n\r\n`)
  s.write(randomBytes(1 * MiB))
  await new Promise((r) => setTimeout(r, 300))
  s.destroy()
  await new Promise((r) => setTimeout(r, 300))
  const data = randomBytes(64 * 1024)
  const res = await httpRequest(`${url}/v1/blocks/${sha(data)}`, { method: 'PUT', body: data, headers: { authorization: `Bearer ${c.secret}` } })
  await res.body.dump()
  t.equal(res.statusCode, 200, 'the next PUT gets the slot (503 while the left one held it)')
})

t.test('a refused PUT (503) reaches a client that is still sending its body', async (t) => {
  // one upload at a time, and a stalled one holds that slot
  const c = await startCluster(t, { nodes: 1, replicas: 1, nodeArgs: ['--max-puts', '1'] })
  const { port } = new URL(String(c.nodes[0]!.ready.url))
  const open = (): Socket => {
    const s = connect(Number(port), '127.0.0.1')
    t.teardown(() => s.destroy())
    return s
  }
  const head = (name: string, length: number) =>
    `PUT /v1/blocks/${sha(Buffer.from(name))} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${c.secret}\r\ncontent-length: ${length}\r\n\r\n`
  const holder = open()
  holder.on('error', () => undefined)
  holder.write(`${head('holder', 4 * MiB)}xyz`)
  await new Promise((r) => setTimeout(r, 300))
  // The refused client sends part of its body, the answer arrives while it
  // is not reading, then it sends more. Had the node closed the connection
  // with the body unread, its kernel would reset it and the 503 be lost.
  const s = open()
  let answer = ''
  let error = ''
  s.on('data', (d: Buffer) => (answer += d.toString('latin1')))
  s.on('error', (err) => (error = err.message))
  s.pause()
  s.write(head('refused', 4 * MiB))
  s.write(randomBytes(1 * MiB))
  await new Promise((r) => setTimeout(r, 500))
  s.write(randomBytes(1 * MiB))
  await new Promise((r) => setTimeout(r, 300))
  s.resume()
  await new Promise((r) => setTimeout(r, 300))
  t.match(answer, /^HTTP\/1\.1 503 /, `the 503 was read (error: ${error || 'none'})`)
  t.match(answer, /retry-after: 1/i, 'with Retry-After')
  // the rest of the body goes too, and the connection stays usable
  s.write(randomBytes(2 * MiB))
  t.equal(error, '', 'no reset')
})
