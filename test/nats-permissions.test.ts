/**
 * Per-role NATS permissions, against a real nats-server with both configs berth
 * ships: the embedded one (`berth up`, tests: cli/nats-server.ts) and
 * docker/nats.conf (compose). A client credential cannot publish a heartbeat or a
 * node command, nor listen to meta's requests; the server refuses and nats.js
 * reports it as a PERMISSIONS_VIOLATION status on the client's connection, while
 * the legitimate traffic of every role still flows.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { connect, createInbox, type NatsConnection, type Status } from 'nats'
import t, { type Test } from 'tap'
import { launchNatsServer, type NatsUsers } from '../cli/nats-server'
import { BERTH_BIN } from '../cli/spawn-service'
import { connectNats } from '../common/nats-connect'
import { decode, encode, subjects } from '../common/wire'
import { startDockerConf, type Server } from './helpers/docker-nats'
import { testDir } from './helpers/test-dir'

const S = subjects('berth')

async function as(t: Test, s: Server, role: keyof NatsUsers): Promise<NatsConnection> {
  // as berth's processes connect: each credential on its own reply inbox
  const nc = await connectNats({ url: s.url, user: s.users[role].user, pass: s.users[role].pass, name: `perm-${role}` })
  t.teardown(() => nc.close())
  return nc
}

/** The next permission violation reported on `nc`'s status iterator. */
function nextViolation(nc: NatsConnection): Promise<Status> {
  return (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.data === 'PERMISSIONS_VIOLATION') return s
    }
    throw new Error('connection closed without a permissions violation')
  })()
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, fail) => setTimeout(() => fail(new Error(`${what}: nothing within ${ms} ms`)), ms).unref())])
}

async function checkRoles(t: Test, s: Server): Promise<void> {
  const client = await as(t, s, 'client')
  const meta = await as(t, s, 'meta')
  const node = await as(t, s, 'node')

  // meta listens to heartbeats; it must see the node's and never the client's
  const seen: string[] = []
  meta.subscribe(S.heartbeat, { callback: (_e, m) => seen.push((decode(m.data) as { from: string }).from) })
  const cmds: string[] = []
  node.subscribe(S.nodeCmd('n1'), { callback: (_e, m) => cmds.push((decode(m.data) as { from: string }).from) })
  await meta.flush()
  await node.flush()

  let violation = nextViolation(client)
  client.publish(S.heartbeat, encode({ from: 'client' }))
  let st = await withDeadline(violation, 5000, 'client heartbeat')
  t.same(st.permissionContext, { operation: 'publish', subject: S.heartbeat, queue: undefined }, 'server refused the client heartbeat')
  t.comment(`client heartbeat refused: ${JSON.stringify(st)}`)

  violation = nextViolation(client)
  client.publish(S.nodeCmd('n1'), encode({ from: 'client' }))
  st = await withDeadline(violation, 5000, 'client node command')
  t.equal(st.permissionContext?.subject, S.nodeCmd('n1'), 'server refused the client node command')

  // a client may not eavesdrop on meta's requests
  violation = nextViolation(client)
  client.subscribe(S.metaAll)
  st = await withDeadline(violation, 5000, 'client subscribe meta')
  t.same(st.permissionContext?.operation, 'subscription', 'server refused the client subscription to meta requests')

  // a node reports corrupt copies to meta (badCopy) and may ask meta nothing else
  violation = nextViolation(node)
  node.publish(S.meta('unlink'), encode({ from: 'node' }))
  st = await withDeadline(violation, 5000, 'node meta op')
  t.equal(st.permissionContext?.subject, S.meta('unlink'), 'server refused a node publishing a meta op other than badCopy')
  const reports: string[] = []
  meta.subscribe(S.meta('badCopy'), { callback: (_e, m) => reports.push((decode(m.data) as { from: string }).from) })
  await meta.flush()
  node.publish(S.meta('badCopy'), encode({ from: 'node' }))
  await node.flush()
  await withDeadline(
    (async () => {
      while (reports.length < 1) await new Promise((r) => setTimeout(r, 20))
    })(),
    5000,
    'node badCopy report',
  )
  t.same(reports, ['node'], 'meta got the node badCopy report')

  // legitimate traffic still flows, after the violations, on the same connections
  node.publish(S.heartbeat, encode({ from: 'node' }))
  meta.publish(S.nodeCmd('n1'), encode({ from: 'meta' }))
  await node.flush()
  await meta.flush()
  await withDeadline(
    (async () => {
      while (seen.length < 1 || cmds.length < 1) await new Promise((r) => setTimeout(r, 20))
    })(),
    5000,
    'node heartbeat and meta command',
  )
  t.same(seen, ['node'], 'meta got the node heartbeat and nothing from the client')
  t.same(cmds, ['meta'], 'the node got the meta command and nothing from the client')

  // a client request to meta is answered (allow_responses on meta, _INBOX on the client)
  meta.subscribe(S.meta('status'), { callback: (_e, m) => m.respond(encode({ ok: true, who: 'meta' })) })
  await meta.flush()
  const reply = await client.request(S.meta('status'), encode({}), { timeout: 5000 })
  t.same(decode(reply.data), { ok: true, who: 'meta' }, 'client request to meta answered')
  // and the leader probe, then meta by its own subject (common/meta-route.ts)
  meta.subscribe(S.metaLeader, { callback: (_e, m) => m.respond(encode({ ok: true, metaId: 'm1', direct: true })) })
  meta.subscribe(S.metaAt('m1', '*'), { callback: (_e, m) => m.respond(encode({ ok: true, who: m.subject })) })
  await meta.flush()
  t.same(decode((await client.request(S.metaLeader, encode({}), { timeout: 5000, noMux: true })).data), { ok: true, metaId: 'm1', direct: true }, 'client asks the leader probe')
  t.same(decode((await client.request(S.metaAt('m1', 'status'), encode({}), { timeout: 5000 })).data), { ok: true, who: S.metaAt('m1', 'status') }, "client asks meta by its own subject")
  violation = nextViolation(client)
  client.subscribe(S.metaAtAll)
  st = await withDeadline(violation, 5000, 'client subscribe metaat')
  t.same(st.permissionContext?.operation, 'subscription', "server refused the client subscription to meta's own subjects")
  // placement by a node's own subject (common/block-client.ts): the node serves it, the client asks it, and may not serve it
  node.subscribe(S.placeAt('n1'), { callback: (_e, m) => m.respond(encode({ ok: true, who: m.subject })) })
  await node.flush()
  t.same(decode((await client.request(S.placeAt('n1'), encode({}), { timeout: 5000, noMux: true })).data), { ok: true, who: S.placeAt('n1') }, "client asks a node for placement by the node's own subject")
  violation = nextViolation(client)
  client.subscribe(S.placeAtAll)
  st = await withDeadline(violation, 5000, 'client subscribe placeat')
  t.same(st.permissionContext?.operation, 'subscription', "server refused the client subscription to the nodes' placement subjects")
  t.notOk(client.isClosed(), 'violations do not close the client connection')

  await checkInboxes(t, s, { client, meta, node })
}

