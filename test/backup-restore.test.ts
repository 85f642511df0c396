/**
 * Backup and restore (docs/operations.md#backup-and-restore), end to end:
 * files written through a real mount, `berth meta dump` while meta serves and
 * the mount is live, more changes after the dump (a file deleted, one
 * written), meta stopped and its database destroyed, `berth meta load` into a
 * fresh database, a new meta on it against the same data nodes, a new mount:
 * every file of the dump reads back identical (sha256), the later changes are
 * gone, and fsck finds every block on its replicas. GC is held back with a
 * long --gc-grace-ms, as the procedure says, so the deleted file's blocks are
 * still on the nodes at restore.
 */
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { mkdir, symlink, unlink } from 'node:fs/promises'
import { join, relative } from 'node:path'
import t from 'tap'
import type { FsckReport } from '../cli/fsck-scan'
import { berthCli, berthJson } from './helpers/berth-cli'
import { startCluster, type TestCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/**
 * Until the restarted meta has heard every node's heartbeat: fsck counts a
 * copy on a node meta has not heard from yet as unreachable (it failed so
 * now and then when it ran first).
 */
async function nodesHeard(c: TestCluster, n: number): Promise<void> {
  const meta = await c.metaClient()
  for (let i = 0; i < 100; i++) {
    if ((await meta.call('status', {})).nodes.filter((x) => x.alive).length >= n) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`meta heard fewer than ${n} nodes in 10 s`)
}

/** relative path -> sha256 (files) or '->target' (symlinks) or 'dir'. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name)
      const st = lstatSync(p)
      const rel = relative(root, p)
      if (st.isSymbolicLink()) out.set(rel, `->${readlinkSync(p)}`)
      else if (st.isDirectory()) {
        out.set(rel, 'dir')
        walk(p)
      } else out.set(rel, `${sha(readFileSync(p))} ${(st.mode & 0o7777).toString(8)}`)
    }
  }
  walk(root)
  return out
}

// real clusters and mounts, several CLI runs each: one run took 290 s at load 20 on
// this shared 2-core machine, so the file gets 15 min instead of .taprc's 300 s
t.setTimeout(15 * 60_000)

t.test('dump while serving, destroy meta, load into a fresh database, every file reads back identical', async (t) => {
  const c = await startCluster(t, { nodes: 3, replicas: 2, metaArgs: ['--gc-grace-ms', '3600000'] })
  const m = await mountCluster(t, c)
  await mkdir(join(m.dir, 'src', 'deep'), { recursive: true })
  for (let i = 0; i < 20; i++) writeFileSync(join(m.dir, 'src', `small-${i}.txt`), `file ${i}\n`.repeat(i * 50)) // inline in meta
  writeFileSync(join(m.dir, 'src', 'deep', 'medium.bin'), randomBytes(300 * 1024))
  writeFileSync(join(m.dir, 'big.bin'), randomBytes(9 * 1024 * 1024 + 123)) // three chunks
  writeFileSync(join(m.dir, 'doomed.bin'), randomBytes(5 * 1024 * 1024)) // deleted after the dump
  writeFileSync(join(m.dir, 'empty'), '')
  writeFileSync(join(m.dir, 'mode600'), 'private\n', { mode: 0o600 })
  await symlink('big.bin', join(m.dir, 'link'))
  const before = snapshot(m.dir)
  t.ok(before.size >= 27, `${before.size} entries written`)

  const dumpFile = join(c.dir, 'backup', 'meta-dump.db')
  await mkdir(join(c.dir, 'backup'))
  const dump = await berthJson<{ out: string; size: number; sha256: string; schemaVersion: number }>(t, c, ['meta', 'dump', '--out', dumpFile])
  t.equal(dump.code, 0, `dump exits 0 (${dump.stderr})`)
  t.equal(dump.json.out, dumpFile)
  t.equal(statSync(dumpFile).size, dump.json.size, 'the file has the size meta announced')
  t.equal(sha(readFileSync(dumpFile)), dump.json.sha256, 'and its hash')
  t.equal(statSync(dumpFile).mode & 0o777, 0o600, 'readable by its owner only (it holds inline file bytes)')
  t.notOk(readdirSync(c.dir).some((n) => n.includes('.dump-')), 'meta removed its copy after the transfer')

  const again = await berthCli(c, ['meta', 'dump', '--out', dumpFile])
  t.not(again.code, 0, 'a dump never overwrites a file')
  t.match(again.stderr, /exists/)
  t.equal(sha(readFileSync(dumpFile)), dump.json.sha256, 'the first dump is untouched')

  const live = await berthCli(null, ['meta', 'load', join(c.dir, 'meta.db'), '--db', join(c.dir, 'copy.db')])
  t.equal(live.code, 1, 'the live database is not a dump')
  t.match(live.stderr, /live \(or crashed\) database/)
  t.notOk(existsSync(join(c.dir, 'copy.db')), 'nothing written')

  // changes after the backup: the restore goes back to the dump's state
  await unlink(join(m.dir, 'doomed.bin'))
  writeFileSync(join(m.dir, 'after-dump.bin'), randomBytes(200 * 1024))
  await m.unmount()

  await c.meta.stop()
  for (const f of ['meta.db', 'meta.db-wal', 'meta.db-shm']) rmSync(join(c.dir, f), { force: true })

  const fresh = join(c.dir, 'restored', 'meta.db')
  const notDump = join(c.dir, 'not-a-dump.db')
  writeFileSync(notDump, 'hello\n')
  const bad = await berthCli(null, ['meta', 'load', notDump, '--db', fresh])
  t.equal(bad.code, 1, 'loading a file that is not a dump fails')
  t.match(bad.stderr, /not an SQLite database/)
  t.notOk(existsSync(fresh), 'and writes nothing')
  const usage = await berthCli(null, ['meta', 'load', dumpFile])
  t.equal(usage.code, 2, 'load without --db is a usage error')

  const load = await berthJson<{ db: string; inodes: number; files: number }>(t, null, ['meta', 'load', dumpFile, '--db', fresh])
  t.equal(load.code, 0, `load exits 0 (${load.stderr})`)
  t.equal(load.json.db, fresh)
  t.equal(load.json.files, 25, 'the dump holds the 25 files written before it')
  const over = await berthCli(null, ['meta', 'load', dumpFile, '--db', fresh])
  t.equal(over.code, 1, 'load never overwrites a database')
  t.match(over.stderr, /exists/)

  c.meta = await c.startMeta({ db: fresh })
  const m2 = await mountCluster(t, c)
  const after = snapshot(m2.dir)
  t.same([...after.keys()].sort(), [...before.keys()].sort(), 'the same names as at the dump (after-dump.bin gone, doomed.bin back)')
  for (const [p, v] of before) t.equal(after.get(p), v, `${p} identical`)
  await m2.unmount()

  await nodesHeard(c, 3)
  const fsck = await berthJson<FsckReport>(t, c, ['fsck'])
  t.equal(fsck.code, 0, `fsck: every block of the restored namespace is on its replicas (${JSON.stringify({ degraded: fsck.json.degraded, problems: fsck.json.problems, stderr: fsck.stderr.slice(0, 500) })})`)
  t.equal(fsck.json.lost.length, 0)
  t.ok(fsck.json.orphanCount >= 1, 'the block written after the dump is an orphan now (collected after --orphan-age-ms)')
})

/** The shell lines docs/operations.md gives for putting trashed copies back (run in a stopped node's folder). */
function untrashScript(): string {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'operations.md'), 'utf8')
  const m = /<!-- untrash -->\s*```sh\n([\s\S]*?)```/.exec(doc)
  if (!m) throw new Error('docs/operations.md lost its untrash snippet')
  return m[1]!
}

