/**
 * client/local-copies.ts without a mount: which byte ranges a copy holds,
 * when it is complete, and what it refuses (small files, a new version while
 * writes of the old are in flight) and evicts (least recently used, never a
 * pinned one).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { eventually } from './helpers/lifecycle'
import { LocalCopies, MAX_COPIES, MIN_COPY_BYTES, RangeSet } from '../client/local-copies'

const MiB = 1024 * 1024

t.test('RangeSet: merges adjacent and overlapping ranges; covers means [0, size) whole', async (t) => {
  const r = new RangeSet()
  t.ok(r.covers(0), 'an empty file is covered by nothing')
  r.add(100, 200)
  r.add(300, 400)
  t.notOk(r.covers(50), 'a gap at the start')
  r.add(0, 100)
  t.ok(r.covers(200), '[0, 200) after [0,100) + [100,200)')
  t.notOk(r.covers(250), 'the hole at [200, 300)')
  r.add(150, 350)
  t.ok(r.covers(400), 'an overlapping range closes the hole')
  r.add(5, 5)
  t.ok(r.covers(400), 'an empty range changes nothing')
  r.clear()
  t.notOk(r.covers(1), 'cleared')
})

t.test('LocalCopies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-copies-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const pinned = new Set<number>()
  const copies = new LocalCopies(join(dir, 'c'), 8 * MiB, (ino) => pinned.has(ino))

  t.equal(copies.forFill(1, { gen: 1, size: MIN_COPY_BYTES - 1 }), undefined, 'no copy of a file under the minimum')
  t.equal(copies.forFill(1, { gen: 1, size: 9 * MiB }), undefined, 'no copy of a file over the limit')

  const one = copies.forFill(2, { gen: 1, size: MiB })
  if (!one) throw new Error('no copy')
  await new Promise<void>((resolve) => one.put(0, Buffer.alloc(MiB / 2, 1), resolve))
  t.notOk(one.complete, 'half written: not complete')
  one.put(MiB / 2, Buffer.alloc(MiB / 2, 2))
  t.equal(copies.forFill(2, { gen: 2, size: MiB }), undefined, 'a new version waits for the old one\'s writes in flight')
  await one.idle()
  t.ok(one.complete, 'all written: complete')
  t.equal(readFileSync(one.path).length, MiB, 'the file holds the bytes')
  const again = copies.forFill(2, { gen: 2, size: MiB })
  t.equal(again, one, 'a new version reuses the copy ...')
  t.notOk(one.complete, '... empty again')

  // eviction: the limit is 8 MiB; ino 2 (1 MiB) pinned
  pinned.add(2)
  for (let ino = 10; ino < 17; ino++) t.ok(copies.forFill(ino, { gen: 1, size: MiB }), `copy ${ino}`)
  const path10 = join(dir, 'c', '10')
  copies.get(11) // 11 is now more recently used than 10
  t.ok(copies.forFill(20, { gen: 1, size: MiB }), 'one more copy fits by dropping the oldest')
  t.equal(copies.get(10), undefined, 'the least recently used went')
  t.ok(copies.get(2), 'the pinned one stayed')
  t.ok(await eventually(() => !existsSync(path10), 5000, 10), 'its file is removed')
  t.ok(MAX_COPIES >= 16, `at most ${MAX_COPIES} copies`)

  copies.close()
  t.notOk(existsSync(join(dir, 'c')), 'close removes the folder')

  // a killed mount's folder: its owner is a process that exited
  const dead = spawnSync('true')
  mkdirSync(join(dir, 'gone'))
  writeFileSync(join(dir, 'gone', 'owner.pid'), String(dead.pid))
  writeFileSync(join(dir, 'gone', '7'), 'copy')
  mkdirSync(join(dir, 'other'))
  const next = new LocalCopies(join(dir, 'next'), MiB, () => false)
  t.notOk(existsSync(join(dir, 'gone')), 'a mount that starts removes the folder of a mount that is gone')
  t.ok(existsSync(join(dir, 'other')), 'and leaves a folder that names no owner')
  t.equal(readFileSync(join(dir, 'next', 'owner.pid'), 'utf8'), String(process.pid), 'its own folder names it')
  next.close()
})
