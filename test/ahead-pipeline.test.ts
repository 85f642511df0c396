/**
 * client/ahead-pipeline.ts as pure logic, against a meta whose answers the
 * test releases one by one: removals go one at a time while requests are
 * free and together once they are not; each item's answer reaches its own
 * caller; the barrier waits for earlier removals only; an older meta without
 * `ahead` gets them one by one; `window` bounds what is taken; a held create
 * waits for its commit; outcomes are handed out in sending order.
 */
import t from 'tap'
import { fsError } from '../common/errors'
import type { MetaOp, MetaReplies } from '../common/protocol'
import type { MetaApi } from '../client/stores'
import { AheadPipeline, HOLD_MS, type AheadOutcome } from '../client/ahead-pipeline'
import { InoPool } from '../client/ino-pool'

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

/** A pipeline over fakeMeta; send(name) sends an unlink, whose outcome lands in heard. */
function unlinkPipeline() {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const heard = new Map<string, AheadOutcome>()
  const send = (name: string) => p.send({ op: 'unlink', parent: 1, name }, (o) => heard.set(name, o))
  return { p, calls, heard, send }
}
const itemsOf = (p: Pending) => (p.body as { items: Array<{ name: string }> }).items.map((i) => i.name)

t.test('one at a time while requests are free, then together; answers reach each caller', async (t) => {
  const { p, calls, heard, send } = unlinkPipeline()
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
  calls[1]!.resolve({ dirs: [] })
  await tick()
  calls[2]!.resolve({ results: [{ dirs: [] }, { error: { code: 'ENOTEMPTY', message: 'not empty' } }, { dirs: [] }] })
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

t.test("a small commit joins the queue behind the changes before it and gets its own answer; others wait at the barrier", async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const made: AheadOutcome[] = []
  await p.send({ op: 'mknod', parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0, ino: 9, session: 's' }, (o) => made.push(o))
  await p.send({ op: 'unlink', parent: 1, name: 'g' }, () => undefined)
  const small = p.call('commit', { ino: 9, session: 's', size: 1, chunks: [{ idx: 0, hash: null, len: 1, nodes: [], data: new Uint8Array(1) }] })
  const big = p.call('commit', { ino: 9, session: 's', size: 2, chunks: [{ idx: 0, hash: null, len: 0, nodes: [] }, { idx: 1, hash: null, len: 0, nodes: [] }] })
  await tick()
  t.same(calls.map((c) => c.op), ['mknod', 'unlink'], 'both requests out: the commits wait')
  calls[0]!.resolve({ attr: { ino: 9 }, dirs: [] })
  await tick()
  t.equal(calls[2]!.op, 'commit', 'the small commit goes next, alone in its request, without waiting for the unlink')
  calls[2]!.resolve({ attr: { ino: 9, size: 1 } })
  let smallDone = false
  void small.then(() => (smallDone = true))
  await tick()
  t.notOk(smallDone, 'answered, but its outcome waits for the unlink sent before it')
  t.equal(calls.length, 3, 'the larger commit still waits for the unlink before it')
  calls[1]!.resolve({ dirs: [] })
  t.same(await small, { attr: { ino: 9, size: 1 } }, 'then resolves with its own answer')
  await tick()
  await tick()
  t.equal(calls[3]!.op, 'commit', 'then goes')
  calls[3]!.resolve({ attr: { ino: 9, size: 2 } })
  await big
  t.ok(made[0]?.ok, "the create's answer heard")
})

t.test('a commit whose create meta refused fails with the error meta gave it', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  await p.send({ op: 'unlink', parent: 1, name: 'x' }, () => undefined)
  await p.send({ op: 'unlink', parent: 1, name: 'y' }, () => undefined)
  await p.send({ op: 'mknod', parent: 1, name: 'f', mode: 0o100644, uid: 0, gid: 0, ino: 9, session: 's' }, () => undefined)
  const commit = p.call('commit', { ino: 9, session: 's', size: 0, chunks: [] })
  calls[0]!.resolve({ dirs: [] })
  await tick()
  t.equal(calls[2]!.op, 'ahead', 'the create and the commit in one request')
  t.same((calls[2]!.body as { items: Array<{ op: string }> }).items.map((i) => i.op), ['mknod', 'commit'])
  calls[1]!.resolve({ dirs: [] })
  await tick()
  calls[2]!.resolve({ results: [{ error: { code: 'EEXIST', message: 'exists' } }, { error: { code: 'ENOENT', message: 'no inode 9' } }] })
  await t.rejects(commit, { code: 'ENOENT' })
  await p.settled()
})

