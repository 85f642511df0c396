/**
 * Byte-range lock arithmetic (meta/lock-ranges.ts) against a byte-by-byte
 * model: thousands of random lock, unlock and re-lock requests by owners of
 * two sessions (whose kernel owner ids collide), each checked for the grant
 * decision, the owner's ranges afterwards (disjoint, sorted, merged) and
 * whether anything was given up.
 */
import t from 'tap'
import { LOCK_EOF } from '../common/protocol'
import { applyToOwner, conflictOf, released, type HeldLock, type LockRange, type LockType } from '../meta/lock-ranges'

const BYTES = 24
type Cell = LockType | null

/** A deterministic PRNG (mulberry32): a failure replays from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function cells(ranges: readonly LockRange[]): Cell[] {
  const c: Cell[] = new Array<Cell>(BYTES).fill(null)
  for (const r of ranges) for (let i = r.start; i <= Math.min(r.end, BYTES - 1); i++) c[i] = r.type
  return c
}

t.test('random histories agree with a byte model', async (t) => {
  const owners = [
    { session: 's1', owner: 'a' },
    { session: 's1', owner: 'b' },
    { session: 's2', owner: 'a' }, // the same kernel owner id on another mount
  ]
  let grants = 0
  let refusals = 0
  for (let seed = 1; seed <= 300; seed++) {
    const rand = rng(seed)
    const model: Cell[][] = owners.map(() => new Array<Cell>(BYTES).fill(null))
    const ranges: LockRange[][] = owners.map(() => [])
    for (let step = 0; step < 60; step++) {
      const who = Math.floor(rand() * owners.length)
      const type = (['r', 'w', 'u'] as const)[Math.floor(rand() * 3)]!
      const start = Math.floor(rand() * BYTES)
      const end = start + Math.floor(rand() * (BYTES - start))
      const held: HeldLock[] = ranges.flatMap((rs, i) => rs.map((r) => ({ ...r, ...owners[i]! })))
      const conflict = type === 'u' ? undefined : conflictOf(held, { ...owners[who]!, type, start, end })
      let modelConflict = false
      if (type !== 'u') {
        for (let i = 0; i < owners.length; i++) {
          if (i === who) continue
          for (let b = start; b <= end; b++) {
            const c = model[i]![b]
            if (c && (c === 'w' || type === 'w')) modelConflict = true
          }
        }
      }
      if (!!conflict !== modelConflict) {
        t.fail(`seed ${seed} step ${step}: conflict ${!!conflict}, model says ${modelConflict}`)
        return
      }
      if (conflict) {
        refusals++
        continue
      }
      grants++
      const before = ranges[who]!
      const after = applyToOwner(before, { type, start, end, pid: step })
      const m = model[who]!
      const gaveUp = m.some((c, b) => b >= start && b <= end && c !== null && (type === 'u' || (c === 'w' && type === 'r')))
      for (let b = start; b <= end; b++) m[b] = type === 'u' ? null : type
      if (JSON.stringify(cells(after)) !== JSON.stringify(m)) {
        t.fail(`seed ${seed} step ${step}: ranges ${JSON.stringify(after)} differ from the model ${JSON.stringify(m)}`)
        return
      }
      for (let i = 1; i < after.length; i++) {
        const [p, q] = [after[i - 1]!, after[i]!]
        if (q.start <= p.end || (q.type === p.type && q.start === p.end + 1)) {
          t.fail(`seed ${seed} step ${step}: ranges overlap or were not merged: ${JSON.stringify(after)}`)
          return
        }
      }
      if (released(before, after) !== gaveUp) {
        t.fail(`seed ${seed} step ${step}: released() says ${!gaveUp}, the model ${gaveUp}`)
        return
      }
      ranges[who] = after
    }
  }
  t.ok(grants > 5000 && refusals > 1000, `both outcomes exercised (${grants} granted, ${refusals} refused)`)
})

t.test('an owner never conflicts with itself; read locks share; EOF ranges reach any offset', async (t) => {
  const me = { session: 's', owner: 'o' }
  const held: HeldLock[] = [{ ...me, type: 'w', start: 0, end: LOCK_EOF, pid: 1 }]
  t.equal(conflictOf(held, { ...me, type: 'w', start: 5, end: 9 }), undefined, 'own write lock')
  t.ok(conflictOf(held, { session: 's', owner: 'p', type: 'r', start: 2 ** 52, end: 2 ** 52 }), 'a lock to EOF covers any offset')
  const readers: HeldLock[] = [{ ...me, type: 'r', start: 0, end: 99, pid: 1 }]
  t.equal(conflictOf(readers, { session: 't', owner: 'o', type: 'r', start: 50, end: 200 }), undefined, 'two readers')
  t.same(conflictOf(readers, { session: 't', owner: 'o', type: 'w', start: 99, end: 99 }), readers[0], 'a writer meets the reader at its last byte')
})

t.test('splitting and merging keep pids', async (t) => {
  const one = applyToOwner([], { type: 'w', start: 0, end: 99, pid: 7 })
  const split = applyToOwner(one, { type: 'r', start: 10, end: 19, pid: 8 })
  t.same(split, [
    { type: 'w', start: 0, end: 9, pid: 7 },
    { type: 'r', start: 10, end: 19, pid: 8 },
    { type: 'w', start: 20, end: 99, pid: 7 },
  ])
  const merged = applyToOwner(split, { type: 'w', start: 10, end: 19, pid: 9 })
  t.same(merged, [{ type: 'w', start: 0, end: 99, pid: 9 }], 'one range again, with the newest pid')
  t.same(applyToOwner(merged, { type: 'u', start: 0, end: LOCK_EOF, pid: 0 }), [], 'unlock everything')
  t.notOk(released(one, merged), 'the same bytes, written again, gave nothing up')
  t.ok(released(one, split), 'a downgrade gives up the write lock')
})
