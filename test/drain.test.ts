/**
 * Drain, decommission and forget with real processes (meta/node-admin.ts):
 * - `berth node drain` while a writer keeps writing: the node leaves placement
 *   at once, ends with no blocks, `berth node decommission` removes it from
 *   `berth status`, and every file reads back with its hash verified;
 * - `berth node forget` of a dead node is refused until its blocks have their
 *   copies elsewhere, then removes it.
 * The drain's rate is reported beside the disk's own fsync'd write MB/s;
 * BERTH_DRAIN_MB sets the data written before the drain (default about
 * 7.5 MiB in 256 KiB files; above 64, 4 MiB files), BERTH_REPAIR_MBPS meta's
 * --repair-mbps (default 64, meta's own default; 0 = unlimited).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import type { BlockClient } from '../common/block-client'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO, type StatusReply } from '../common/protocol'
import { startCluster, type TestCluster } from './helpers/cluster'
import { blockClient, diskBytes, diskWriteMBps, eventually, nodeDirs, pinned } from './helpers/lifecycle'
import { namesBlock } from '../common/block-hash'

const REG = 0o100644
const FAST = ['--reconcile-interval-ms', '2000', '--repair-interval-ms', '300', '--gc-grace-ms', '500', '--repair-mbps', process.env.BERTH_REPAIR_MBPS ?? '64']
const DRAIN_MB = Number(process.env.BERTH_DRAIN_MB ?? 0)

function berth(c: TestCluster, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, ...args, '--nats', c.nats.url], { env: { ...process.env, ...c.env('client') }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    )
  })
}

let seq = 0
async function writeFile(bc: BlockClient, meta: MetaClient, data: Buffer): Promise<{ ino: number; hash: string }> {
  const session = `d-${seq}`
  const f = (await meta.call('mknod', { parent: ROOT_INO, name: `f${seq++}`, mode: REG, uid: 0, gid: 0 })).attr
  const p = await pinned(bc, meta, session).put(data)
  await meta.call('commit', { ino: f.ino, session, size: data.length, chunks: [{ idx: 0, hash: p.hash, len: data.length, nodes: p.nodes }] })
  return { ino: f.ino, hash: p.hash }
}

async function verifyAll(t: Test, bc: BlockClient, meta: MetaClient, files: Array<{ ino: number; hash: string }>): Promise<void> {
  let bad = 0
  for (const f of files) {
    const ch = (await meta.call('chunks', { ino: f.ino })).chunks[0]
    if (!ch?.hash) {
      bad++
      continue
    }
    const got = await bc.get(ch.hash, ch.nodes)
    if (!namesBlock(f.hash, got)) bad++
  }
  t.equal(bad, 0, `all ${files.length} files verify`)
}

const idOf = (dir: string) => readFileSync(join(dir, 'node-id'), 'utf8').trim()

t.test('drain while a writer writes, then decommission', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: FAST, nodeArgs: ['--scrub-interval-ms', '0'] })
  const bc = await blockClient(t, c, 3)
  const meta = await c.metaClient()
  const files: Array<{ ino: number; hash: string }> = []
  if (DRAIN_MB > 64) for (let i = 0; i < Math.ceil(DRAIN_MB / 4); i++) files.push(await writeFile(bc, meta, randomBytes(4 * 1024 * 1024)))
  else for (let i = 0; i < 30; i++) files.push(await writeFile(bc, meta, randomBytes(256 * 1024 + i)))
  const victim = idOf(nodeDirs(c)[0]!)
  const onVictim = diskBytes(nodeDirs(c)[0]!).blocks
  const disk = diskWriteMBps(c.dir, Math.min(256, Math.max(16, DRAIN_MB)) * 1024 * 1024)
  const drainStart = Date.now()

  let writing = true
  const writer = (async () => {
    while (writing) files.push(await writeFile(bc, meta, randomBytes(200 * 1024 + seq)))
  })()
  const r = await berth(c, ['node', 'drain', victim])
  t.equal(r.code, 0, `drain accepted: ${r.out}${r.err}`)
  const st = JSON.parse((await berth(c, ['status', '--json'])).out) as StatusReply
  t.equal(st.nodes.find((n) => n.id === victim)?.admin, 'draining', 'status says draining')
  t.ok(st.drains.some((d) => d.node === victim), 'drain progress listed')

  const drained = await eventually(async () => {
    const s = await meta.call('status', {})
    return s.drains.find((d) => d.node === victim)?.blocks === 0
  }, 5 * 60_000, 500)
  const drainS = (Date.now() - drainStart) / 1000
  writing = false
  await writer
  t.ok(drained, 'no block left on the drained node')
  t.comment(`drained ${(onVictim / 1e6).toFixed(0)} MB (plus what the writer placed there before the drain began) in ${drainS.toFixed(1)} s = ${(onVictim / 1e6 / drainS).toFixed(1)} MB/s with --repair-mbps ${process.env.BERTH_REPAIR_MBPS ?? '64'}; disk fsync'd write ${disk.toFixed(1)} MB/s`)
  const s = await meta.call('status', {})
  t.equal(s.drains.find((d) => d.node === victim)?.blocks, 0, 'still empty after the writer stopped')
  t.equal(s.underReplicated, 0, 'nothing under-replicated')
  const dec = await berth(c, ['node', 'decommission', victim])
  t.equal(dec.code, 0, `decommissioned: ${dec.out}${dec.err}`)
  t.notOk((await meta.call('status', {})).nodes.some((n) => n.id === victim), 'no longer listed')
  await verifyAll(t, bc, meta, files)
})

t.test('forget a dead node: refused until re-protected, then gone', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: ['--repair-interval-ms', '300'], nodeArgs: ['--scrub-interval-ms', '0'] })
  const bc = await blockClient(t, c, 3)
  const meta = await c.metaClient()
  const files: Array<{ ino: number; hash: string }> = []
  for (let i = 0; i < 20; i++) files.push(await writeFile(bc, meta, randomBytes(128 * 1024 + i)))
  const victim = idOf(nodeDirs(c)[0]!)
  const live = await berth(c, ['node', 'forget', victim])
  t.not(live.code, 0, `a live node is not forgotten: ${live.err.trim()}`)
  await c.nodes[0]!.kill()
  const ok = await eventually(async () => {
    const s = await meta.call('status', {})
    return s.nodes.some((n) => n.id === victim && !n.alive) && s.underReplicated === 0
  }, 5 * 60_000, 500)
  t.ok(ok, 're-protected with no command')
  const f = await berth(c, ['node', 'forget', victim, '--json'])
  t.equal(f.code, 0, `forgotten: ${f.out}${f.err}`)
  t.notOk((await meta.call('status', {})).nodes.some((n) => n.id === victim), 'no longer listed')
  await verifyAll(t, bc, meta, files)
})
