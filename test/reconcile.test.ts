/**
 * Reconciliation and repair against real nodes (docs/data-node.md#block-lifecycle):
 * - a replica file deleted by hand is found missing and copied again;
 * - a copy scrub finds corrupt is reported at once and repaired from a good one;
 * - a node killed and restarted after its blocks were repaired elsewhere:
 *   the extra copies are trimmed back to R and `berth fsck` is clean;
 * - `berth status` counts blocks below R apart from blocks below min(R, live).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import type { FsckReport } from '../cli/fsck-scan'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO } from '../common/protocol'
import type { BlockClient } from '../common/block-client'
import { startCluster, type TestCluster } from './helpers/cluster'
import { blockClient, blockPath, eventually, holders, nodeDirs, pinned } from './helpers/lifecycle'
import { namesBlock } from '../common/block-hash'

const REG = 0o100644
const who = { uid: 0, gid: 0 }
const FAST = ['--reconcile-interval-ms', '500', '--repair-interval-ms', '300', '--gc-grace-ms', '500']

let fileSeq = 0
/** A committed one-chunk file through the pinned path; returns its block hash and inode. */
async function writeFile(bc: BlockClient, meta: MetaClient, data: Buffer): Promise<{ hash: string; ino: number }> {
  const session = `w-${fileSeq}`
  const f = (await meta.call('mknod', { parent: ROOT_INO, name: `f${fileSeq++}`, mode: REG, ...who })).attr
  const p = await pinned(bc, meta, session).put(data)
  await meta.call('commit', { ino: f.ino, session, size: data.length, chunks: [{ idx: 0, hash: p.hash, len: data.length, nodes: p.nodes }] })
  return { hash: p.hash, ino: f.ino }
}

/** A cluster of `nodes` nodes (R=2, fast repair, no scrub) holding `blocks` committed one-block files. */
async function clusterWithBlocks(t: Test, nodes: number, blocks: number): Promise<{ c: TestCluster; meta: MetaClient; hashes: string[] }> {
  const c = await startCluster(t, { nodes, replicas: 2, metaArgs: FAST, nodeArgs: ['--scrub-interval-ms', '0'] })
  const bc = await blockClient(t, c, nodes)
  const meta = await c.metaClient()
  const hashes: string[] = []
  for (let i = 0; i < blocks; i++) hashes.push((await writeFile(bc, meta, randomBytes(100_000 + i))).hash)
  return { c, meta, hashes }
}

/** Node ids meta lists for `hash` (through a file's chunk map). */
async function listed(meta: MetaClient, ino: number): Promise<string[]> {
  return (await meta.call('chunks', { ino })).chunks[0]?.nodes ?? []
}

function idOf(dir: string): string {
  return readFileSync(join(dir, 'node-id'), 'utf8').trim()
}

t.test('a replica deleted by hand is found and repaired', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: FAST, nodeArgs: ['--scrub-interval-ms', '0'] })
  const bc = await blockClient(t, c, 3)
  const meta = await c.metaClient()
  const data = randomBytes(300_000)
  const { hash, ino } = await writeFile(bc, meta, data)
  const before = holders(c, hash)
  t.equal(before.length, 2, 'two copies')
  unlinkSync(blockPath(before[0]!, hash))
  const lost = idOf(before[0]!)
  const ok = await eventually(async () => {
    const nodes = await listed(meta, ino)
    const onDisk = holders(c, hash).map(idOf).sort()
    return onDisk.length === 2 && nodes.slice().sort().join() === onDisk.join()
  }, 30_000)
  t.ok(ok, 'two copies again, and meta lists exactly the nodes that hold them')
  t.notOk((await listed(meta, ino)).includes(lost) && !holders(c, hash).map(idOf).includes(lost), 'no row for the lost copy')
  for (const n of await listed(meta, ino)) t.ok((await bc.get(hash, [n])).equals(data), `intact on ${n}`)
  t.equal((await meta.call('status', {})).underReplicated, 0)
})

t.test('scrub-found corruption is reported and repaired', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: [...FAST, '--reconcile-interval-ms', '3600000'], nodeArgs: ['--scrub-interval-ms', '50'] })
  const bc = await blockClient(t, c, 3)
  const meta = await c.metaClient()
  const data = randomBytes(200_000)
  const { hash, ino } = await writeFile(bc, meta, data)
  const [bad] = holders(c, hash)
  const bytes = readFileSync(blockPath(bad!, hash))
  bytes[1234] = bytes[1234]! ^ 0xff
  writeFileSync(blockPath(bad!, hash), bytes)
  // reconciliation is off (1 h): only scrub's report can start the repair
  const goodOnDisk = () => holders(c, hash).filter((d) => namesBlock(hash, readFileSync(blockPath(d, hash))))
  const ok = await eventually(async () => {
    const good = goodOnDisk().map(idOf).sort()
    const nodes = (await listed(meta, ino)).sort()
    return good.length === 2 && nodes.join() === good.join()
  }, 30_000)
  t.ok(ok, 'two good copies on disk, exactly the ones meta lists')
  t.notOk(holders(c, hash).includes(bad!) && !goodOnDisk().includes(bad!), 'the corrupt copy is gone')
  for (const n of await listed(meta, ino)) t.ok((await bc.get(hash, [n])).equals(data), `reads back on ${n}`)
})

