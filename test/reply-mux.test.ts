/**
 * common/reply-mux.ts against a real nats-server with berth's per-role
 * permissions: replies find their request, a late or repeated reply is
 * dropped, and each failure carries the code common/wire.ts retries on
 * (timeout, no responders, a refused publish, a closed connection).
 */
import { ErrorCode, type NatsConnection } from 'nats'
import t from 'tap'
import { connectNats } from '../common/nats-connect'
import { replyMux } from '../common/reply-mux'
import { decode, encode, request, subjects } from '../common/wire'
import { startNats } from './helpers/cluster'

const S = subjects('berth')
const code = (c: string) => ({ code: c })

t.test('requests through one inbox subscription', async (t) => {
  const nats = await startNats(t)
  const open = async (role: 'meta' | 'client'): Promise<NatsConnection> => {
    const nc = await connectNats({ url: nats.url, user: nats.users[role].user, pass: nats.users[role].pass, name: `mux-${role}` })
    t.teardown(() => nc.close())
    return nc
  }
  const server = await open('meta')
  const client = await open('client')
  const mux = replyMux(client)
  t.equal(replyMux(client), mux, 'one mux per connection')

  // meta's side: echoes, answers twice, answers late, or never
  server.subscribe(S.meta('echo'), { callback: (_e, m) => m.respond(m.data) })
  server.subscribe(S.meta('twice'), { callback: (_e, m) => { m.respond(encode('first')); m.respond(encode('second')) } })
  const late: Array<() => void> = []
  server.subscribe(S.meta('late'), { callback: (_e, m) => late.push(() => m.respond(encode('late'))) })
  await server.flush()

  t.test('replies reach their own request, many in flight', async (t) => {
    const asked = Array.from({ length: 200 }, (_, i) => mux.request(S.meta('echo'), encode(i), 5000))
    const got = (await Promise.all(asked)).map((m) => decode(m.data))
    t.same(got, Array.from({ length: 200 }, (_, i) => i))
    t.equal(mux.waiting, 0, 'nothing left waiting')
  })

  t.test('a second reply to one request is dropped', async (t) => {
    t.equal(decode((await mux.request(S.meta('twice'), encode(0), 5000)).data), 'first')
    t.same(decode((await mux.request(S.meta('echo'), encode('next'), 5000)).data), 'next', 'the next request gets its own reply')
  })

  t.test('no reply in time: TIMEOUT; the late reply is dropped', async (t) => {
    await t.rejects(mux.request(S.meta('late'), encode(0), 100), code(ErrorCode.Timeout))
    late.shift()!()
    t.same(decode((await mux.request(S.meta('echo'), encode('after'), 5000)).data), 'after')
    t.equal(mux.waiting, 0)
  })

  t.test('nobody subscribed: no responders (503), at once', async (t) => {
    const started = Date.now()
    await t.rejects(mux.request(S.meta('nobody'), encode(0), 5000), code(ErrorCode.NoResponders))
    t.ok(Date.now() - started < 2000, 'not after the timeout')
  })

  t.test('a publish the server refuses fails its request at once', async (t) => {
    const started = Date.now()
    // a client credential may not publish heartbeats (cli/nats-server.ts rolePermissions)
    await t.rejects(mux.request(S.heartbeat, encode(0), 5000), code(ErrorCode.PermissionsViolation))
    t.ok(Date.now() - started < 2000, 'not after the timeout')
    t.same(decode((await mux.request(S.meta('echo'), encode('still'), 5000)).data), 'still', 'the connection goes on')
  })

  t.test('an inbox the credential may not subscribe to: requests fail at once, each time', async (t) => {
    // the client credential may subscribe only to its own prefix (cli/nats-server.ts rolePermissions)
    const wrong = await connectNats({ url: nats.url, user: nats.users.client.user, pass: nats.users.client.pass, name: 'mux-wrong-inbox', inboxPrefix: '_INBOX_not_mine' })
    t.teardown(() => wrong.close())
    for (const attempt of [1, 2]) {
      const started = Date.now()
      await t.rejects(replyMux(wrong).request(S.meta('echo'), encode(attempt), 5000), code(ErrorCode.PermissionsViolation), `attempt ${attempt}`)
      t.ok(Date.now() - started < 2000, `attempt ${attempt}: not after the timeout`)
    }
  })

  t.test('wire.request retries no responders until someone serves', async (t) => {
    const asked = request<{ ok: true; n: number }>(client, S.meta('later'), { n: 7 }, { timeoutMs: 500, deadlineMs: 5000 })
    setTimeout(() => {
      server.subscribe(S.meta('later'), { callback: (_e, m) => m.respond(encode({ ok: true, n: (decode(m.data) as { n: number }).n })) })
    }, 300)
    t.equal((await asked).n, 7)
  })

  t.test('a closed connection fails what waits and what comes after', async (t) => {
    const other = await open('client')
    const m2 = replyMux(other)
    const waiting = m2.request(S.meta('late'), encode(0), 10_000)
    await new Promise((r) => setTimeout(r, 100))
    await other.close()
    await t.rejects(waiting, code(ErrorCode.ConnectionClosed))
    await t.rejects(m2.request(S.meta('echo'), encode(0), 1000), code(ErrorCode.ConnectionClosed))
    t.equal(m2.waiting, 0)
  })
})
