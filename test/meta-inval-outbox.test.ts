/**
 * meta's invalidations wait for the next reply (meta/server.ts,
 * InvalidationOutbox): add() publishes nothing by itself, flush() (run right
 * before each reply) publishes everything held in order, and a turn of the
 * event loop sends what no reply took along.
 */
import t from 'tap'
import { Changes } from '../meta/context'
import { InvalidationOutbox, publishForgetAll } from '../meta/server'
import { decode } from '../common/wire'

function fakeNats() {
  const sent: Array<{ subject: string; body: unknown }> = []
  const nc = {
    publish: (subject: string, data?: Uint8Array) => void sent.push({ subject, body: data && decode(data) }),
    isClosed: () => false,
  }
  return { nc, sent }
}

function changed(ino: number): Changes {
  const ch = new Changes()
  ch.ino(ino)
  ch.dir(1)
  return ch
}

t.test('held until the next reply, then published in order before it', async (t) => {
  const { nc, sent } = fakeNats()
  const out = new InvalidationOutbox(nc, 'c')
  out.add(changed(10))
  out.add(changed(11))
  out.add(new Changes()) // nothing changed: nothing to send
  t.equal(sent.length, 0, 'not published at add()')
  out.flush()
  t.same(sent.map((m) => m.subject), ['c.inval', 'c.inval'])
  t.same(sent.map((m) => (m.body as { inos: number[] }).inos), [[10], [11]])
  out.flush()
  t.equal(sent.length, 2, 'published once')
})

t.test('a turn of the event loop sends what no reply took along', async (t) => {
  const { nc, sent } = fakeNats()
  const out = new InvalidationOutbox(nc, 'c')
  out.add(changed(12))
  await new Promise((r) => setImmediate(r))
  t.same(sent.map((m) => (m.body as { inos: number[] }).inos), [[12]])
})

t.test('forget everything: one message with `all` and nothing an older client would act on', async (t) => {
  const { nc, sent } = fakeNats()
  publishForgetAll(nc, 'c')
  t.same(sent, [{ subject: 'c.inval', body: { inos: [], dirs: [], all: true } }], 'empty inos and dirs: a client that ignores `all` changes nothing')
})

t.test('the test hook (BERTH_TEST_DROP_INVALIDATIONS) drops every mutation\'s invalidation', async (t) => {
  const { nc, sent } = fakeNats()
  const out = new InvalidationOutbox(nc, 'c', true)
  out.add(changed(13))
  out.flush()
  await new Promise((r) => setImmediate(r))
  t.equal(sent.length, 0, 'nothing published')
})
