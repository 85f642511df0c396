/**
 * Orphans (docs/data-node.md#block-lifecycle): a `berth mount` killed with -9
 * in the middle of a large copy leaves uploaded, never committed blocks on the
 * nodes. Once its session expires (pins dropped), the grace and the orphan
 * age pass, reconciliation deletes them: the nodes' disk usage returns to what
 * the committed files need (referenced bytes x R). BERTH_ORPHAN_TEST_MIB sets
 * the copy's size (default 256 MiB in CI; 1024 is the size it was accepted at).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { diskBytes, eventually, nodeDirs } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { MiB, shAsync } from './helpers/proc'
import { testDir } from './helpers/test-dir'

const SIZE_MIB = Number(process.env.BERTH_ORPHAN_TEST_MIB ?? 256)

t.test('kill -9 of a client mid-copy: orphans reclaimed after the orphan age', { timeout: 600_000 }, async (t) => {
  // not testDir(t): a second call would wipe the cluster's folder
  const srcDir = mkdtempSync(join(tmpdir(), 'berth-orphan-src-'))
  t.teardown(() => rmSync(srcDir, { recursive: true, force: true }))
  const src = join(srcDir, 'big.src')
  await shAsync(`head -c ${SIZE_MIB}M /dev/urandom > ${src}`, { timeoutMs: 180_000 })
  const c = await startCluster(t, {
    nodes: 3,
    replicas: 2,
    metaArgs: ['--gc-grace-ms', '500', '--orphan-age-ms', '3000', '--reconcile-interval-ms', '1000', '--repair-interval-ms', '1000'],
    nodeArgs: ['--trash-hours', '0', '--scrub-interval-ms', '0'],
  })
  // a 10 s session (default 60 s): the test waits for it to expire after the kill
  const m = await mountCluster(t, c, { args: ['--session-ttl-ms', '10000'] })
  t.teardown(() => {
    if (t.passing()) return
    t.comment(`mount stderr: ${m.client.stderr().slice(-3000)}`)
  })
  await shAsync(`head -c ${9 * MiB} ${src} > ${join(m.dir, 'kept.bin')}`, { timeoutMs: 120_000 }) // committed at close
  const used = () => nodeDirs(c).reduce((s, d) => s + diskBytes(d).blocks, 0)
  const trash = () => nodeDirs(c).reduce((s, d) => s + diskBytes(d).trash, 0)

  const cp = spawn('cp', [src, join(m.dir, 'big.bin')], { stdio: 'ignore' })
  t.teardown(() => {
    if (cp.exitCode === null) cp.kill('SIGKILL')
  })
  // mid-copy: about half the file on the nodes (two copies of each block)
  const half = SIZE_MIB * MiB
  const reached = await eventually(() => used() >= half || cp.exitCode !== null, 240_000, 250)
  t.ok(reached && cp.exitCode === null, 'copy still running at the half-way mark')
  await m.client.kill()
  cp.kill('SIGKILL')
  const atKill = used()
  t.comment(`at kill -9: ${atKill} bytes of blocks on the nodes (${(atKill / MiB).toFixed(0)} MiB, copy of ${SIZE_MIB} MiB)`)

  const meta = await c.metaClient({ deadlineMs: 20_000 })
  const need = async () => {
    const st = await meta.call('status', {})
    return st.bytes * 2
  }
  // the client's session (10 s lease) expires, its pins go, GC and the orphan age follow
  const started = Date.now()
  const back = await eventually(async () => used() === (await need()) && trash() === 0, 240_000, 1000)
  const st = await meta.call('status', {})
  t.comment(`after ${((Date.now() - started) / 1000).toFixed(0)} s: ${used()} bytes of blocks on the nodes, ${trash()} in trash; committed files need ${st.bytes} x 2 = ${st.bytes * 2}`)
  t.ok(back, 'disk usage back to what the committed files need')
  if (!back) t.comment(leftovers(c.dir, nodeDirs(c)))
  if (!back) t.comment(`meta stderr: ${c.meta.stderr().slice(-6000)}`)
  t.ok(atKill - used() >= half / 2, 'most of the uncommitted upload was reclaimed')
})

/** Every block copy on the nodes with meta's rows for it: what a leftover is. */
function leftovers(dir: string, nodes: string[]): string {
  const copies = new Map<string, string[]>()
  for (const n of nodes) {
    const root = join(n, 'blocks')
    for (const a of readdirSync(root)) {
      for (const b of readdirSync(join(root, a))) {
        for (const h of readdirSync(join(root, a, b))) {
          const st = statSync(join(root, a, b, h), { throwIfNoEntry: false })
          if (st) copies.set(h, [...(copies.get(h) ?? []), `${n.split('/').pop()}(${st.size}B, mtime ${st.mtime.toISOString()})`])
        }
      }
    }
  }
  const db = new Database(join(dir, 'meta.db'), { readonly: true, fileMustExist: true })
  try {
    const lines = [...copies].map(([h, where]) => {
      const block = db.prepare('SELECT refs, size FROM blocks WHERE hash = ?').get(h)
      const rows = db.prepare('SELECT node_id, since FROM replicas WHERE hash = ?').all(h)
      const pins = db.prepare('SELECT * FROM pins WHERE hash = ?').all(h)
      const queue = db.prepare('SELECT * FROM repair_queue WHERE hash = ?').all(h)
      return `${h.slice(0, 12)}: copies ${where.join(' ')}; block ${JSON.stringify(block)}; rows ${JSON.stringify(rows)}; pins ${JSON.stringify(pins)}; queue ${JSON.stringify(queue)}`
    })
    const nodeRows = db.prepare('SELECT * FROM node_admin').all()
    return [`node_admin: ${JSON.stringify(nodeRows)}`, ...lines].join('\n')
  } catch (err) {
    return `leftovers: ${(err as Error).message}`
  } finally {
    db.close()
  }
}
