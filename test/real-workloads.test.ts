/**
 * Real programs on a mount give what they give on a local disk (issue 8):
 * - `git clone` of a repository of BERTH_GIT_FILES files (default 300 in CI;
 *   10000 for the size), then `git status` and `git fsck`, beside the
 *   same clone into a local folder: same files, clean status.
 * - A real C project built on the mount and locally: SQLite's autoconf
 *   tarball (the one the sqlite3 npm package ships in deps/, fetched once with
 *   `npm pack` into the test cache), `./configure && make -j2`;
 *   both builds succeed, produce the same files, and their `sqlite3` answers
 *   the same query. Long (minutes on 2 cores), so only with
 *   BERTH_REAL_WORKLOADS=1.
 * Times are reported beside the local ones, never asserted.
 */
import { execSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { testDir } from './helpers/test-dir'

const GIT_FILES = Number(process.env.BERTH_GIT_FILES ?? 300)
/**
 * SQLite's autoconf tarball: meta no longer depends on the sqlite3 package
 * (better-sqlite3 ships only the amalgamation), so the tarball that package
 * carries in deps/ is fetched once from the npm registry into the test cache.
 */
function sqliteTarball(): string | null {
  const cache = join(process.env.BERTH_TEST_CACHE ?? '/var/cache/berth-test', 'sqlite-autoconf')
  const find = () => (existsSync(cache) ? readdirSync(cache).find((n) => /^sqlite-autoconf-.*\.tar\.gz$/.test(n)) : undefined)
  if (!find()) {
    try {
      mkdirSync(cache, { recursive: true })
      const pkg = sh('npm pack sqlite3@6.0.1 --silent', cache).trim().split('\n').pop()!
      sh(`tar -xzf ${pkg} --strip-components=2 package/deps && rm -f ${pkg} common-sqlite.gypi extract.js sqlite3.gyp`, cache)
    } catch {
      return null
    }
  }
  const f = find()
  return f ? join(cache, f) : null
}

function sh(cmd: string, cwd?: string): string {
  return execSync(cmd, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024, timeout: 1_800_000 })
}

function timed(cmd: string, cwd?: string): { out: string; s: number } {
  const t0 = performance.now()
  const out = sh(cmd, cwd)
  return { out, s: (performance.now() - t0) / 1000 }
}

const GIT = 'git -c user.email=t@example.invalid -c user.name=t -c init.defaultBranch=main'

t.test('real programs on a mount: git clone/status, and a C build', { timeout: 3_600_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  const m = await mountCluster(t, c)
  // not testDir(t): a second call wipes the folder the cluster's nodes keep their blocks in
  // (their PUTs then fail with ENOENT; only files over 64 KiB, kept on nodes, noticed)
  const local = mkdtempSync(join(tmpdir(), 'berth-real-local-'))
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  t.teardown(() => {
    // which operation failed, and why, is in the client's and meta's logs
    if (!t.passing()) {
      t.comment(`client stderr:\n${m.client.stderr().slice(-6000)}\nmeta stderr:\n${c.meta.stderr().slice(-3000)}`)
      c.nodes.forEach((n, i) => t.comment(`node ${i} stderr:\n${n.stderr().slice(-3000)}`))
    }
  })

  await t.test(`git clone of a ${GIT_FILES}-file repository, git status, git fsck`, async (t) => {
    const src = join(local, 'src-repo')
    mkdirSync(src)
    // files in directories of 100, each a little different, two commits
    sh(`${GIT} init -q . && for d in $(seq 0 $(( (${GIT_FILES} - 1) / 100 ))); do mkdir -p d$d; done`, src)
    sh(`for i in $(seq 0 $(( ${GIT_FILES} - 1 ))); do printf 'file %d\\n%0*d\\n' $i $(( i % 500 )) 0 > d$(( i / 100 ))/f$i.txt; done && ${GIT} add -A && ${GIT} commit -qm one && echo more >> d0/f0.txt && ${GIT} commit -qam two`, src)
    const here = timed(`${GIT} clone -q ${src} ${join(local, 'clone')}`)
    const there = timed(`${GIT} clone -q ${src} ${join(m.dir, 'clone')}`)
    t.equal(sh(`${GIT} status --porcelain`, join(m.dir, 'clone')), '', 'git status on the mount: clean')
    t.equal(sh(`${GIT} ls-files | wc -l`, join(m.dir, 'clone')).trim(), String(GIT_FILES), `${GIT_FILES} files tracked`)
    sh(`${GIT} fsck --strict --no-progress`, join(m.dir, 'clone'))
    t.equal(sh(`diff -r --exclude=.git ${join(local, 'clone')} ${join(m.dir, 'clone')} && echo same`).trim(), 'same', 'the same files as the local clone')
    const st = timed(`${GIT} status --porcelain`, join(m.dir, 'clone'))
    const stLocal = timed(`${GIT} status --porcelain`, join(local, 'clone'))
    t.comment(`git clone: mount ${there.s.toFixed(1)} s, local ${here.s.toFixed(1)} s; git status: mount ${st.s.toFixed(2)} s, local ${stLocal.s.toFixed(2)} s`)
  })

  const SQLITE_TGZ = process.env.BERTH_REAL_WORKLOADS === '1' ? sqliteTarball() : null
  const skipBuild = process.env.BERTH_REAL_WORKLOADS !== '1' ? 'BERTH_REAL_WORKLOADS=1 runs the C build (minutes)' : !SQLITE_TGZ ? 'no sqlite-autoconf tarball (npm pack sqlite3 failed)' : false
  await t.test('a C project (SQLite autoconf): ./configure && make -j2, on the mount and locally', { skip: skipBuild }, async (t) => {
    const build = (root: string) => {
      mkdirSync(root, { recursive: true })
      const x = timed(`tar -xzf ${SQLITE_TGZ} --strip-components=1`, root)
      const conf = timed('./configure > configure.log 2>&1', root)
      const make = timed('make -j2 > make.log 2>&1', root)
      return { x: x.s, conf: conf.s, make: make.s, version: sh(`./sqlite3 :memory: "select sqlite_version(), 6*7"`, root).trim(), files: sh('find . -type f ! -name "*.log" | sort', root) }
    }
    const here = build(join(local, 'sqlite'))
    const there = build(join(m.dir, 'sqlite'))
    t.equal(there.version, here.version, `the sqlite3 built on the mount answers like the local one (${here.version})`)
    t.equal(there.files, here.files, 'the same files were built')
    t.comment(`extract / configure / make -j2: mount ${there.x.toFixed(1)} / ${there.conf.toFixed(1)} / ${there.make.toFixed(1)} s, local ${here.x.toFixed(1)} / ${here.conf.toFixed(1)} / ${here.make.toFixed(1)} s`)
  })
})
