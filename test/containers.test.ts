/**
 * The real images and the real compose.yml on this machine. The test starts its
 * own dockerd (no bridge, no iptables, private data and exec roots, its own
 * socket), builds local stand-ins for the base images (no registry is reached,
 * nothing is pulled: test/compose/build-base-image), builds docker/Dockerfile
 * through compose, and runs every service on the host network on 127.0.0.1
 * (test/compose/host-network.yml): three NATS servers, two meta replicas (--ha)
 * and the data nodes. Then, from the host: `berth mount`; kill -9 the leader
 * meta's process, then the follower's, and see compose start each again and
 * the cluster serve throughout; copy files in and read them back, scale data
 * to 4 and see the new node take writes,
 * `down` + `up` and find every file intact (volumes), and tear it all down.
 *
 * Needs root and Debian's docker.io, docker-compose (v1) and mmdebstrap (or
 * debootstrap) (`BERTH_EXTRA_PACKAGES="docker.io docker-compose mmdebstrap"
 * tools/install-deps`, which .ci/run does). Without them it is skipped, except
 * under CI where it fails. The base file system's tarball is cached in
 * /var/cache/berth-test between runs.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t, { type Test } from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import type { StatusReply } from '../common/protocol'
import { isMounted } from '../client/mount-state'
import { fusermountUz } from './helpers/mount'
import { freePort } from './helpers/net'

const REPO = resolve(__dirname, '..', '..')
const DOCKER = '/usr/bin/docker'
const DOCKERD = '/usr/sbin/dockerd'
const COMPOSE = '/usr/bin/docker-compose'
const PROJECT = 'berthtest'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** The better-sqlite3 mirror's port (sqliteMirror): fixed, so the build's cached layers match. */
const SQLITE_MIRROR_PORT = Number(process.env.BERTH_TEST_SQLITE_MIRROR_PORT ?? 29417)

function missingTools(): string[] {
  const missing: string[] = []
  for (const [bin, pkg] of [
    [DOCKER, 'docker.io'],
    [DOCKERD, 'docker.io'],
    [COMPOSE, 'docker-compose'],
  ] as const) {
    if (spawnSync('test', ['-x', bin]).status !== 0) missing.push(pkg)
  }
  // the base image's root file system: mmdebstrap (faster), else debootstrap
  if (!['/usr/bin/mmdebstrap', '/usr/sbin/debootstrap'].some((bin) => spawnSync('test', ['-x', bin]).status === 0)) missing.push('mmdebstrap')
  if (process.getuid?.() !== 0) missing.push('(root)')
  return [...new Set(missing)]
}

const missing = missingTools()
if (missing.length > 0 && process.env.CI !== 'true') {
  t.plan(0, `needs ${missing.join(', ')}: BERTH_EXTRA_PACKAGES="docker.io docker-compose mmdebstrap" tools/install-deps`)
} else {
  // a fresh machine bootstraps Debian and installs native addons inside `docker build`
  t.setTimeout(14 * 60_000)
}

interface Run {
  code: number
  stdout: string
  stderr: string
  ms: number
}

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  const started = Date.now()
  return new Promise((ok) => {
    execFile(cmd, args, { env, cwd: REPO, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      ok({ code, stdout, stderr, ms: Date.now() - started })
    })
  })
}

async function must(t: Test, what: string, p: Promise<Run>): Promise<Run> {
  const r = await p
  if (r.code !== 0) {
    t.fail(`${what} exited ${r.code}:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`)
    throw new Error(`${what} failed`)
  }
  t.pass(`${what} (${(r.ms / 1000).toFixed(1)} s)`)
  return r
}

/**
 * dockerd's images and build cache persist in the test cache folder (beside the
 * base file system tarball), so a later run reuses the base images and the `npm ci`
 * layer (compiling better-sqlite3 takes minutes) while package-lock.json is unchanged.
 * Containers and volumes do not survive: the test ends with `down -v`, and
 * untagged images older than 3 days are pruned so the cache does not grow
 * run after run.
 */
function dataRoot(): string {
  const cache = process.env.BERTH_TEST_CACHE ?? '/var/cache/berth-test'
  const dir = join(cache, 'docker-data')
  try {
    mkdirSync(dir, { recursive: true })
    stopLeftoverDockerd(dir)
    return dir
  } catch {
    return mkdtempSync(join(tmpdir(), 'berth-docker-data-'))
  }
}

