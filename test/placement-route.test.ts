/**
 * Placement by name (common/block-client.ts) against what a cluster may still
 * run: a nats.conf from before `<cluster>.data.placeat.*` (the client's
 * publish there is refused) and nodes that serve only the queue group. A put
 * must go through the queue group at once, not wait out an attempt per node.
 * The node here is a stand-in: heartbeats, the queue group, and an HTTP
 * server that takes PUTs, on nats-server with docker/nats.conf.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { NatsConnection } from 'nats'
import t, { type Test } from 'tap'
import { BlockClient } from '../common/block-client'
import { connectNats } from '../common/nats-connect'
import type { Heartbeat } from '../common/protocol'
import { encode, serve, subjects } from '../common/wire'
import { startDockerConf, type Server } from './helpers/docker-nats'

const S = subjects('berth')

async function as(t: Test, s: Server, role: 'node' | 'client'): Promise<NatsConnection> {
  const nc = await connectNats({ url: s.url, user: s.users[role].user, pass: s.users[role].pass, name: `placement-route-${role}` })
  t.teardown(() => nc.close())
  return nc
}

/** A node that serves placement in the queue group only (as before placeat) and stores nothing. */
async function queueOnlyNode(t: Test, s: Server, id: string): Promise<{ placements: () => number }> {
  const server = createServer((req, res) => {
    const hash = (req.url ?? '').slice('/v1/blocks/'.length)
    req.resume()
    req.on('end', () => res.end(JSON.stringify({ hash, stored: [id] })))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const nc = await as(t, s, 'node')
  let placements = 0
  serve(nc, S.place, { queue: 'data' }, () => {
    placements++
    return { targets: [{ id, url }] }
  })
  const hb: Heartbeat = { id, url, capacity: 1e12, used: 0, blocks: 0, state: 'up', startedAt: Date.now() }
  const beat = () => nc.publish(S.heartbeat, encode(hb))
  beat()
  const timer = setInterval(beat, 500)
  t.teardown(() => clearInterval(timer))
  await nc.flush()
  return { placements: () => placements }
}

async function puts(t: Test, s: Server, n: number): Promise<number[]> {
  const bc = new BlockClient(await as(t, s, 'client'), { cluster: 'berth', token: 'x', replicas: 1, deadlineMs: 10_000 })
  t.teardown(() => bc.close())
  await bc.start()
  // placement by name starts once the client has heard a whole round of heartbeats
  await new Promise((r) => setTimeout(r, 3600))
  const ms: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const put = await bc.put(randomBytes(1000))
    t.same(put.nodes, ['old'], 'stored on the node')
    ms.push(Math.round(performance.now() - t0))
  }
  return ms
}

t.test('a nats.conf from before placement by name: refused once, then the queue group, no wait', async (t) => {
  const s = await startDockerConf(t, (conf) => conf.split(', "berth.data.placeat.*"').join(''))
  const node = await queueOnlyNode(t, s, 'old')
  const ms = await puts(t, s, 10)
  t.equal(node.placements(), 10, 'every placement went to the queue group')
  t.ok(Math.max(...ms) < 250, `10 puts, slowest ${Math.max(...ms)} ms (an attempt that timed out would wait 250 ms)`)
})

t.test('a node from before placement by name under a current nats.conf: nobody answers its subject, the queue group does', async (t) => {
  const s = await startDockerConf(t)
  const node = await queueOnlyNode(t, s, 'old')
  const ms = await puts(t, s, 10)
  t.equal(node.placements(), 10, 'every placement went to the queue group')
  t.ok(Math.max(...ms) < 250, `10 puts, slowest ${Math.max(...ms)} ms`)
})
