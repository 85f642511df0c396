/**
 * client/ahead-pipeline.ts as pure logic, against a meta whose answers the
 * test releases one by one: removals go one at a time while requests are
 * free and together once they are not; each item's answer reaches its own
 * caller; the barrier waits for earlier removals only; an older meta without
 * `ahead` gets them one by one; `window` bounds what is taken.
 */
import t from 'tap'
import { fsError } from '../common/errors'
import type { MetaOp, MetaReplies } from '../common/protocol'
import type { MetaApi } from '../client/stores'
import { AheadPipeline, type AheadOutcome } from '../client/ahead-pipeline'

interface Pending {
  op: MetaOp
  body: unknown
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
}

function fakeMeta() {
  const calls: Pending[] = []
  const meta: MetaApi = {
    call<Op extends MetaOp>(op: Op, body: unknown): Promise<MetaReplies[Op]> {
      return new Promise((resolve, reject) => calls.push({ op, body, resolve: resolve as (v: unknown) => void, reject }))
    },
  }
  return { meta, calls }
}

const tick = () => new Promise((r) => setImmediate(r))
const itemsOf = (p: Pending) => (p.body as { items: Array<{ name: string }> }).items.map((i) => i.name)

t.test('one at a time while requests are free, then together; answers reach each caller', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const heard = new Map<string, AheadOutcome>()
  const send = (name: string) => p.send({ op: 'unlink', parent: 1, name }, (o) => heard.set(name, o))
  await send('a')
  await send('b')
  t.same(calls.map((c) => c.op), ['unlink', 'unlink'], 'the first two go at once, each alone')
  for (const n of ['c', 'd', 'e']) await send(n)
  t.equal(calls.length, 2, 'the next ones wait for a request to end')
  calls[0]!.resolve({ dirs: [] })
  await tick()
  t.equal(calls[2]!.op, 'ahead', 'then go in one request')
  t.same(itemsOf(calls[2]!), ['c', 'd', 'e'], 'in order')
  t.ok(heard.get('a')?.ok, "a's answer heard")
  calls[2]!.resolve({ results: [{ dirs: [] }, { error: { code: 'ENOTEMPTY', message: 'not empty' } }, { dirs: [] }] })
  calls[1]!.resolve({ dirs: [] })
  await p.settled()
  t.ok(heard.get('c')?.ok && heard.get('e')?.ok, 'items that stood: ok')
  const d = heard.get('d')
  t.ok(d && !d.ok && (d.error as { code: string }).code === 'ENOTEMPTY', 'a refused item: its own error')
})

t.test('a failed request fails each of its items', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const heard: AheadOutcome[] = []
  for (const n of ['a', 'b', 'c', 'd']) await p.send({ op: 'unlink', parent: 1, name: n }, (o) => heard.push(o))
  calls[0]!.resolve({ dirs: [] })
  calls[1]!.resolve({ dirs: [] })
  await tick()
  calls[2]!.reject(fsError('ETIMEDOUT', 'deadline'))
  await p.settled()
  t.same(heard.map((o) => (o.ok ? 'ok' : (o.error as { code: string }).code)), ['ok', 'ok', 'ETIMEDOUT', 'ETIMEDOUT'])
})

t.test('the barrier waits for the removals before it, not after', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const noop = () => undefined
  await p.send({ op: 'unlink', parent: 1, name: 'a' }, noop)
  let looked = false
  const lookup = p.call('getattr', { ino: 1 }).then(() => (looked = true))
  await p.send({ op: 'unlink', parent: 1, name: 'b' }, noop)
  await p.send({ op: 'unlink', parent: 1, name: 'c' }, noop)
  await tick()
  t.same(calls.map((c) => c.op), ['unlink', 'unlink'], 'getattr not sent while a is out')
  calls[0]!.resolve({ dirs: [] })
  await tick()
  await tick()
  t.equal(calls.filter((c) => c.op === 'getattr').length, 1, 'sent once a settled, with b and c still out')
  calls.find((c) => c.op === 'getattr')!.resolve({ attr: {} })
  await lookup
  t.ok(looked)
  for (const c of calls) c.resolve(c.op === 'ahead' ? { results: [{ dirs: [] }] } : { dirs: [] })
  await tick()
  for (const c of calls) c.resolve({ results: [{ dirs: [] }] })
  await p.settled()
})

t.test('an older meta without removes: one by one from then on', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const heard: string[] = []
  for (const n of ['a', 'b', 'c', 'd']) await p.send({ op: 'unlink', parent: 1, name: n }, (o) => o.ok && heard.push(n))
  calls[0]!.resolve({ dirs: [] })
  await tick()
  calls[2]!.reject(fsError('ENOSYS', 'unknown metadata operation "ahead"'))
  await tick()
  t.same(calls.slice(3).map((c) => c.op), ['unlink', 'unlink'], 'the batch again, one by one')
  for (const c of calls.slice(1)) c.resolve({ dirs: [] })
  await tick()
  for (const n of ['e', 'f', 'g']) await p.send({ op: 'unlink', parent: 1, name: n }, (o) => o.ok && heard.push(n))
  await tick()
  t.notOk(calls.slice(5).some((c) => c.op === 'ahead'), 'no removes request any more')
  for (let i = 0; i < 5; i++) {
    for (const c of calls) c.resolve({ dirs: [] })
    await tick()
  }
  await p.settled()
  t.same(heard.sort(), ['a', 'b', 'c', 'd', 'e', 'f', 'g'], 'every removal answered')
})

t.test('window: at most that many taken; the next caller waits for a slot', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 3)
  const noop = () => undefined
  for (const n of ['a', 'b', 'c']) await p.send({ op: 'unlink', parent: 1, name: n }, noop)
  let fourth = false
  const waiting = p.send({ op: 'unlink', parent: 1, name: 'd' }, noop).then(() => (fourth = true))
  await tick()
  t.notOk(fourth, 'the fourth waits')
  calls[0]!.resolve({ dirs: [] })
  await waiting
  t.ok(fourth, 'and goes once one settled')
  for (let i = 0; i < 4; i++) {
    for (const c of calls) c.resolve(c.op === 'ahead' ? { results: itemsOf(c).map(() => ({ dirs: [] })) } : { dirs: [] })
    await tick()
  }
  await p.settled()
})
