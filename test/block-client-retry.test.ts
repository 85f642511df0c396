/**
 * A read whose replica fails in a way that may pass (connection reset, 5xx,
 * no answer) is tried again until the client's deadline; a replica that says
 * the copy is missing (404) is final. The replica here is a stand-in node: a
 * real HTTP server that announces itself with real heartbeats on NATS, so the
 * test can choose exactly how each request fails.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { BlockClient, REPLICA_ANSWER_MS } from '../common/block-client'

/** The first placement attempt's wait (common/block-client.ts PLACE_WAITS_MS). */
const PLACE_WAITS_MS_FIRST = 250
import type { BerthError } from '../common/errors'
import type { Heartbeat } from '../common/protocol'
import { encode, subjects } from '../common/wire'
import { startCluster, type TestCluster } from './helpers/cluster'
import { blockClient } from './helpers/lifecycle'

type Answer = 'reset' | 500 | 404 | 'data' | 'cut'

/**
 * A stand-in data node holding `block`: answers GETs with `script` in order
 * (then normally: the block, or 404 for any other), heard through heartbeats.
 */
async function standIn(t: Test, c: TestCluster, id: string, block: { hash: string; data: Buffer }, script: Answer[], opts: StandInOptions = {}) {
  const gets = new Map<string, number>()
  const server = createServer(async (req, res) => {
    const asked = (req.url ?? '').slice('/v1/blocks/'.length)
    gets.set(asked, (gets.get(asked) ?? 0) + 1)
    await opts.beforeAnswer?.()
    const answer = script.shift() ?? (req.url === `/v1/blocks/${block.hash}` ? 'data' : 404)
    const data = block.data
    if (answer === 'reset') return req.socket.destroy()
    if (answer === 'cut') {
      // the whole length announced, half of it sent, then the connection drops
      res.writeHead(200, { 'content-length': String(block.data.length) })
      res.write(block.data.subarray(0, block.data.length >> 1), () => setTimeout(() => req.socket.destroy(), 20))
      return
    }
    if (answer === 'data') {
      res.writeHead(200, { 'content-length': String(data.length) })
      return res.end(data)
    }
    res.writeHead(answer, { 'content-length': '2', connection: 'close' })
    res.end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const nc = await c.connect('node')
  const hb: Heartbeat = { id, url, capacity: 1e9, used: 0, blocks: 1, state: 'up', startedAt: Date.now() }
  const beat = () => nc.publish(subjects(c.cluster).heartbeat, encode(hb))
  let timer: NodeJS.Timeout | undefined
  const startBeating = () => {
    if (timer) return
    beat()
    timer = setInterval(beat, 500)
  }
  if (!opts.silent) startBeating()
  t.teardown(() => clearInterval(timer))
  return { gets: (hash: string) => gets.get(hash) ?? 0, startBeating }
}

interface StandInOptions {
  /** no heartbeats until startBeating() */
  silent?: boolean
  /** runs before every answer: the test's hook into the middle of a read */
  beforeAnswer?: () => Promise<void>
}

t.test('a replica that resets or fails with 5xx is tried again; a 404 is final', async (t) => {
  const c = await startCluster(t, { nodes: 0, replicas: 1 })
  const block = (n: number) => {
    const data = randomBytes(n)
    return { data, hash: createHash('sha256').update(data).digest('hex') }
  }
  const held = block(10_000)
  const lost = block(10_001)
  const flaky = await standIn(t, c, 'flaky', held, ['reset', 500, 'reset'])
  // "gone" should hold `lost` but has lost it: it holds nothing
  const gone = await standIn(t, c, 'gone', block(1), [])
  const reader = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 1, deadlineMs: 20_000 })
  t.teardown(() => reader.close())
  await reader.start()
  for (let i = 0; i < 50 && reader.liveNodes().size < 2; i++) await new Promise((r) => setTimeout(r, 100))

  const got = await reader.get(held.hash, ['flaky'])
  t.ok(got.equals(held.data), 'read back after a reset, a 500 and another reset')
  t.equal(flaky.gets(held.hash), 4, 'the flaky replica was asked four times')

  // listed on "gone" only, which says 404; "flaky" is tried as well (any live
  // node may hold a copy meta has not listed) and says 404 too
  const err = (await reader.get(lost.hash, ['gone']).then(
    () => null,
    (e: unknown) => e,
  )) as BerthError | null
  t.equal(err?.code, 'EIO', `a missing copy fails the read (${err?.message ?? 'no error'})`)
  t.equal(gone.gets(lost.hash), 1, 'the replica that said 404 was asked once')
})

