/**
 * meta/log/append-route.ts as pure logic, with stand-ins for the three
 * servers' connections (the real cluster case is test/meta-append-route.test.ts):
 * which failed append makes the route avoid a link. A refusal by the fence is
 * an answer from the stream (this replica was deposed; the link works): the
 * link stays. No answer (a timeout) is the link's fault: it is avoided, and
 * appends go out on the own connection meanwhile.
 */
import t from 'tap'
import { NatsError, type JetStreamClient, type NatsConnection } from 'nats'
import { logger } from '../common/log'
import { AppendRoute } from '../meta/log/append-route'

/** A connection to server `name` that stays up; its jetstream() is a token compared by identity. */
function standIn(name: string): { nc: NatsConnection; js: JetStreamClient } {
  const js = { server: name } as unknown as JetStreamClient
  const nc = {
    info: { server_name: name },
    isClosed: () => false,
    jetstream: () => js,
    close: async () => undefined,
    // no status events: common/nats-state.ts counts it as connected
    status: () => ({ [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined) }) }),
  } as unknown as NatsConnection
  return { nc, js }
}

const settle = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r))
}

t.test('a fence refusal keeps the link, a timeout makes the route avoid it', async (t) => {
  const servers = ['n0', 'n1', 'n2'].map(standIn)
  const fallback = { server: 'own' } as unknown as JetStreamClient
  const route = new AppendRoute({
    servers: 3,
    connectTo: async (i) => servers[i]!.nc,
    streamLeader: async () => 'n1',
    fallback,
    logger: logger('test'),
  })
  t.teardown(() => route.close())

  t.equal(route.current(), fallback, 'before the leader is known: the own connection')
  await settle()
  const leader = servers[1]!.js
  t.equal(route.current(), leader, 'then the link to the stream leader')
  t.equal(route.appendsTo, 'n1')

  const refused = new NatsError('wrong last sequence: 7', '400')
  refused.api_error = { code: 400, err_code: 10071, description: 'wrong last sequence: 7' }
  route.failed(leader, refused)
  t.equal(route.current(), leader, 'refused by the fence: the same link')
  await settle()
  t.equal(route.current(), leader, 'and still after asking again')

  route.failed(leader, NatsError.errorForCode('TIMEOUT'))
  t.equal(route.current(), fallback, 'unanswered: the own connection at once')
  await settle()
  t.equal(route.current(), fallback, 'and not that link again after asking again')
  t.equal(route.appendsTo, undefined)
})
