/**
 * `berth gc`'s two meta operations on a synthetic database, with the data
 * nodes faked at the command boundary (meta/node-commands.ts AskNode):
 * gcBacklog counts exactly what collectGarbage would take (due), keeps
 * (in grace, pinned); Maintenance.runNow runs the GC pass (a due block's rows
 * go and its holders get a conditional delete) and a full reconciliation pass
 * (an orphan past its age is deleted), and reports both.
 */
import { join } from 'node:path'
import type { NatsConnection } from 'nats'
import t from 'tap'
import type { Logger } from '../common/log'
import type { NodeCommand } from '../common/protocol'
import { gcBacklog } from '../meta/block-gc'
import type { MetaEnv } from '../meta/context'
import { Maintenance } from '../meta/maintenance'
import type { AskNode } from '../meta/node-commands'
import { NodeTable } from '../meta/nodes'
import { migrate } from '../meta/schema'
import { openDatabase } from '../meta/sqlite'
import { testDir } from './helpers/test-dir'

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} }
const h = (c: string) => c.repeat(64)

t.test('gc plan and run on a synthetic database', async (t) => {
  const db = await openDatabase(join(testDir(t), 'meta.db'), migrate, { sync: 'normal' })
  t.teardown(() => db.close())
  const now = Date.now()
  await db.write(async (tx) => {
    const block = (hash: string, refs: number, size: number, zeroSince: number | null) =>
      tx.run('INSERT INTO blocks (hash, refs, size, zero_since) VALUES (?, ?, ?, ?)', [hash, refs, size, zeroSince])
    await block(h('a'), 0, 100, now - 10_000) // due
    await block(h('b'), 0, 200, now - 1_000) // in grace (5 s)
    await block(h('c'), 0, 300, now - 10_000) // due by age, but pinned
    await block(h('d'), 1, 400, null) // referenced
    await tx.run('INSERT INTO pins (hash, session, since, count) VALUES (?, ?, ?, 1)', [h('c'), 's1', now])
    for (const [hash, node] of [[h('a'), 'n1'], [h('a'), 'n2'], [h('d'), 'n1']] as const) {
      await tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?)', [hash, node, now - 60_000])
    }
  })

  const deletes: Array<{ node: string; hashes: string[] }> = []
  const ask = (async (node: string, cmd: NodeCommand) => {
    switch (cmd.op) {
      case 'clock':
        return { now: Date.now() }
      case 'delete':
        deletes.push({ node, hashes: [...cmd.hashes] })
        return { deleted: cmd.hashes.length, kept: [] }
      case 'inventory':
        // n1 holds d (listed) and a copy of a block meta never heard of, idle for 5 s
        return { entries: cmd.after ? [] : [{ hash: h('d'), size: 400, age: 60_000 }, { hash: h('e'), size: 500, age: 5_000 }], more: false, now: Date.now() }
      default:
        throw new Error(`unexpected ${cmd.op}`)
    }
  }) as AskNode
  const nodes = new NodeTable()
  nodes.seen({ id: 'n1', url: 'http://127.0.0.1:1', capacity: 1e9, used: 0, blocks: 2, state: 'up', startedAt: now })
  const env: MetaEnv = { db, cluster: 't', metaId: 'm', startedAt: now, secret: 's', chunkSize: 4 << 20, replicas: 2, nodes, askNode: ask }

  const plan = await gcBacklog(env, 5_000, 1_000)
  t.same(plan.due, { blocks: 1, bytes: 100 }, 'a is due')
  t.same({ blocks: plan.inGrace.blocks, bytes: plan.inGrace.bytes }, { blocks: 1, bytes: 200 }, 'b waits in the grace')
  t.equal(plan.inGrace.nextDueAt, now - 1_000 + 5_000, 'due when its grace ends')
  t.same(plan.pinned, { blocks: 1, bytes: 300 }, 'c is pinned')

  // never started: no timers, only the operator's pass
  const m = new Maintenance({} as unknown as NatsConnection, env, quiet, { gcGraceMs: 5_000, orphanAgeMs: 1_000, reconcileEveryMs: 3_600_000 })
  const r = await m.runNow()
  t.same(r, { blocks: 1, bytes: 100, orphansDeleted: 1, orphansKept: 0, rowsRemoved: 0, rowsAdded: 0 })
  t.same(deletes.filter((d) => d.hashes.includes(h('a'))).map((d) => d.node).sort(), ['n1', 'n2'], "a's holders were told to delete it")
  t.same(deletes.filter((d) => d.hashes.includes(h('e'))).map((d) => d.node), ['n1'], 'the orphan was deleted on n1')
  t.notOk(await db.read.get('SELECT 1 AS x FROM blocks WHERE hash = ?', [h('a')]), "a's row is gone")
  const after = await gcBacklog(env, 5_000, 1_000)
  t.same(after.due, { blocks: 0, bytes: 0 }, 'nothing due after the run')
  t.equal(after.inGrace.blocks, 1, 'b still waits')
  t.equal(after.pinned.blocks, 1, 'c still pinned')
  await m.stop()
})
