/**
 * The follower's batched log reader (meta/log/stream.ts readRange, docs/meta.md
 * "What the log carries"): entries come back in order, a batch at a time from one
 * ordered consumer, also across a jump of the reader's position and a trimmed
 * log; whatever it returns equals reading the same entries one by one.
 */
import { join } from 'node:path'
import t from 'tap'
import { launchNatsServer } from '../cli/nats-server'
import { connectNats } from '../common/nats-connect'
import { MetaLog, type LogEntry } from '../meta/log/stream'
import { testDir } from './helpers/test-dir'

const entry = (n: number): LogEntry => ({ by: 'test', ops: [[['run', 'INSERT INTO t (n) VALUES (?)', [n]]]] })
const numberOf = (e: LogEntry): unknown => (e.ops[0]![0]! as ['run', string, unknown[]])[2][0]

t.test('readRange: batches in order, a moved position, a trimmed log', async (t) => {
  const nats = await launchNatsServer({ dir: join(testDir(t), 'nats') })
  t.teardown(() => nats.stop())
  const nc = await connectNats({ url: nats.url, name: 'log-read', ...nats.users.meta })
  t.teardown(() => nc.close())
  const log = await MetaLog.open(nc, 'berth', 1)
  let last = 0
  for (let n = 1; n <= 150; n++) last = await log.append(entry(n), last)
  t.equal(last, 150, '150 entries appended, fenced one after the other')

  // a follower's catch-up: batches of at most 64 from where it stands
  const got: unknown[] = []
  for (let from = 1; from <= 150; ) {
    const batch = await log.readRange(from, Math.min(150, from + 63))
    t.ok(batch.length >= 1 && batch.length <= 64, `batch from ${from}: ${batch.length} entries`)
    got.push(...batch.map(numberOf))
    from += batch.length
  }
  t.same(got, Array.from({ length: 150 }, (_, i) => i + 1), 'every entry once, in order')

  // a reader that moves (a replica that restored a snapshot, or led for a while) starts afresh there
  t.same((await log.readRange(40, 42)).map(numberOf), [40, 41, 42], 'a jump back is read from the new position')
  t.same((await log.readRange(43, 43)).map(numberOf), [43], 'and goes on from there')
  for (const seq of [7, 99, 150]) t.same(numberOf((await log.readRange(seq, seq))[0]!), numberOf(await log.read(seq)), `entry ${seq} as read alone`)

  // the log trimmed below 120 (a snapshot); appends go on
  await log.trimBelow(120)
  for (let n = 151; n <= 160; n++) last = await log.append(entry(n), last)
  const tail: unknown[] = []
  for (let from = 120; from <= 160; ) {
    const batch = await log.readRange(from, 160)
    tail.push(...batch.map(numberOf))
    from += batch.length
  }
  t.same(tail, Array.from({ length: 41 }, (_, i) => i + 120), 'after a trim, the entries kept and the new ones, in order')
})
