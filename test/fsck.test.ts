/**
 * `berth fsck` against a real cluster written through a real mount: clean at
 * first (exit 0); a block deleted by hand from every replica is reported lost
 * with the file that uses it (exit 1); a replica corrupted on disk is reported
 * corrupt and its block degraded; `--quick` sees the missing block but not the
 * corruption. Scrub is off so nothing repairs the damage behind the test's back.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import type { FsckReport } from '../cli/fsck-scan'
import { ROOT_INO } from '../common/protocol'
import { startCluster, type TestCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { blockName } from '../common/block-hash'

interface Run {
  code: number
  stdout: string
  stderr: string
}

function berth(c: TestCluster, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, ...args, '--nats', c.nats.url], { env: { ...process.env, ...c.env('client') }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

async function fsckJson(t: Test, c: TestCluster, extra: string[] = []): Promise<{ code: number; report: FsckReport; stderr: string }> {
  const r = await berth(c, ['fsck', '--json', ...extra])
  let report: FsckReport
  try {
    report = JSON.parse(r.stdout) as FsckReport
  } catch {
    t.fail(`fsck printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`)
    throw new Error('no JSON')
  }
  return { code: r.code, report, stderr: r.stderr }
}

/** Every copy of `hash` under the cluster's node folders. */
function blockFiles(c: TestCluster, hash: string): string[] {
  return readdirSync(c.dir)
    .filter((d) => /^node\d+$/.test(d))
    .map((d) => join(c.dir, d, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash))
    .filter((p) => existsSync(p))
}

t.test('fsck: clean cluster, then a block deleted from every replica and a corrupt replica', async (t) => {
  // no reconciliation either: the damage must stay for fsck to find
  const c = await startCluster(t, { nodes: 3, replicas: 2, nodeArgs: ['--scrub-interval-ms', '0'], metaArgs: ['--reconcile-interval-ms', '3600000'] })
  const m = await mountCluster(t, c)
  await mkdir(join(m.dir, 'docs'))
  const victim = randomBytes(300 * 1024)
  const damaged = randomBytes(200 * 1024)
  writeFileSync(join(m.dir, 'docs', 'victim.bin'), victim)
  writeFileSync(join(m.dir, 'damaged.bin'), damaged)
  writeFileSync(join(m.dir, 'big.bin'), randomBytes(9 * 1024 * 1024)) // three chunks
  writeFileSync(join(m.dir, 'small.txt'), 'hello fsck\n')
  await m.unmount()

  const clean = await fsckJson(t, c)
  t.equal(clean.code, 0, `clean cluster: exit 0 (${clean.stderr})`)
  t.ok(clean.report.ok, 'report ok')
  t.equal(clean.report.files, 4, 'four files')
  // small.txt is under 64 KiB: its bytes live in meta, not in a block
  t.equal(clean.report.blocks, 5, 'five blocks (3 + 1 + 1; small.txt is inline)')
  t.equal(clean.report.replicasChecked, 10, 'two replicas each')
  t.equal(clean.report.replicasGood, 10)
  t.same(clean.report.wrongRows, [], 'replica rows match the nodes')
  t.equal(clean.report.orphanCount, 0, 'no orphans')

  const human = await berth(c, ['fsck'])
  t.equal(human.code, 0)
  t.match(human.stdout, /fsck: clean/)

  const victimHash = blockName(victim, 'blake3')
  const damagedHash = blockName(damaged, 'blake3')
  const copies = blockFiles(c, victimHash)
  t.equal(copies.length, 2, 'the victim block is on two nodes')
  for (const p of copies) unlinkSync(p)
  const [oneCopy] = blockFiles(c, damagedHash)
  t.ok(oneCopy, 'the damaged block has a copy')
  const bytes = readFileSync(oneCopy!)
  bytes[1000] = bytes[1000]! ^ 0xff
  writeFileSync(oneCopy!, bytes)

  const bad = await fsckJson(t, c)
  t.equal(bad.code, 1, 'problems: exit 1')
  t.notOk(bad.report.ok)
  t.same(bad.report.lost, [victimHash], 'the deleted block is lost')
  t.same(bad.report.degraded, [damagedHash], 'the corrupted block is degraded')
  t.same(
    bad.report.wrongRows.map((w) => [w.hash, w.kind]),
    [[victimHash, 'no-copy'], [victimHash, 'no-copy']],
    'the rows of the deleted copies are wrong rows',
  )
  const missing = bad.report.problems.filter((p) => p.hash === victimHash)
  t.equal(missing.length, 2, 'both replicas reported')
  t.ok(missing.every((p) => p.state === 'missing' && p.files.includes('/docs/victim.bin')), 'missing, with the file that uses it')
  const corrupt = bad.report.problems.filter((p) => p.hash === damagedHash)
  t.equal(corrupt.length, 1)
  t.equal(corrupt[0]?.state, 'corrupt', 'the flipped byte is found')
  t.same(corrupt[0]?.files, ['/damaged.bin'])

  const quick = await fsckJson(t, c, ['--quick'])
  t.equal(quick.code, 1, '--quick: still exit 1')
  t.same(quick.report.lost, [victimHash], '--quick sees the missing block')
  t.same(quick.report.degraded, [], '--quick does not read content, so not the corruption')

  const text = await berth(c, ['fsck', '--no-progress'])
  t.equal(text.code, 1)
  t.match(text.stdout, new RegExp(`MISSING block ${victimHash} on node .*/docs/victim\\.bin`))
  t.match(text.stdout, /LOST: 1 block/)
  t.match(text.stdout, /CORRUPT block/)
  t.match(text.stdout, /fsck: PROBLEMS FOUND/)

  // the namespace itself is untouched by fsck
  const meta = await c.metaClient()
  const root = await meta.call('readdir', { ino: ROOT_INO })
  t.same(root.entries.map((e) => e.name), ['big.bin', 'damaged.bin', 'docs', 'small.txt'])
})

t.test('fsck: bad flags and an unreachable cluster give a clear error and exit 1', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const r = await berth(c, ['fsck', '--concurrency', 'lots'])
  t.equal(r.code, 1)
  t.match(r.stderr, /--concurrency must be an integer/)
  const unreachable = await new Promise<Run>((resolve) => {
    execFile(process.execPath, [BERTH_BIN, 'fsck', '--nats', 'nats://127.0.0.1:1'], { env: { ...process.env, ...c.env('client') }, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err && typeof err.code === 'number' ? err.code : 0, stdout, stderr }),
    )
  })
  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /cannot connect to NATS/)
})