t.test('a whole block lands in the buffer the caller offers; a body cut short is tried again, never returned', async (t) => {
  const c = await startCluster(t, { nodes: 0, replicas: 1 })
  const data = randomBytes(1 << 20)
  const held = { data, hash: createHash('sha256').update(data).digest('hex') }
  const flaky = await standIn(t, c, 'cutter', held, ['cut'])
  const reader = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 1, deadlineMs: 20_000 })
  t.teardown(() => reader.close())
  await reader.start()
  for (let i = 0; i < 50 && reader.liveNodes().size < 1; i++) await new Promise((r) => setTimeout(r, 100))

  const offered: Buffer[] = []
  const into = (size: number) => {
    const buf = Buffer.alloc(size, 0xee)
    offered.push(buf)
    return buf
  }
  const got = await reader.get(held.hash, ['cutter'], { into })
  t.ok(got.equals(data), 'the bytes are the block')
  t.equal(flaky.gets(held.hash), 2, 'asked again after the cut')
  t.same(offered.map((b) => b.length), [data.length, data.length], 'a buffer offered per attempt, of the announced size')
  t.equal(got, offered[1], 'the block is the buffer of the attempt that completed')
  t.ok(offered[0]!.subarray(data.length >> 1).every((x) => x === 0xee), 'the cut attempt wrote nothing past what arrived')
  const ranged = await reader.get(held.hash, ['cutter'], { offset: 5, length: 10, into })
  t.ok(ranged.equals(data.subarray(5, 15)), 'a range is read as before')
  t.equal(offered.length, 2, 'a range is never read into an offered buffer')
})

t.test('a replica first heard while a read asks the other nodes is asked before the read fails', async (t) => {
  // The exact interleaving of a CI failure (block-client-fresh): a fresh
  // reader knows only "other"; the block sits on "holder", whose first
  // heartbeat arrives while "other" is being asked. "other" says 404; the read
  // must go on to "holder", not fail because every listed replica is live now.
  const c = await startCluster(t, { nodes: 0, replicas: 1 })
  const data = randomBytes(10_000)
  const held = { data, hash: createHash('sha256').update(data).digest('hex') }
  const reader = new BlockClient(await c.connect('client'), { cluster: c.cluster, token: c.secret, replicas: 1, deadlineMs: 20_000 })
  t.teardown(() => reader.close())
  const holder = await standIn(t, c, 'holder', held, [], { silent: true })
  const other = await standIn(t, c, 'other', { hash: '0'.repeat(64), data: Buffer.alloc(1) }, [], {
    beforeAnswer: async () => {
      holder.startBeating()
      for (let i = 0; i < 100 && !reader.liveNodes().has('holder'); i++) await new Promise((r) => setTimeout(r, 20))
    },
  })
  await reader.start()
  t.notOk(reader.liveNodes().has('holder'), 'the reader has not heard the holder when the read starts')

  const got = await reader.get(held.hash, ['holder'])
  t.ok(got.equals(held.data), 'read back from the holder')
  t.equal(other.gets(held.hash), 1, 'the other node was asked once (and said 404)')
  t.equal(holder.gets(held.hash), 1, 'the holder was asked once')
})