/**
 * A run killed by tap's timeout skips its teardown and leaves its dockerd
 * holding the shared data root. Its pid is recorded beside the data root
 * (written by startDockerd), so only that process, if it still is a dockerd
 * on this data root, is stopped.
 */
function stopLeftoverDockerd(dir: string): void {
  let pid: number
  try {
    pid = Number(readFileSync(`${dir}.pid`, 'utf8'))
  } catch {
    return
  }
  let cmdline = ''
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return
  }
  if (!cmdline.startsWith(DOCKERD) || !cmdline.includes(`\0${dir}\0`)) return
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 120 && existsSync(`/proc/${pid}`); i++) spawnSync('sleep', ['0.25'])
}

/**
 * The image build installs better-sqlite3, whose install script downloads a
 * prebuilt addon from GitHub (unreachable here) and otherwise compiles SQLite
 * from source: minutes on this machine, most of the test. This machine's own
 * addon (same Node ABI, same Debian release as the stand-in base image) is
 * served as prebuild-install's mirror instead, as a release asset would be:
 * any `*.tar.gz` path gets a tarball holding build/Release/better_sqlite3.node.
 */
async function sqliteMirror(t: Test): Promise<{ url: string; requests: string[] }> {
  const addonDir = join(REPO, 'node_modules', 'better-sqlite3')
  const tgz = spawnSync('tar', ['-C', addonDir, '-czf', '-', 'build/Release/better_sqlite3.node'], { maxBuffer: 64 * 1024 * 1024 })
  const requests: string[] = []
  if (tgz.status !== 0) {
    t.comment(`no better-sqlite3 addon to serve (${tgz.stderr.toString().trim()}): the build compiles it`)
    return { url: '', requests }
  }
  const server = createServer((req, res) => {
    requests.push(req.url ?? '')
    if (!req.url?.endsWith('.tar.gz')) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': tgz.stdout.length }).end(tgz.stdout)
  })
  // The URL is a build argument, and a build argument's value is part of the
  // cache key of every RUN after it: served on a new port each run, it made
  // `npm ci` and the apt-get layer run again in every build (80-140 s of the
  // test) although package-lock.json had not changed. So the mirror takes a
  // fixed port (below the ephemeral range, where no outgoing connection
  // holds it) and only a taken port falls back to a free one (the build then
  // runs those layers again, as before).
  const listen = (port: number) =>
    new Promise<boolean>((ok) => {
      const failed = () => ok(false)
      server.once('error', failed)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', failed)
        ok(true)
      })
    })
  if (!(await listen(SQLITE_MIRROR_PORT))) {
    t.comment(`port ${SQLITE_MIRROR_PORT} is taken: the mirror takes a free one, and the build's npm ci layer is not reused`)
    if (!(await listen(0))) throw new Error('the better-sqlite3 mirror could not listen on 127.0.0.1')
  }
  t.teardown(() => new Promise<void>((ok) => server.close(() => ok())))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, requests }
}

/** Our own dockerd, stopped by pid at teardown. */
async function startDockerd(t: Test, root: string): Promise<NodeJS.ProcessEnv> {
  const dataRootDir = dataRoot()
  const sock = join(root, 'docker.sock')
  const log = join(root, 'dockerd.log')
  const logFd = openSync(log, 'a')
  const child: ChildProcess = spawn(
    DOCKERD,
    [
      '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
      '--data-root', dataRootDir, '--exec-root', join(root, 'exec'),
      '-H', `unix://${sock}`, '--pidfile', join(root, 'dockerd.pid'),
    ],
    // output to a file, not a pipe, so a busy test never stalls dockerd
    { stdio: ['ignore', logFd, logFd], env: { ...process.env, DOCKER_HOST: undefined } },
  )
  closeSync(logFd)
  if (child.pid) writeFileSync(`${dataRootDir}.pid`, String(child.pid))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((ok) => child.once('exit', () => ok()))
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      await gone
      clearTimeout(killer)
    }
  })
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Debian's docker client and compose, never another docker on PATH
    PATH: `/usr/bin:/usr/sbin:/bin:/sbin:${process.env.PATH ?? ''}`,
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_BIN: DOCKER,
    // compose v1 builds through the API (classic builder): no buildx needed
    DOCKER_BUILDKIT: '0',
    COMPOSE_DOCKER_CLI_BUILD: '0',
    COMPOSE_PROJECT_NAME: PROJECT,
  }
  const until = Date.now() + 60_000
  for (;;) {
    const r = await sh(DOCKER, ['version', '--format', '{{.Server.Version}}'], env, 10_000)
    if (r.code === 0) {
      t.comment(`dockerd ${r.stdout.trim()} (pid ${child.pid}) on ${sock}`)
      break
    }
    if (child.exitCode !== null || Date.now() > until) throw new Error(`dockerd did not start: ${r.stderr}\n${readFileSync(log, 'utf8').slice(-3000)}`)
    await sleep(250)
  }
  return env
}