t.test('a file deleted after the dump and collected by GC comes back from the nodes\' trash', async (t) => {
  // GC at once: the deleted file's copies are in trash before the restore
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--gc-grace-ms', '0'] })
  const m = await mountCluster(t, c)
  const data = randomBytes(6 * 1024 * 1024)
  writeFileSync(join(m.dir, 'precious.bin'), data)
  const dumpFile = join(c.dir, 'dump.db')
  // the same commands under the names people look for first
  t.equal((await berthCli(c, ['meta', 'backup', '--out', dumpFile, '--no-progress'])).code, 0, 'dumped (berth meta backup)')
  await unlink(join(m.dir, 'precious.bin'))
  await m.unmount()
  const nodeDirs = [0, 1].map((i) => join(c.dir, `node${i}`))
  const trashed = () => nodeDirs.reduce((n, d) => n + readdirSync(join(d, 'trash')).length, 0)
  while (trashed() < 4) await new Promise((r) => setTimeout(r, 200)) // 2 blocks x 2 copies
  t.equal(trashed(), 4, 'GC moved both blocks\' copies to trash')

  await c.meta.stop()
  for (const n of c.nodes) await n.stop()
  const fresh = join(c.dir, 'meta-restored.db')
  t.equal((await berthCli(null, ['meta', 'restore', dumpFile, '--db', fresh])).code, 0, 'loaded (berth meta restore)')
  for (const d of nodeDirs) {
    const r = spawnSync('bash', ['-euc', untrashScript()], { cwd: d, encoding: 'utf8' })
    t.equal(r.status, 0, `untrash in ${d}: ${r.stderr}`)
  }
  t.equal(trashed(), 0, 'trash emptied back into blocks/')
  c.nodes = [await c.startNode({ dir: nodeDirs[0] }), await c.startNode({ dir: nodeDirs[1] })]
  c.meta = await c.startMeta({ db: fresh })
  const m2 = await mountCluster(t, c)
  t.equal(sha(readFileSync(join(m2.dir, 'precious.bin'))), sha(data), 'the file reads back identical')
  await m2.unmount()
  await nodesHeard(c, 2)
  const fsck = await berthJson<FsckReport>(t, c, ['fsck'])
  t.equal(fsck.code, 0, `fsck clean: both copies of both blocks back in place (${JSON.stringify({ degraded: fsck.json.degraded, problems: fsck.json.problems, stderr: fsck.stderr.slice(0, 500) })})`)
})