t.test('InoPool: a new reservation only once every number handed out is queued, then behind them', async (t) => {
  const { meta, calls } = fakeMeta()
  const pool = new InoPool(meta, 's')
  t.equal(pool.take(), undefined, 'nothing held: the first caller waits for meta')
  t.same(calls.map((c) => c.op), ['inos'], 'and a reservation is asked for')
  calls[0]!.resolve({ first: 100, count: 2 })
  await tick()
  t.equal(pool.take(), 100)
  t.equal(pool.take(), 101)
  t.equal(pool.take(), undefined, 'all handed out')
  t.equal(calls.length, 1, 'no new reservation while a number is not queued yet (it would replace the one in use)')
  pool.sent()
  t.equal(calls.length, 1)
  pool.sent()
  t.equal(calls.length, 2, 'asked once both are queued')
  calls[1]!.reject(fsError('ENOSYS', 'unknown metadata operation "inos"'))
  await tick()
  t.equal(pool.take(), undefined)
  t.equal(calls.length, 2, 'an older meta: never asked again')
})

t.test('a batch stays under about 512 KiB: small commits with 64 KiB inline go a few per request', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  for (const n of ['a', 'b']) await p.send({ op: 'unlink', parent: 1, name: n }, () => undefined)
  const data = new Uint8Array(64 * 1024)
  const commits = Array.from({ length: 20 }, (_, i) => p.call('commit', { ino: 100 + i, session: 's', size: data.length, chunks: [{ idx: 0, hash: null, len: data.length, nodes: [], data }] }))
  await tick()
  calls[0]!.resolve({ dirs: [] })
  await tick()
  const first = calls[2]!
  t.equal(first.op, 'ahead')
  const n = (first.body as { items: unknown[] }).items.length
  t.ok(n > 1 && n < 20, `the queued commits split: ${n} in the first request`)
  for (let i = 0; i < 10; i++) {
    for (const c of calls) c.resolve(c.op === 'ahead' ? { results: (c.body as { items: unknown[] }).items.map(() => ({ attr: {} })) } : { dirs: [] })
    await tick()
  }
  await Promise.all(commits)
  t.ok(calls.filter((c) => c.op === 'ahead' || c.op === 'commit').length >= 3, 'in several requests')
})

t.test('a held create waits for its commit and goes with it; a waiter or HOLD_MS sends it alone', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const noop = () => undefined
  const create = (name: string, ino: number) =>
    p.send({ op: 'mknod', parent: 1, name, mode: 0o100644, uid: 0, gid: 0, ino, session: 's' }, noop, { hold: true })
  const commit = { ino: 10, size: 1, chunks: [{ idx: 0, hash: null, len: 1, data: new Uint8Array([120]) }], session: 's' }

  await create('f', 10)
  await tick()
  t.equal(calls.length, 0, 'held: nothing sent while no other change is queued')
  const closed = p.call('commit', commit as never)
  await tick()
  t.equal(calls.length, 1, 'the commit behind it sends both')
  t.equal(calls[0]!.op, 'ahead', 'in one request')
  t.same((calls[0]!.body as { items: Array<{ op: string }> }).items.map((i) => i.op), ['mknod', 'commit'], 'create first')
  calls[0]!.resolve({ results: [{ dirs: [], attr: {} }, { attr: { ino: 10 } }] })
  t.same(await closed, { attr: { ino: 10 } }, "the commit's caller hears its own answer")

  await create('g', 11)
  const waiter = p.settled()
  await tick()
  t.equal(calls.length, 2, 'a caller waiting for the queue sends a held create at once')
  t.equal(calls[1]!.op, 'mknod', 'alone, as its own request')
  calls[1]!.resolve({ dirs: [] })
  await waiter

  await create('h', 12)
  await tick()
  t.equal(calls.length, 2, 'held again')
  await new Promise((r) => setTimeout(r, HOLD_MS + 20))
  t.equal(calls.length, 3, `sent alone once ${HOLD_MS} ms passed`)
  calls[2]!.resolve({ dirs: [] })
  await p.settled()
})

