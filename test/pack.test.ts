/**
 * berth installs like a tool: `npm pack` gives a package that `npm install -g`
 * installs into a fresh prefix, and the installed `berth` runs: --version names
 * the version and commit, no command exits 2, `berth up --no-mount` starts a
 * cluster that `berth status` sees.
 *
 * Gated by BERTH_TEST_PACK=1: the install fetches the dependencies from the npm
 * registry (nothing else: better-sqlite3's prebuilt download falls back to
 * compiling its bundled SQLite against the system's Node headers) and compiling the native modules takes
 * 5-20 minutes on a small machine, too slow for every run.
 */
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { readyLine } from './helpers/ready-line'
import { testDir } from './helpers/test-dir'

const ROOT = join(__dirname, '..', '..')
const enabled = process.env.BERTH_TEST_PACK === '1'

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs: number }): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    // not tap's NODE_OPTIONS (its loaders): under them npm's prepack build (tsc 7, an ES module bin) fails with
    // ERR_REQUIRE_CYCLE_MODULE. Dropping it from `env` is not enough: tap's process-info hook wraps spawn and puts
    // it back, so `env -u` removes it in the child itself.
    const child = spawn('env', ['-u', 'NODE_OPTIONS', cmd, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-16384)))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out, err })
    })
  })
}

t.test('npm pack + npm install -g gives a working berth', { skip: enabled ? false : 'set BERTH_TEST_PACK=1 (installs from the npm registry, compiles native modules: minutes)', timeout: 40 * 60_000 }, async (t) => {
  const dir = testDir(t)
  const pack = await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, timeoutMs: 5 * 60_000 })
  t.equal(pack.code, 0, 'npm pack exits 0', { stderr: pack.code === 0 ? undefined : pack.err.slice(-2000) })
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))
  t.ok(tarball, 'a tarball')
  if (!tarball) return
  const prefix = join(dir, 'prefix')
  const install = await run('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', join(dir, tarball)], { timeoutMs: 35 * 60_000 })
  t.equal(install.code, 0, 'npm install -g exits 0', { stderr: install.code === 0 ? undefined : install.err.slice(-3000) })
  const berth = join(prefix, 'bin', 'berth')

  const version = await run(berth, ['--version'], { timeoutMs: 30_000 })
  t.equal(version.code, 0, 'berth --version exits 0')
  t.match(version.out, /^berth \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(-dirty)?, node /, `names version and commit: ${version.out}`)
  const bare = await run(berth, [], { timeoutMs: 30_000 })
  t.equal(bare.code, 2, 'berth without a command exits 2')

  const up = spawn(berth, ['up', '--no-mount', '--json', '--dir', join(dir, 'cluster'), '--nodes', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
  })
  let err = ''
  up.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const ready = await readyLine<{ credentials: string }>(up, 60_000, () => err, 'installed berth up')
  const status = await run(berth, ['status', '--credentials', ready.credentials], { timeoutMs: 30_000 })
  t.equal(status.code, 0, 'installed berth status exits 0', { stderr: status.code === 0 ? undefined : status.err })
  t.match(status.out, /nodes: 1 live of 1|nodes: 0 live of/, 'status answers')
  const exited = new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
  up.kill('SIGTERM')
  t.equal(await exited, 0, 'stops on SIGTERM')
  t.match(err, /berth up: stopped/, 'with its closing line')
})
