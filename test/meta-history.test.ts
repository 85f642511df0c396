/**
 * A history check of replicated meta (issue 9): 4 clients run
 * create/rename/unlink/mkdir/write+commit against three --ha metas on a
 * 3-server NATS cluster while a seeded fault loop kills -9 a meta replica (any
 * of them, the leader or not) or a NATS server and starts it again; afterwards
 * every acknowledged operation is reflected exactly once in the namespace (no
 * acknowledged entry missing, none extra or twice) and every committed file
 * reads back its last acknowledged content. An operation that failed is
 * "uncertain": its names are left out of the check.
 * BERTH_HISTORY_MS sets the length (default 30 s, a fault every 5-10 s; from
 * 120 s on, a fault every 20-40 s as the issue asks: BERTH_HISTORY_MS=300000
 * is its 5-minute run); BERTH_HISTORY_SEED replays a fault sequence.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { MetaClient } from '../common/meta-client'
import { ROOT_INO, type MetaReplies } from '../common/protocol'
import type { ServiceHandle } from '../cli/spawn-service'
import { seededRandom } from '../tools/bench/pattern'
import { startCluster } from './helpers/cluster'

const DURATION_MS = Number(process.env.BERTH_HISTORY_MS ?? 30_000)
const CLIENTS = 4
const SEED = Number(process.env.BERTH_HISTORY_SEED ?? Math.floor(Math.random() * 2 ** 31))
/** Pause between faults: 20-40 s in a long run, 5-10 s in the short one CI runs. */
const FAULT_GAP_MS: [number, number] = DURATION_MS >= 120_000 ? [20_000, 40_000] : [5_000, 10_000]

const who = { uid: 0, gid: 0 }

interface Model {
  dir: number
  /** name -> kind and, for files, the last acknowledged content. */
  entries: Map<string, { kind: 'file' | 'dir'; ino: number; data?: Buffer }>
  uncertain: Set<string>
  acked: number
}

async function client(m: MetaClient, id: number, until: number): Promise<Model> {
  const dir = (await m.call('mkdir', { parent: ROOT_INO, name: `c${id}`, mode: 0o755, ...who })).attr.ino
  const model: Model = { dir, entries: new Map(), uncertain: new Set(), acked: 0 }
  let n = 0
  const files = () => [...model.entries].filter(([, e]) => e.kind === 'file').map(([name]) => name)
  while (Date.now() < until) {
    const pick = n % 6 === 5 ? 4 : n % 6 // writes twice as often
    const name = `n${n++}`
    let touched: string[] = []
    try {
      if (pick === 0 || files().length < 3) {
        touched = [name]
        const a = (await m.call('mknod', { parent: dir, name, mode: 0o100644, ...who })).attr
        model.entries.set(name, { kind: 'file', ino: a.ino })
      } else if (pick === 1) {
        touched = [name]
        const a = (await m.call('mkdir', { parent: dir, name, mode: 0o755, ...who })).attr
        model.entries.set(name, { kind: 'dir', ino: a.ino })
      } else if (pick === 2) {
        const from = files()[0]!
        touched = [from, name]
        await m.call('rename', { parent: dir, name: from, newParent: dir, newName: name })
        model.entries.set(name, model.entries.get(from)!)
        model.entries.delete(from)
      } else if (pick === 3 && files().length > 8) {
        const victim = files()[1]!
        touched = [victim]
        await m.call('unlink', { parent: dir, name: victim })
        model.entries.delete(victim)
      } else {
        const list = files()
        const target = list[n % list.length]!
        touched = [target]
        const e = model.entries.get(target)!
        const data = randomBytes(100 + (n % 2000))
        await m.call('commit', { ino: e.ino, session: `h${id}`, size: data.length, chunks: [{ idx: 0, hash: null, len: data.length, nodes: [], data }] })
        e.data = data
      }
      model.acked++
    } catch (err) {
      // not acknowledged: the outcome is unknown, leave these names out
      for (const x of touched) {
        model.uncertain.add(x)
        model.entries.delete(x)
      }
      t.comment(`client ${id}: ${touched.join(',')} uncertain (${(err as { code?: string }).code})`)
    }
  }
  return model
}

