/**
 * Failure domains (issue 10): 4 nodes in 2 zones, R=2. Placement puts the two
 * copies of every block in different zones; after a node of zone a dies,
 * repair copies its blocks to the other node of zone a, so every block again
 * has a copy in each zone; `berth status` counts no block with both copies in
 * one zone.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { BlockClient } from '../common/block-client'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { blockClient, eventually, nodeDirs, pinned } from './helpers/lifecycle'

const REG = 0o100644

async function writeFile(bc: BlockClient, meta: MetaClient, i: number): Promise<number> {
  const session = `z-${i}`
  const data = randomBytes(64 * 1024 + i)
  const f = (await meta.call('mknod', { parent: ROOT_INO, name: `f${i}`, mode: REG, uid: 0, gid: 0 })).attr
  const p = await pinned(bc, meta, session).put(data)
  await meta.call('commit', { ino: f.ino, session, size: data.length, chunks: [{ idx: 0, hash: p.hash, len: data.length, nodes: p.nodes }] })
  return f.ino
}

/** Files whose live copies do not cover both zones. */
async function oneZoneOnly(meta: MetaClient, inos: number[]): Promise<number> {
  const st = await meta.call('status', {})
  const zone = new Map(st.nodes.filter((n) => n.alive).map((n) => [n.id, n.zone]))
  let bad = 0
  for (const ino of inos) {
    const nodes = (await meta.call('chunks', { ino })).chunks[0]?.nodes ?? []
    const zones = new Set(nodes.filter((n) => zone.has(n)).map((n) => zone.get(n)))
    if (!(zones.has('a') && zones.has('b'))) bad++
  }
  return bad
}

t.test('4 nodes in 2 zones, R=2: a copy in each zone, also after a node dies', async (t) => {
  const c = await startCluster(t, { nodes: 0, replicas: 2, metaArgs: ['--repair-interval-ms', '300'] })
  for (const z of ['a', 'a', 'b', 'b']) c.nodes.push(await c.startNode({ args: ['--zone', z, '--scrub-interval-ms', '0'] }))
  const bc = await blockClient(t, c, 4)
  const meta = await c.metaClient()
  const inos: number[] = []
  for (let i = 0; i < 30; i++) inos.push(await writeFile(bc, meta, i))
  t.equal(await oneZoneOnly(meta, inos), 0, 'every block has a copy in each zone')
  t.equal((await meta.call('status', {})).sameZone, 0, 'status flags no block')

  // kill a node of zone a that holds blocks
  const victim = readFileSync(join(nodeDirs(c)[0]!, 'node-id'), 'utf8').trim()
  await c.nodes[0]!.kill()
  const ok = await eventually(async () => {
    const st = await meta.call('status', {})
    return st.nodes.some((n) => n.id === victim && !n.alive) && st.underReplicated === 0
  }, 5 * 60_000, 500)
  t.ok(ok, 'repaired with no command')
  t.equal(await oneZoneOnly(meta, inos), 0, 'every block has a copy in each zone again')
  t.equal((await meta.call('status', {})).sameZone, 0, 'status flags no block')
})
