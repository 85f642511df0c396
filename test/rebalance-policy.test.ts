/**
 * meta/rebalance.ts imbalance(): pure logic. A gap beyond 10% of the mean
 * moves bytes only when at least `minBytes` must move (--rebalance-min-mib),
 * so a small cluster whose nodes differ by a few chunks stays put.
 */
import t from 'tap'
import type { NodeInfo } from '../common/protocol'
import { DEFAULT_REBALANCE, imbalance } from '../meta/rebalance'

const MiB = 1024 * 1024
const node = (id: string, used: number): NodeInfo => ({ id, url: `http://${id}`, capacity: 1e12, used, blocks: 0, state: 'up', seen: 0, alive: true })

t.test('the floor: a small gap does not move, the same proportions at scale do', async (t) => {
  // a 4th node joining three that hold 10 MiB each: far off the mean, but only 2.5 MiB to move from the fullest
  const small = [node('a', 10 * MiB), node('b', 10 * MiB), node('c', 10 * MiB), node('d', 0)]
  t.equal(imbalance(small), null, 'under the default 64 MiB floor: even enough')
  const zeroFloor = imbalance(small, { ...DEFAULT_REBALANCE, minBytes: 0 })
  t.same(zeroFloor && { to: zeroFloor.to.id, bytes: zeroFloor.bytes }, { to: 'd', bytes: 2.5 * MiB }, 'with no floor it moves the gap to the new node')
  const big = small.map((n) => ({ ...n, used: n.used * 100 }))
  const gap = imbalance(big)
  t.same(gap && { to: gap.to.id, bytes: gap.bytes }, { to: 'd', bytes: 250 * MiB }, '100x the data: past the floor, it moves')
})

t.test('within 10% of the mean: nothing to move, whatever the floor', async (t) => {
  const even = [node('a', 1000 * MiB), node('b', 1050 * MiB), node('c', 960 * MiB)]
  t.equal(imbalance(even, { ...DEFAULT_REBALANCE, minBytes: 0 }), null)
})