t.test('history: every acknowledged operation exactly once across meta and NATS kills', { timeout: DURATION_MS + 300_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 0, natsServers: 3, metaArgs: ['--ha', '--log-replicas', '3', '--lease-ttl-ms', '3000'] })
  const dbs = [`${c.dir}/meta.db`, `${c.dir}/meta2.db`, `${c.dir}/meta3.db`]
  const metas: ServiceHandle[] = [c.meta, await c.startMeta({ db: dbs[1] }), await c.startMeta({ db: dbs[2] })]
  const nats = c.natsCluster!
  const status = await c.metaClient({ deadlineMs: 60_000 })
  const until = Date.now() + DURATION_MS
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => c.metaClient({ deadlineMs: 60_000 })))
  const work = Promise.all(clients.map((m, i) => client(m, i, until)))

  // fault loop: kill -9 a meta replica (restarted at once, it rejoins as a follower) or a NATS
  // server (restarted a few seconds later, it rejoins the cluster), chosen by the seeded generator
  t.comment(`fault seed ${SEED} (BERTH_HISTORY_SEED=${SEED} replays it)`)
  const rnd = seededRandom(SEED)
  const faults: string[] = []
  for (;;) {
    const gap = FAULT_GAP_MS[0] + rnd() * (FAULT_GAP_MS[1] - FAULT_GAP_MS[0])
    if (Date.now() + gap > until - 5000) break
    await new Promise((r) => setTimeout(r, gap))
    if (rnd() < 0.6) {
      const leaderId = (await status.call('status', {})).metaId
      const i = Math.floor(rnd() * metas.length)
      faults.push(`meta ${i}${metas[i]!.ready.metaId === leaderId ? ' (leader)' : ''}`)
      await metas[i]!.kill()
      metas[i] = await c.startMeta({ db: dbs[i] })
    } else {
      const i = Math.floor(rnd() * nats.servers.length)
      faults.push(`nats ${i}`)
      await nats.kill(i)
      await new Promise((r) => setTimeout(r, 1000 + rnd() * 3000))
      await nats.restart(i)
    }
  }
  const models = await work
  t.ok(faults.length >= 1, `${faults.length} fault(s) during the run: ${faults.join(', ')}`)

  for (const [id, model] of models.entries()) {
    const seen = new Map<string, { ino: number; mode: number }>()
    let cursor: string | null = null
    do {
      const page: MetaReplies['readdir'] = await status.call('readdir', { ino: model.dir, cursor })
      for (const e of page.entries) {
        t.notOk(seen.has(e.name), `client ${id}: ${e.name} listed once`)
        seen.set(e.name, { ino: e.attr.ino, mode: e.attr.mode })
      }
      cursor = page.next
    } while (cursor)
    const missing = [...model.entries.keys()].filter((n) => !seen.has(n))
    const extra = [...seen.keys()].filter((n) => !model.entries.has(n) && !model.uncertain.has(n))
    t.same(missing, [], `client ${id}: no acknowledged entry missing (${model.acked} acknowledged operations)`)
    t.same(extra, [], `client ${id}: no entry that was removed or never acknowledged`)
    const inos = new Set([...seen.values()].map((v) => v.ino))
    t.equal(inos.size, seen.size, `client ${id}: no inode appears twice`)
    let checked = 0
    for (const [name, e] of model.entries) {
      if (!e.data) continue
      const o = await status.call('open', { ino: e.ino, session: 'checker' })
      t.ok(o.chunks[0]?.data && Buffer.from(o.chunks[0].data).equals(e.data), `client ${id}: ${name} reads back its last acknowledged content`)
      checked++
    }
    t.comment(`client ${id}: ${model.acked} acknowledged ops, ${model.entries.size} entries, ${checked} contents checked, ${model.uncertain.size} uncertain`)
  }
})
