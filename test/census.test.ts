/**
 * The block census (meta/census.ts) answers for the live nodes as they are
 * when it returns: a node heard while a pass ran starts another pass, so
 * `status` never lists a node live beside counts made without it.
 */
import { join } from 'node:path'
import t from 'tap'
import type { Heartbeat } from '../common/protocol'
import { census } from '../meta/census'
import type { MetaEnv } from '../meta/context'
import { NodeTable } from '../meta/nodes'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

const heartbeat = (id: string): Heartbeat => ({ id, url: `http://127.0.0.1:1/${id}`, capacity: 1e12, used: 0, blocks: 0, state: 'up', startedAt: 1 })

t.test('a node heard while a census pass runs is counted', async (t) => {
  const db = await openDatabase(join(testDir(t), 'meta.db'), migrate)
  t.teardown(() => db.close())
  await db.write(async (tx) => {
    for (const h of ['a', 'b']) {
      const hash = h.repeat(64)
      await tx.run('INSERT INTO blocks (hash, refs, size) VALUES (?, 1, 4096)', [hash])
      await tx.run(`INSERT INTO replicas (hash, node_id, since) VALUES (?, 'n1', 0), (?, 'n2', 0)`, [hash, hash])
    }
  })
  const nodes = new NodeTable(() => Date.now())
  const env: MetaEnv = { db, cluster: 'berth', metaId: 'm', startedAt: Date.now(), secret: 's', chunkSize: 4 << 20, replicas: 2, nodes }
  for (const id of ['n0', 'n1', 'n2']) nodes.seen(heartbeat(id))
  t.match(await census(env), { blocks: 2, underReplicated: 0 }, 'both copies live')

  // a cluster starting: n0 and n1 heard so far (R=2 wanted, one copy each live)
  const later = new NodeTable(() => Date.now())
  const env2: MetaEnv = { ...env, nodes: later }
  later.seen(heartbeat('n0'))
  later.seen(heartbeat('n1'))
  const running = census(env2) // the pass has taken its live set: n0, n1
  later.seen(heartbeat('n2')) // n2 heard before the pass's query returns
  const r = await running
  t.equal(r.live, 'n0,n1,n2', 'the answer is for the nodes live when it returned')
  t.equal(r.underReplicated, 0, 'no block counted under-replicated for want of a node that is live')
})