t.test('one of 3 nodes stopped (SIGSTOP) and counted dead: placement asks the live nodes by name and never waits for it', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2 })
  const bc = await blockClient(t, c, 3)
  const victim = c.nodes[1]!
  process.kill(victim.pid, 'SIGSTOP')
  t.teardown(() => process.kill(victim.pid, 'SIGCONT'))
  // dead to every peer: no chain includes it any more, only placement's queue group does
  for (let i = 0; i < 150 && bc.liveNodes().has(String(victim.ready.id)); i++) await new Promise((r) => setTimeout(r, 100))
  t.notOk(bc.liveNodes().has(String(victim.ready.id)), 'the stopped node counts as dead')
  const ms: number[] = []
  for (let i = 0; i < 40; i++) {
    const t0 = Date.now()
    await bc.put(randomBytes(4096))
    ms.push(Date.now() - t0)
  }
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length
  // through the queue group NATS handed about a third of the placements to the stopped
  // member: with 2 s per attempt the mean was 0.7 s or more, with 250 ms about 155 ms and a
  // third of the puts waited 250 ms or more. A node picked by its heartbeats is never the stopped one.
  // (two slow ones allowed for a loaded machine; the queue group made about 13 of 40)
  const slow = ms.filter((x) => x >= PLACE_WAITS_MS_FIRST).length
  t.ok(slow <= 2, `40 puts: mean ${mean.toFixed(0)} ms, slowest ${Math.max(...ms)} ms, ${slow} of them ${PLACE_WAITS_MS_FIRST} ms or more (a placement attempt's wait)`)
})

t.test('a node heard from that does not serve placement by name (an older node): the client asks another at once', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  const bc = await blockClient(t, c, 2)
  // a heartbeat for a node nobody runs: the client picks it now and then and gets "no
  // responders" at once; with no capacity, the real nodes never make it a chain's secondary
  const nc = await c.connect('node')
  const ghost: Heartbeat = { id: 'ghost', url: 'http://127.0.0.1:9', capacity: 0, used: 0, blocks: 0, state: 'up', startedAt: Date.now() }
  const beat = () => nc.publish(subjects(c.cluster).heartbeat, encode(ghost))
  beat()
  const timer = setInterval(beat, 500)
  t.teardown(() => clearInterval(timer))
  for (let i = 0; i < 50 && !bc.liveNodes().has('ghost'); i++) await new Promise((r) => setTimeout(r, 50))
  // placement by name starts once the client has heard a whole round of heartbeats
  await new Promise((r) => setTimeout(r, 3600))
  const ms: number[] = []
  for (let i = 0; i < 30; i++) {
    const t0 = Date.now()
    const put = await bc.put(randomBytes(4096))
    t.notOk(put.nodes.includes('ghost'), 'the copies are on real nodes')
    ms.push(Date.now() - t0)
  }
  const slow = ms.filter((x) => x >= PLACE_WAITS_MS_FIRST).length
  t.ok(slow <= 2, `30 puts, slowest ${Math.max(...ms)} ms, ${slow} of them ${PLACE_WAITS_MS_FIRST} ms or more: none waited out an attempt on the ghost (a loaded machine may make two slow)`)
})

t.test('a replica stopped (SIGSTOP) while still counted live: a read asks the next one after a second, not once the stopped one counts as dead', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2 })
  const bc = await blockClient(t, c, 2)
  const data = randomBytes(256 * 1024)
  const put = await bc.put(data)
  t.equal(put.nodes.length, 2, `stored on ${put.nodes.join(', ')}`)
  const victim = c.nodes.find((n) => n.ready.id === put.nodes[0])!
  process.kill(victim.pid, 'SIGSTOP')
  t.teardown(() => process.kill(victim.pid, 'SIGCONT'))
  // at once: the stopped node is still live to the client and listed first
  const t0 = Date.now()
  const got = await bc.get(put.hash, put.nodes, { sums: put.sums })
  const ms = Date.now() - t0
  t.ok(got.equals(data), 'the bytes are right')
  t.ok(bc.liveNodes().has(String(victim.ready.id)), 'the stopped node still counted live when the read ended')
  // before: the read waited for the stopped node to count as dead (7 s)
  t.ok(ms >= REPLICA_ANSWER_MS - 50 && ms < REPLICA_ANSWER_MS + 2000, `read in ${ms} ms: one wait of ${REPLICA_ANSWER_MS} ms for the stopped replica`)
  // and reads after it prefer the other replica (the stopped one is suspected)
  const t1 = Date.now()
  t.ok((await bc.get(put.hash, put.nodes, { sums: put.sums })).equals(data))
  t.ok(Date.now() - t1 < REPLICA_ANSWER_MS, `the next read does not ask it first (${Date.now() - t1} ms)`)
})
