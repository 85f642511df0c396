/**
 * Meta's background cost on a healthy cluster with many blocks (issue: "meta's
 * background work with 1,000,000 block rows costs under 1% of a core").
 *
 *   node dist/tools/bench/meta-idle.js [--blocks 1000000] [--seconds 180] [--warmup 30] [--dir DIR]
 *
 * Builds a synthetic meta database (one file of one 4 MiB block per block row,
 * two replica rows per block over three nodes) with SQL alone, starts a real
 * nats-server and a real `berth meta` on it, and three stand-in data nodes in
 * this process that do what a healthy node does for meta with no client
 * around: heartbeat every HEARTBEAT_MS and answer inventory pages (the copies
 * they would hold, sorted by hash) and the other node commands. Stand-ins, not
 * real nodes: a million real block files would measure the disk, not meta.
 * With --dir, a database left there by an earlier run (same --blocks) is reused.
 * Then it samples meta's CPU time (/proc/PID/stat utime + stime) over
 * --seconds after --warmup, and prints it as a share of one core, with the
 * reconciliation passes the nodes saw.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { NatsConnection } from 'nats'
import { connectNats } from '../../common/nats-connect'
import { HEARTBEAT_MS, nodeCommand, type InventoryEntry, type NodeCommandReplies } from '../../common/protocol'
import { encode, parseBody, serve, subjects } from '../../common/wire'
import { launchNatsServer } from '../../cli/nats-server'
import { spawnService } from '../../cli/spawn-service'
import { openDatabase } from '../../meta/sqlite'
import { migrate } from '../../meta/schema'

const NODES = 3
const BLOCK = 4 * 1024 * 1024
const hashOf = (i: number) => i.toString(16).padStart(64, '0')

/** Rows for `blocks` files, with SQL's recursive CTE (seconds for a million rows). */
async function buildDatabase(file: string, blocks: number): Promise<void> {
  const db = await openDatabase(file, migrate, { sync: 'normal' })
  const now = Math.floor(Date.now() / 1000)
  await db.write(async (w) => {
    const seq = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${blocks})`
    await w.exec(`${seq} INSERT INTO inodes (ino, mode, nlink, uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns)
      SELECT i + 1, ${0o100644}, 1, 0, 0, ${BLOCK}, ${now}, 0, ${now}, 0, ${now}, 0 FROM n`)
    await w.exec(`${seq} INSERT INTO dentries (parent, name, ino) SELECT 1, 'f' || i, i + 1 FROM n`)
    await w.exec(`${seq} INSERT INTO chunks (ino, idx, hash, len) SELECT i + 1, 0, printf('%064x', i), ${BLOCK} FROM n`)
    await w.exec(`${seq} INSERT INTO blocks (hash, refs, size) SELECT printf('%064x', i), 1, ${BLOCK} FROM n`)
    // node k holds every block with i % 3 != k: two copies each
    for (let k = 0; k < NODES; k++) {
      await w.exec(`${seq} INSERT INTO replicas (hash, node_id, since) SELECT printf('%064x', i), 'n${k}', 0 FROM n WHERE i % ${NODES} != ${k}`)
    }
  })
  await db.close()
}

/** What a healthy data node does for meta: heartbeats and node commands. */
function standInNode(nc: NatsConnection, cluster: string, k: number, blocks: number, seen: { pages: number; entries: number; other: Record<string, number> }): () => void {
  const s = subjects(cluster)
  const id = `n${k}`
  const held = Math.floor((blocks * (NODES - 1)) / NODES)
  const beat = () =>
    nc.publish(
      s.heartbeat,
      encode({ id, url: `http://127.0.0.1:${9 + k}`, capacity: 1e13, used: held * BLOCK, blocks: held, state: 'up', startedAt: Date.now(), fsId: `bench:${k}` }),
    )
  beat()
  const timer = setInterval(beat, HEARTBEAT_MS)
  const sub = serve(nc, s.nodeCmd(id), {}, (msg) => {
    const cmd = parseBody(nodeCommand, msg.data)
    if (cmd.op === 'inventory') {
      seen.pages++
      const entries: InventoryEntry[] = []
      let i = cmd.after ? Number.parseInt(cmd.after, 16) + 1 : 1
      for (; i <= blocks && entries.length < cmd.limit; i++) if (i % NODES !== k) entries.push({ hash: hashOf(i), size: BLOCK, age: 86_400_000 })
      while (i <= blocks && i % NODES === k) i++
      seen.entries += entries.length
      const reply: NodeCommandReplies['inventory'] = { entries, more: i <= blocks, now: Date.now() }
      return reply
    }
    seen.other[cmd.op] = (seen.other[cmd.op] ?? 0) + 1
    if (cmd.op === 'clock') return { now: Date.now() }
    if (cmd.op === 'has') return { present: cmd.hashes }
    if (cmd.op === 'delete') return { deleted: 0, kept: cmd.hashes }
    if (cmd.op === 'verify') return { bad: [], missing: [] }
    if (cmd.op === 'drain') return { draining: cmd.on }
    return { ok: true }
  })
  return () => {
    clearInterval(timer)
    sub.unsubscribe()
  }
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after the command name (which may hold spaces) start at ") "
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { blocks: { type: 'string', default: '1000000' }, seconds: { type: 'string', default: '180' }, warmup: { type: 'string', default: '30' }, dir: { type: 'string' }, 'meta-arg': { type: 'string', multiple: true } },
  })
  const blocks = Number(values.blocks)
  const seconds = Number(values.seconds)
  const warmup = Number(values.warmup)
  if (!Number.isInteger(blocks) || blocks < 1) throw new Error('--blocks must be a positive integer')
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'berth-bench-idle-'))
  mkdirSync(join(dir, 'meta'), { recursive: true })
  const dbFile = join(dir, 'meta', 'meta.db')
  const stops: Array<() => Promise<unknown> | void> = []
  try {
    let t0 = Date.now()
    // --dir with a database from an earlier run: reuse it (building a million rows takes minutes on a busy machine)
    if (!existsSync(dbFile)) {
      await buildDatabase(dbFile, blocks)
      process.stderr.write(`database with ${blocks} blocks, ${blocks * 2} replica rows: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
    }
    const nats = await launchNatsServer({ dir: join(dir, 'nats') })
    stops.unshift(() => nats.stop())
    const nodeNc = await connectNats({ url: nats.url, name: 'bench-idle-nodes', ...nats.users.node })
    stops.unshift(() => nodeNc.close())
    const seen = { pages: 0, entries: 0, other: {} as Record<string, number> }
    for (let k = 0; k < NODES; k++) stops.unshift(standInNode(nodeNc, 'berth', k, blocks, seen))
    const env = { BERTH_NATS_USER: nats.users.meta.user, BERTH_NATS_PASS: nats.users.meta.pass, BERTH_SECRET: randomBytes(16).toString('hex'), BERTH_LOG: 'warn' }
    t0 = Date.now()
    const meta = await spawnService(['meta', '--nats', nats.url, '--db', dbFile, '--replicas', '2', ...(values['meta-arg'] ?? [])], { env, readyTimeoutMs: 120_000 })
    stops.unshift(() => meta.stop())
    process.stderr.write(`meta ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; warm-up ${warmup} s, then ${seconds} s measured\n`)
    await new Promise((r) => setTimeout(r, warmup * 1000))
    const cpu0 = cpuSeconds(meta.pid)
    const seen0 = { ...seen }
    const wall0 = Date.now()
    await new Promise((r) => setTimeout(r, seconds * 1000))
    const cpu = cpuSeconds(meta.pid) - cpu0
    const wall = (Date.now() - wall0) / 1000
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
    process.stdout.write(
      [
        `meta background CPU, healthy cluster, ${blocks} blocks x 2 replicas on ${NODES} nodes, ${wall.toFixed(0)} s measured (load ${load})`,
        `  CPU: ${cpu.toFixed(2)} s = ${((cpu / wall) * 100).toFixed(2)}% of one core`,
        `  inventory pages served: ${seen.pages - seen0.pages} (${seen.entries - seen0.entries} entries); other node commands: ${JSON.stringify(seen.other)}`,
        `  meta stderr (last lines): ${meta.stderr().trim().split('\n').slice(-3).join(' | ') || '(none)'}`,
        '',
      ].join('\n'),
    )
  } finally {
    for (const stop of stops) await Promise.resolve(stop()).catch(() => undefined)
    if (!values.dir) rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench meta-idle: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
