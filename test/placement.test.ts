/**
 * Write placement over NATS queue group `data`: spread over the nodes, a node
 * started later takes writes without any restart or config change, and bad
 * requests get error replies while the nodes keep serving.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { request as httpRequest } from 'undici'
import type { PlaceReply } from '../common/protocol'
import { decode, encode, request, subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'

t.test('placement', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const nc = await c.connect('client')
  const s = subjects(c.cluster)
  const ids = c.nodes.map((n) => String(n.ready.id))
  // Heartbeats must have crossed so every node knows its peers.
  await new Promise((r) => setTimeout(r, 300))

  t.test('300 requests spread over 3 nodes, >= 20% each as first target', async (t) => {
    const first = new Map<string, number>(ids.map((id) => [id, 0]))
    for (let i = 0; i < 300; i++) {
      const reply = await request<PlaceReply>(nc, s.place, { size: 4 * 1024 * 1024, replicas: 2 })
      t.equal(reply.targets.length, 2, 'R targets') || t.fail(JSON.stringify(reply))
      const [a, b] = reply.targets
      if (a && b) {
        if (a.id === b.id) t.fail('targets must be distinct nodes')
        first.set(a.id, (first.get(a.id) ?? 0) + 1)
      }
    }
    t.comment(`first targets: ${JSON.stringify(Object.fromEntries(first))}`)
    for (const id of ids) t.ok((first.get(id) ?? 0) >= 60, `node ${id} is first target in >= 20% of 300`)
    t.same([...first.keys()].sort(), [...ids].sort(), 'no unknown node ids')
  })

  t.test('R is capped by live nodes; excluded nodes are avoided', async (t) => {
    const reply = await request<PlaceReply>(nc, s.place, { size: 100, replicas: 5 })
    t.equal(reply.targets.length, 3)
    for (let i = 0; i < 20; i++) {
      const r = await request<PlaceReply>(nc, s.place, { size: 100, replicas: 2, exclude: [ids[0]!] })
      t.notOk(r.targets.some((x) => x.id === ids[0]), 'excluded node not chosen')
    }
    await t.rejects(request(nc, s.place, { size: 100, replicas: 2, exclude: ids }), { code: 'ENOSPC' }, 'nobody left')
  })

  t.test('bad requests get error replies and the nodes stay up', async (t) => {
    const raw = async (data: Uint8Array) => decode((await nc.request(s.place, data, { timeout: 5000 })).data) as { ok: boolean; code?: string }
    for (let i = 0; i < 10; i++) {
      t.match(await raw(randomBytes(64)), { ok: false }, 'random bytes')
      t.match(await raw(encode({ size: 'big', replicas: 2 })), { ok: false, code: 'EBADMSG' }, 'wrong type')
      t.match(await raw(encode({ size: -1, replicas: 2 })), { ok: false, code: 'EBADMSG' }, 'negative size')
      t.match(await raw(encode({ size: 1, replicas: 2, exclude: 'x' })), { ok: false, code: 'EBADMSG' }, 'exclude not a list')
      t.match(await raw(encode([1, 2, 3])), { ok: false, code: 'EBADMSG' }, 'array body')
      t.match(await raw(new Uint8Array(0)), { ok: false }, 'empty body')
    }
    t.match(await raw(encode({ size: 1, replicas: 2, pad: Buffer.alloc(1024 * 1024 + 10) })), { ok: false, code: 'EMSGSIZE' }, 'oversize body')
    for (const n of c.nodes) {
      const res = await httpRequest(`${String(n.ready.url)}/healthz`)
      t.equal(res.statusCode, 200, `node ${String(n.ready.id)} still up`)
      await res.body.dump()
      t.equal(n.child.exitCode, null)
    }
    const ok = await request<PlaceReply>(nc, s.place, { size: 1, replicas: 2 })
    t.equal(ok.targets.length, 2, 'placement still works')
  })

  t.test('a node started later receives placements within 5 s', async (t) => {
    const fresh = await c.startNode()
    const id = String(fresh.ready.id)
    const started = Date.now()
    let seenFirst = false
    let seenSecondary = false
    while (Date.now() - started < 5000 && !(seenFirst && seenSecondary)) {
      const r = await request<PlaceReply>(nc, s.place, { size: 1, replicas: 3 })
      if (r.targets[0]?.id === id) seenFirst = true
      if (r.targets.slice(1).some((x) => x.id === id)) seenSecondary = true
    }
    t.ok(seenFirst, 'new node answers placement as first target')
    t.ok(seenSecondary, 'other nodes learned it from heartbeats and chain to it')
  })
})
