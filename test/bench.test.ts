/**
 * `berth bench` end to end on two local directories (no mount needed): every
 * workload row is present with positive figures on both sides, and a missing
 * DIR is a clear error with a non-zero exit. No speed is asserted.
 */
import { execFile } from 'node:child_process'
import { mkdir, readdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import t from 'tap'
import { testDir } from './helpers/test-dir'

const BIN = resolve(__dirname, '../../bin/berth.js')

interface Run {
  code: number
  stdout: string
  stderr: string
}

function berth(args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { maxBuffer: 16 * 1024 * 1024, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      done({ code, stdout, stderr })
    })
  })
}

const TINY = ['--size-mb', '8', '--files', '50', '--tree-files', '200', '--random-reads', '50']
const ALL = ['seq-write', 'seq-read', 'rand-read', 'create', 'stat', 'read', 'delete', 'extract']

t.test('tiny run on two local dirs reports every workload for both sides', async (t) => {
  const root = testDir(t)
  const a = join(root, 'a')
  const b = join(root, 'b')
  await mkdir(a)
  await mkdir(b)
  const r = await berth(['bench', a, '--local', b, ...TINY, '--json'])
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`)
  const out = JSON.parse(r.stdout) as {
    dir: string
    local: string
    tree: { entries: number; files: number } | null
    rows: { name: string; unit: string; dir: number; local: number; ratio: number }[]
  }
  t.equal(out.dir, a)
  t.equal(out.local, b)
  t.same(out.rows.map((row) => row.name), ALL, 'every workload, in order')
  for (const row of out.rows) {
    for (const k of ['dir', 'local', 'ratio'] as const) {
      t.ok(Number.isFinite(row[k]) && row[k] > 0, `${row.name}.${k} = ${row[k]} is a positive number`)
    }
    t.ok(Math.abs(row.ratio - row.dir / row.local) < 1e-9 * row.ratio, `${row.name}.ratio is dir/local`)
  }
  t.equal(out.tree?.files, 200, 'tarball holds --tree-files files')
  t.ok((out.tree?.entries ?? 0) > 200, 'and their directories')
  t.same(await readdir(a), [], 'DIR left clean')
  t.same(await readdir(b), [], 'local dir left clean')
})

t.test('the table names both sides and the ratio', async (t) => {
  const root = testDir(t)
  // DIR and --local may be the same directory: each side gets its own subdirectory.
  const r = await berth(['bench', root, '--local', root, ...TINY, '--only', 'create,extract'])
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`)
  t.match(r.stdout, /DIR\/local/)
  t.match(r.stdout, /create 50 files of 4 KiB/)
  t.match(r.stdout, /tar -xf of \d+ entries \(200 files\)/)
  t.notMatch(r.stdout, /sequential/, '--only leaves the other workloads out')
})

t.test('a missing DIR is a clear error and a non-zero exit', async (t) => {
  const missing = join(testDir(t), 'nope')
  const r = await berth(['bench', missing, ...TINY, '--json'])
  t.not(r.code, 0)
  t.match(r.stderr, `DIR ${missing} does not exist`)
  t.equal(r.stdout, '')
})

t.test('an unknown --only workload is refused', async (t) => {
  const r = await berth(['bench', testDir(t), '--only', 'seq-write,teleport'])
  t.not(r.code, 0)
  t.match(r.stderr, /unknown workload "teleport"/)
})

t.test('--repeat keeps every round and reports the median', async (t) => {
  const root = testDir(t)
  const r = await berth(['bench', root, ...TINY, '--only', 'seq-write,stat', '--repeat', '3', '--json'])
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`)
  const out = JSON.parse(r.stdout) as { rows: { name: string; dir: number; local: number; samples: { dir: number[]; local: number[] } }[] }
  t.same(out.rows.map((row) => row.name), ['seq-write', 'stat'])
  for (const row of out.rows) {
    t.equal(row.samples.dir.length, 3)
    t.equal(row.samples.local.length, 3)
    t.equal(row.dir, [...row.samples.dir].sort((x, y) => x - y)[1], `${row.name}: DIR figure is the median`)
    t.equal(row.local, [...row.samples.local].sort((x, y) => x - y)[1], `${row.name}: local figure is the median`)
  }
})