/**
 * Inbox isolation (issue 9 item 7): replies travel on `_INBOX_<user>.*`; a
 * client may not subscribe to the shared `_INBOX.>`, nor to meta's or a node's
 * inbox, so it cannot read replies meant for others; its own requests still
 * get their answers, and a request of meta is answered on meta's inbox
 * without the client seeing it.
 */
async function checkInboxes(t: Test, s: Server, c: Record<keyof NatsUsers, NatsConnection>): Promise<void> {
  for (const subject of ['_INBOX.>', '_INBOX_meta.>', '_INBOX_node.>', '>', '_INBOX_*.>']) {
    const violation = nextViolation(c.client)
    c.client.subscribe(subject)
    const st = await withDeadline(violation, 5000, `client subscribe ${subject}`)
    t.same(st.permissionContext, { operation: 'subscription', subject, queue: undefined }, `client may not subscribe to ${subject}`)
  }
  // a client that picks another prefix cannot receive its replies at all
  const rogue = await connect({ servers: s.url, user: s.users.client.user, pass: s.users.client.pass, inboxPrefix: '_INBOX', name: 'rogue' })
  t.teardown(() => rogue.close())
  const refused = nextViolation(rogue)
  await t.rejects(rogue.request(S.meta('status'), encode({}), { timeout: 1500 }), 'a client on the shared _INBOX gets no reply')
  t.equal((await withDeadline(refused, 5000, 'rogue inbox')).permissionContext?.operation, 'subscription', 'the server refused its inbox subscription')

  // meta asks a node (placement); the client listens on its own inbox wildcard and hears nothing of it
  const overheard: string[] = []
  c.client.subscribe('_INBOX_client.>', { callback: (_e, m) => overheard.push(m.subject) })
  await c.client.flush()
  c.node.subscribe(S.place, { callback: (_e, m) => m.respond(encode({ ok: true, secret: 'for meta only' })) })
  await c.node.flush()
  const answer = await c.meta.request(S.place, encode({}), { timeout: 5000 })
  t.match(answer.subject, /^_INBOX_meta\./, `meta's reply came on its own inbox (${answer.subject})`)
  const mine = await c.client.request(S.meta('status'), encode({}), { timeout: 5000 })
  t.match(mine.subject, /^_INBOX_client\./, 'the client still gets its own replies')
  t.ok(overheard.every((x) => x.startsWith('_INBOX_client.')) && !overheard.some((x) => x === answer.subject), "the client heard none of meta's reply")
  t.ok(createInbox('_INBOX_client').startsWith('_INBOX_client.'), 'inbox naming as nats.js does it')
}

t.test('embedded nats-server config (berth up, tests)', async (t) => {
  const nats = await launchNatsServer({ dir: join(testDir(t), 'nats') })
  t.teardown(() => nats.stop())
  await checkRoles(t, { url: nats.url, users: nats.users })
  // no credentials, or wrong ones: the server refuses, and berth says so (EAUTH)
  await t.rejects(connectNats({ url: nats.url, name: 'anonymous' }), { code: 'EAUTH' }, 'no credentials: refused')
  await t.rejects(connectNats({ url: nats.url, name: 'guesser', user: nats.users.client.user, pass: 'wrong' }), { code: 'EAUTH' }, 'wrong password: refused')
  const meta = spawnSync(process.execPath, [BERTH_BIN, 'meta', '--nats', nats.url, '--db', join(testDir(t), 'm.db'), '--user', 'meta', '--pass', 'wrong'], {
    encoding: 'utf8',
    env: { ...process.env, BERTH_SECRET: 'x'.repeat(32) },
    timeout: 30_000,
  })
  t.not(meta.status, 0, 'berth meta with a wrong password exits non-zero')
  t.match(meta.stderr, /Authorization|EAUTH|authentication/i, `and says why: ${meta.stderr.trim().split('\n')[0]}`)
})

t.test('docker/nats.conf (compose)', async (t) => {
  await checkRoles(t, await startDockerConf(t))
})