t.test('outcomes are handed out in the order the changes were sent, whatever order their answers come in', async (t) => {
  const { meta, calls } = fakeMeta()
  const p = new AheadPipeline(meta, 64)
  const heard: string[] = []
  const send = (name: string) => p.send({ op: 'unlink', parent: 1, name }, () => heard.push(name))
  await send('a')
  await send('b')
  t.equal(calls.length, 2, 'two requests out')
  calls[1]!.resolve({ dirs: [] }) // b's answer first
  await tick()
  t.same(heard, [], 'b waits for a')
  calls[0]!.resolve({ dirs: [] })
  await p.settled()
  t.same(heard, ['a', 'b'], 'a, then b')

  // a batch and a lone change: their answers resolve through different numbers of steps
  await send('c')
  await send('d')
  await send('e')
  await send('f')
  calls[2]!.resolve({ dirs: [] }) // c alone; d goes alone too, e and f wait together
  await tick()
  const batch = calls.find((c) => c.op === 'ahead')!
  const lone = calls[3]!
  batch.resolve({ results: [{ dirs: [] }, { dirs: [] }] })
  lone.resolve({ dirs: [] })
  await p.settled()
  t.same(heard, ['a', 'b', 'c', 'd', 'e', 'f'], 'every outcome in sending order')
})

t.test('a request answered before the one sent ahead of it settled sends its failed changes again once that one has', async (t) => {
  const { p, calls, heard, send } = unlinkPipeline()
  await send('a')
  await send('b')
  t.equal(calls.length, 2, 'two requests out')
  // b's request reached a new meta before a's retry did: refused
  calls[1]!.reject(fsError('ENOENT', 'no such name (yet)'))
  await tick()
  t.equal(calls.length, 2, 'b waits for a before anything more')
  calls[0]!.resolve({ dirs: [] })
  await tick()
  t.equal(calls.length, 3, 'a settled: b goes once more')
  t.equal(calls[2]!.op, 'unlink')
  t.same((calls[2]!.body as { name: string }).name, 'b')
  calls[2]!.resolve({ dirs: [] })
  await p.settled()
  t.ok(heard.get('a')?.ok && heard.get('b')?.ok, 'both heard success')

  // answered after the one before it settled: its failure is final, no second try
  await send('c')
  calls[3]!.reject(fsError('EEXIST', 'refused'))
  await p.settled()
  t.equal(calls.length, 4, 'not sent again')
  t.notOk(heard.get('c')?.ok, 'c heard its failure')

  // answered first, but with no answer at all within the deadline: a second
  // try would only wait out another deadline
  await send('d')
  await send('e')
  calls[5]!.reject(fsError('ETIMEDOUT', 'cluster did not answer within 30000 ms'))
  await tick()
  calls[4]!.resolve({ dirs: [] })
  await p.settled()
  t.equal(calls.length, 6, 'a timed-out change is not sent again')
  t.equal((heard.get('e') as { error?: { code?: string } } | undefined)?.error?.code, 'ETIMEDOUT', 'e heard its timeout')
})