async function fsck(c: TestCluster): Promise<{ code: number; report: FsckReport | null; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, 'fsck', '--json', '--no-progress', '--nats', c.nats.url], { env: { ...process.env, ...c.env('client') }, timeout: 60_000 }, (err, stdout, stderr) => {
      let report: FsckReport | null = null
      try {
        report = JSON.parse(stdout) as FsckReport
      } catch {
        // reported below
      }
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, report, out: stdout + stderr })
    })
  })
}

t.test('node restart after repair elsewhere: extra copies trimmed to R, fsck clean', async (t: Test) => {
  const { c, meta, hashes } = await clusterWithBlocks(t, 3, 6)
  const dirs = nodeDirs(c)
  const victimIdx = dirs.findIndex((d) => hashes.some((h) => holders(c, h).includes(d)))
  const victimDir = dirs[victimIdx]!
  const onVictim = hashes.filter((h) => holders(c, h).includes(victimDir))
  t.ok(onVictim.length > 0, `${onVictim.length} blocks on the victim`)
  await c.nodes[victimIdx]!.kill()
  const killedAt = Date.now()
  // repair copies the victim's blocks to the other two nodes: after NODE_DEAD_MS
  // (7 s) and a repair pass. 25 s, not more: an inventory ask to the dead node
  // (reconciliation runs every 500 ms here) used to hold repair's turn for 30 s
  t.ok(await eventually(() => onVictim.every((h) => holders(c, h).filter((d) => d !== victimDir).length === 2), 25_000), 'repaired elsewhere')
  t.comment(`repaired ${Date.now() - killedAt} ms after the kill`)
  const st = await meta.call('status', {})
  t.equal(st.underReplicated, 0, 'nothing below min(R, live)')
  // the victim comes back with its old copies: three of each
  c.nodes[victimIdx] = await c.startNode({ dir: victimDir })
  t.ok(await eventually(() => hashes.every((h) => holders(c, h).length === 2), 40_000), 'trimmed back to two copies each')
  t.ok(
    await eventually(async () => {
      const r = await fsck(c)
      if (r.code !== 0) t.comment(r.out.slice(0, 2000))
      return r.code === 0 && r.report?.ok === true
    }, 30_000, 2000),
    'berth fsck clean',
  )
  const r = await fsck(c)
  t.same(r.report?.orphans, [], 'no orphans')
  t.same(r.report?.wrongRows, [], 'no wrong replica rows')
})

t.test('status counts blocks below R apart from below min(R, live)', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 2, metaArgs: FAST })
  const bc = await blockClient(t, c, 1)
  const meta = await c.metaClient()
  await writeFile(bc, meta, randomBytes(90_000))
  const st = await meta.call('status', {})
  t.equal(st.underReplicated, 0, 'one copy is all one live node can hold')
  t.equal(st.belowR, 1, 'but it is below R=2, and status says so')
  t.equal(st.replicas, 2)
})

t.test('a node stops (SIGSTOP) while meta asks it for its inventory or a copy: once it counts as dead, its blocks are re-protected at once, not after the ask times out', async (t: Test) => {
  const { c, hashes } = await clusterWithBlocks(t, 4, 12)
  const dirs = nodeDirs(c)
  // A and B share a block (repair will ask B to copy it once A is dead), and B
  // holds another block A does not (to re-protect once B is dead too)
  let pair: [string, string] | undefined
  for (const a of dirs) {
    for (const b of dirs) {
      const both = hashes.some((h) => holders(c, h).includes(a) && holders(c, h).includes(b))
      const bOnly = hashes.some((h) => holders(c, h).includes(b) && !holders(c, h).includes(a))
      if (a !== b && both && bOnly && !pair) pair = [a, b]
    }
  }
  // 12 blocks, 2 copies each, on 4 nodes: some pair always qualifies
  if (!t.ok(pair, 'two nodes A and B share a block, and B holds one A does not') || !pair) return
  const [aDir, bDir] = pair
  const bOnly = hashes.filter((h) => holders(c, h).includes(bDir) && !holders(c, h).includes(aDir))
  const bPid = c.nodes[dirs.indexOf(bDir)]!.pid
  t.teardown(() => process.kill(bPid, 'SIGCONT'))
  await c.nodes[dirs.indexOf(aDir)]!.kill()
  // B stops 4 s after A died: meta declares A dead (7 s) while B still counts
  // as live (until 4 + 7 s), so repair asks B to copy the shared block, and B,
  // still subscribed to NATS, never answers
  await new Promise((r) => setTimeout(r, 4000))
  process.kill(bPid, 'SIGSTOP')
  const stoppedAt = Date.now()
  const gone = new Set([aDir, bDir])
  const ok = await eventually(() => bOnly.every((h) => holders(c, h).filter((d) => !gone.has(d)).length === 2), 20_000)
  t.ok(ok, `the ${bOnly.length} block(s) B held without A have two live copies again ${Date.now() - stoppedAt} ms after B stopped (before: 30-60 s, while an inventory or replicate ask to the stopped B held the turn repair shares)`)
})