async function status(env: NodeJS.ProcessEnv, natsUrl: string, creds: string): Promise<StatusReply> {
  const r = await sh(process.execPath, [BERTH_BIN, 'status', '--json', '--nats', natsUrl, '--credentials', creds], env, 30_000)
  if (r.code !== 0) throw new Error(`berth status: ${r.stderr}`)
  return JSON.parse(r.stdout) as StatusReply
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms${last ? ` (${(last as Error).message})` : ''}`)
    await sleep(500)
  }
}

/** sha256 of every file under `dir`, by relative path, from the shell (find + sha256sum). */
function sums(dir: string): Map<string, string> {
  const r = spawnSync('sh', ['-c', 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum', 'sums', dir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`sha256sum in ${dir}: ${r.stderr}`)
  const out = new Map<string, string>()
  for (const line of r.stdout.trim().split('\n').filter(Boolean)) out.set(line.slice(66), line.slice(0, 64))
  return out
}

t.test('compose: build, up, mount, kill -9 of each meta replica, copy, scale to 4, down + up keeps every file, down -v', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'berth-docker-'))
  t.teardown(() => {
    // dockerd is stopped by then (teardowns run in reverse order); its overlay mounts are gone
    spawnSync('sh', ['-c', 'grep -o " $1[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l', 'umounts', root], { stdio: 'ignore' })
    rmSync(root, { recursive: true, force: true })
  })
  const env = await startDockerd(t, root)
  // containers and volumes a killed run left in the shared data root go first
  await sh('sh', ['-c', '"$0" ps -aq | xargs -r "$0" rm -f -v; "$0" volume prune -f', DOCKER], env, 120_000)
  t.teardown(async () => {
    // runs before dockerd stops: keep the cache to what the next run can reuse
    await sh(DOCKER, ['container', 'prune', '-f'], env, 60_000)
    // Untagged images older than 3 days only: the build stage's layers are
    // untagged too (the final stage does not descend from them), and they are
    // the cache worth keeping (npm ci compiling better-sqlite3).
    await sh(DOCKER, ['image', 'prune', '-f', '--filter', 'until=72h'], env, 120_000)
  })

  const base = await must(t, 'build-base-image', sh(join(REPO, 'test', 'compose', 'build-base-image'), [], env, 10 * 60_000))
  t.comment(base.stderr.trim())

  const mirror = await sqliteMirror(t)

  // credentials: random per run, never the example values
  const pw = () => `p${randomBytes(12).toString('hex')}`
  // three NATS servers on the host network, each with its client, monitoring and route port
  const natsPorts = [await freePort(), await freePort(), await freePort()]
  const httpPorts = [await freePort(), await freePort(), await freePort()]
  const routePorts = [await freePort(), await freePort(), await freePort()]
  const natsUrl = natsPorts.map((p) => `nats://127.0.0.1:${p}`).join(',')
  const pass = { meta: pw(), node: pw(), client: pw() }
  const envFile = join(root, 'compose.env')
  writeFileSync(
    envFile,
    [
      `BERTH_NATS_META_PASS=${pass.meta}`,
      `BERTH_NATS_NODE_PASS=${pass.node}`,
      `BERTH_NATS_CLIENT_PASS=${pass.client}`,
      `BERTH_SECRET=${pw()}`,
      'BERTH_REPLICAS=2',
      ...[0, 1, 2].flatMap((i) => [`BERTH_TEST_NATS_PORT_${i}=${natsPorts[i]}`, `BERTH_TEST_NATS_HTTP_PORT_${i}=${httpPorts[i]}`, `BERTH_TEST_NATS_ROUTE_PORT_${i}=${routePorts[i]}`]),
      `BERTH_TEST_NATS_URL=${natsUrl}`,
      `BERTH_TEST_NATS_ROUTES=${routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',')}`,
      `BERTH_TEST_SQLITE_MIRROR=${mirror.url}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
  const compose = (...args: string[]) => [
    '-f', join(REPO, 'compose.yml'), '-f', join(REPO, 'test', 'compose', 'host-network.yml'),
    '--env-file', envFile, '--project-directory', REPO, '-p', PROJECT, ...args,
  ]
  let composeUp = false
  t.teardown(async () => {
    if (composeUp) await sh(COMPOSE, compose('down', '-v', '--remove-orphans', '-t', '10'), env, 120_000)
  })

  await must(t, 'docker-compose config -q (compose.yml + override)', sh(COMPOSE, compose('config', '-q'), env, 60_000))
  await must(t, 'docker-compose build', sh(COMPOSE, compose('build', 'meta'), env, 10 * 60_000))
  t.comment(`better-sqlite3 prebuilt served to the build: ${mirror.requests.join(', ') || 'not asked for (cached layer, or compiled)'}`)
  const size = await must(t, 'image size', sh(DOCKER, ['image', 'inspect', 'berth:latest', '--format', '{{.Size}}'], env, 30_000))
  const baseSize = await must(t, 'base image size', sh(DOCKER, ['image', 'inspect', 'node:20-bookworm-slim', '--format', '{{.Size}}'], env, 30_000))
  const mb = (r: Run) => Number(r.stdout.trim()) / 1e6
  t.comment(`berth:latest image: ${mb(size).toFixed(0)} MB, of which ${(mb(size) - mb(baseSize)).toFixed(0)} MB on top of the base (stand-in base ${mb(baseSize).toFixed(0)} MB)`)
  const user = await must(t, 'image user', sh(DOCKER, ['image', 'inspect', 'berth:latest', '--format', '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Healthcheck.Test}}'], env, 30_000))
  t.match(user.stdout, /^berth \["berth"\] \[.*healthcheck/, 'non-root user, entry point berth, HEALTHCHECK')

  const creds = join(root, 'client.env')
  writeFileSync(creds, `BERTH_NATS_USER=client\nBERTH_NATS_PASS=${pass.client}\n`, { mode: 0o600 })
  const mnt = join(root, 'mnt')
  mkdirSync(mnt)
  t.teardown(() => {
    if (isMounted(mnt)) spawnSync(process.execPath, [BERTH_BIN, 'umount', mnt, '--timeout-ms', '30000'], { stdio: 'ignore', timeout: 40_000 })
    fusermountUz(mnt)
  })
  const mount = () => must(t, 'berth mount', sh(process.execPath, [BERTH_BIN, 'mount', natsUrl, mnt, '-o', `credentials=${creds}`, '--deadline-ms', '60000'], env, 120_000))
  const umount = () => must(t, 'berth umount', sh(process.execPath, [BERTH_BIN, 'umount', mnt], env, 90_000))

  // up -> a mounted, writable directory
  const upStarted = Date.now()
  composeUp = true
  await must(t, 'docker-compose up -d --scale data=3', sh(COMPOSE, compose('up', '-d', '--no-build', '--scale', 'data=3'), env, 5 * 60_000))
  await mount()
  writeFileSync(join(mnt, 'first-write'), 'writable\n')
  t.comment(`up -> mounted and writable: ${((Date.now() - upStarted) / 1000).toFixed(1)} s`)
  const st3 = await waitFor('3 live nodes', 60_000, async () => {
    const s = await status(env, natsUrl, creds)
    return s.nodes.filter((n) => n.alive).length === 3 ? s : undefined
  })
  t.equal(st3.nodes.length, 3, 'three data nodes')
  // the image carries the aligned-buffer addon: its data nodes write block files with O_DIRECT
  const dataLogs = await sh(COMPOSE, compose('logs', '--no-color', 'data'), env, 60_000)
  t.equal([...dataLogs.stdout.matchAll(/block files written with O_DIRECT/g)].length, 3, 'every data node writes with O_DIRECT')
  // replicated meta: two replicas, one leading. A kill -9 of a replica's
  // process (a crash; `docker kill` would count as a stop, which the restart
  // policy honours) gets its container started again by `restart:
  // unless-stopped`. First the leader: another replica serves meanwhile and the
  // restarted one reports back; then the follower: it rejoins as a follower.
  const replicated = await waitFor('two meta replicas reporting', 120_000, async () => {
    const s = await status(env, natsUrl, creds)
    return (s.replication?.replicas ?? []).length === 2 ? s : undefined
  })
  // (the wait above already asked for the report of two replicas)
  t.same(replicated.replication?.replicas?.filter((r) => r.role === 'leader').map((r) => r.metaId), [replicated.metaId], `exactly one leads, the one answering: ${replicated.replication?.replicas?.map((r) => `${r.metaId} ${r.role}`).join(', ')}`)
  const metaContainers = (await must(t, 'meta containers', sh(COMPOSE, compose('ps', '-q', 'meta'), env, 30_000))).stdout.trim().split('\n').filter(Boolean)
  t.equal(metaContainers.length, 2, 'two meta containers')
  /** The metaId the container's current berth meta process announced (each start draws a new one). */
  const metaIdIn = async (container: string): Promise<string | undefined> => {
    const logs = await sh(DOCKER, ['logs', container], env, 30_000)
    return [...`${logs.stdout}${logs.stderr}`.matchAll(/ as (meta-[0-9a-f]+) /g)].pop()?.[1]
  }
  const inspect = async (container: string, field: string): Promise<string> => {
    const r = await sh(DOCKER, ['inspect', '--format', `{{${field}}}`, container], env, 30_000)
    if (r.code !== 0) throw new Error(`docker inspect ${field}: ${r.stderr}`)
    return r.stdout.trim()
  }
  /** kill -9 of the container's berth process; resolves once compose has started it again and it announced a new metaId. */
  const crash = async (container: string, was: string): Promise<string> => {
    const restarts = Number(await inspect(container, '.RestartCount'))
    process.kill(Number(await inspect(container, '.State.Pid')), 'SIGKILL')
    return waitFor(`container ${container.slice(0, 12)} started again`, 60_000, async () => {
      const id = await metaIdIn(container)
      return Number(await inspect(container, '.RestartCount')) > restarts && id && id !== was ? id : undefined
    })
  }
  const roles = (s: StatusReply) => (s.replication?.replicas ?? []).map((r) => `${r.metaId} ${r.role} lag ${r.lag}`).join(', ')
  const idOf = new Map<string, string>()
  for (const c of metaContainers) idOf.set(c, (await metaIdIn(c)) ?? '')
  const leaderContainer = metaContainers.find((c) => idOf.get(c) === replicated.metaId)
  const followerContainer = metaContainers.find((c) => c !== leaderContainer)!
  t.ok(leaderContainer, `the leader runs in container ${leaderContainer?.slice(0, 12)}`)

  const restartedLeader = await crash(leaderContainer!, replicated.metaId)
  writeFileSync(join(mnt, 'after-leader-kill'), 'still writable\n')
  const afterLeader = await waitFor('a leader serving and the restarted replica reporting', 120_000, async () => {
    const s = await status(env, natsUrl, creds)
    const reps = s.replication?.replicas ?? []
    return s.metaId !== replicated.metaId && reps.length === 2 && reps.some((r) => r.metaId === restartedLeader) && reps.every((r) => r.lag <= 5) ? s : undefined
  })
  t.pass(`after kill -9 of the leader, compose started it again as ${restartedLeader}; ${afterLeader.metaId} leads: ${roles(afterLeader)}`)
  t.equal(readFileSync(join(mnt, 'after-leader-kill'), 'utf8'), 'still writable\n', 'a write made during the failover reads back')

  const followerNow = afterLeader.metaId === restartedLeader ? followerContainer : leaderContainer!
  const restartedFollower = await crash(followerNow, (await metaIdIn(followerNow))!)
  const afterFollower = await waitFor('the restarted follower reporting', 120_000, async () => {
    const s = await status(env, natsUrl, creds)
    const reps = s.replication?.replicas ?? []
    return reps.length === 2 && reps.some((r) => r.metaId === restartedFollower) && reps.every((r) => r.lag <= 5) ? s : undefined
  })
  t.equal(afterFollower.metaId, afterLeader.metaId, 'kill -9 of the follower: the leader did not change')
  t.equal(afterFollower.replication?.replicas?.find((r) => r.metaId === restartedFollower)?.role, 'follower', `the follower, started again as ${restartedFollower}, rejoined as a follower: ${roles(afterFollower)}`)

  // copy a tree in with cp, read it back with sha256sum
  const src = join(root, 'src')
  mkdirSync(join(src, 'sub', 'deeper'), { recursive: true })
  writeFileSync(join(src, 'small.txt'), 'hello from the host\n')
  writeFileSync(join(src, 'one-mib.bin'), randomBytes(1024 * 1024))
  writeFileSync(join(src, 'sub', 'two-chunks.bin'), randomBytes(6 * 1024 * 1024))
  for (let i = 0; i < 20; i++) writeFileSync(join(src, 'sub', 'deeper', `f${i}.txt`), `file ${i} ${randomBytes(8).toString('hex')}\n`)
  await must(t, 'cp -a into the mount', sh('cp', ['-a', `${src}/.`, join(mnt, 'tree')], env, 120_000))
  const want = sums(src)
  t.same(sums(join(mnt, 'tree')), want, 'every file reads back identical')

  // scale out: a fourth node joins and takes writes
  const before = new Set(st3.nodes.map((n) => n.id))
  await must(t, 'docker-compose up -d --scale data=4', sh(COMPOSE, compose('up', '-d', '--no-build', '--no-recreate', '--scale', 'data=4'), env, 5 * 60_000))
  const st4 = await waitFor('4 live nodes', 60_000, async () => {
    const s = await status(env, natsUrl, creds)
    return s.nodes.filter((n) => n.alive).length === 4 ? s : undefined
  })
  const fresh = st4.nodes.find((n) => !before.has(n.id))
  t.ok(fresh, `a new node joined: ${fresh?.id} at ${fresh?.url}`)
  t.equal(fresh?.blocks, 0, 'it starts empty')
  const more = join(src, 'after-scale')
  mkdirSync(more)
  for (let i = 0; i < 24; i++) writeFileSync(join(more, `b${i}.bin`), randomBytes(128 * 1024))
  await must(t, 'cp -a after scale-out', sh('cp', ['-a', more, join(mnt, 'tree', 'after-scale')], env, 120_000))
  const took = await waitFor('the new node holds blocks', 30_000, async () => {
    const s = await status(env, natsUrl, creds)
    const n = s.nodes.find((x) => x.id === fresh?.id)
    return n && n.blocks > 0 ? n : undefined
  })
  t.ok(took.blocks > 0, `the new node took writes: ${took.blocks} blocks`)
  const all = sums(src)
  t.same(sums(join(mnt, 'tree')), all, 'everything reads back after scale-out')

  // down + up: volumes keep the namespace, the blocks and each node's identity
  await umount()
  await must(t, 'docker-compose down', sh(COMPOSE, compose('down', '-t', '20'), env, 5 * 60_000))
  const ps = await sh(DOCKER, ['ps', '-aq'], env, 30_000)
  t.equal(ps.stdout.trim(), '', 'no container left after down')
  await must(t, 'docker-compose up -d --scale data=4 (again)', sh(COMPOSE, compose('up', '-d', '--no-build', '--scale', 'data=4'), env, 5 * 60_000))
  const again = await waitFor('4 live nodes after up', 90_000, async () => {
    const s = await status(env, natsUrl, creds)
    return s.nodes.filter((n) => n.alive).length === 4 ? s : undefined
  })
  t.same(again.nodes.map((n) => n.id).sort(), st4.nodes.map((n) => n.id).sort(), 'the same four node ids came back (slots in the blocks volume)')
  t.equal(again.underReplicated, 0, 'no block under-replicated')
  await mount()
  t.same(sums(join(mnt, 'tree')), all, 'every file intact after down + up')
  t.equal(readFileSync(join(mnt, 'first-write'), 'utf8'), 'writable\n')
  const fsck = await sh(process.execPath, [BERTH_BIN, 'fsck', '--json', '--no-progress', '--nats', natsUrl, '--credentials', creds], env, 120_000)
  t.equal(fsck.code, 0, `berth fsck is clean: ${fsck.stdout.slice(0, 400)} ${fsck.stderr}`)
  await umount()

  await must(t, 'docker-compose down -v', sh(COMPOSE, compose('down', '-v', '-t', '20'), env, 5 * 60_000))
  composeUp = false
  const vols = await sh(DOCKER, ['volume', 'ls', '-q', '--filter', `name=${PROJECT}_`], env, 30_000)
  t.equal(vols.stdout.trim(), '', 'down -v removed the volumes')
  const digest = createHash('sha256').update(JSON.stringify([...all])).digest('hex').slice(0, 12)
  t.comment(`checked ${all.size} files (digest ${digest})`)
})
