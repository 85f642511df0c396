/**
 * `berth up --no-mount`: ready quickly, `berth status` sees every node, and
 * SIGTERM leaves no child process behind.
 */
import { execFile, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, promises as fs, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { isMounted, readPid } from '../client/mount-state'
import { fusermountUz } from './helpers/mount'
import { readyLine } from './helpers/ready-line'
import { testDir } from './helpers/test-dir'

/**
 * Pids of all descendants of `pid`, from each of its threads'
 * /proc/PID/task/TID/children, walked down. Only our own processes are read:
 * the stat file of every process in /proc on the machine (how this found parents
 * before) can block while another process is stuck (a reader of a stopped
 * FUSE mount in a test running beside this one): it once took 74 s.
 */
function descendants(pid: number): number[] {
  const out: number[] = []
  const walk = (p: number) => {
    let tasks: string[]
    try {
      tasks = readdirSync(`/proc/${p}/task`)
    } catch {
      return // exited while we looked
    }
    for (const tid of tasks) {
      let children: string
      try {
        children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8')
      } catch {
        continue
      }
      for (const child of children.split(' ').filter(Boolean).map(Number)) out.push(child), walk(child)
    }
  }
  walk(pid)
  return out
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('berth up --no-mount starts, reports status, and stops every child on SIGTERM', async (t) => {
  const dir = testDir(t)
  const started = Date.now()
  const { up, ready } = await startUp(t, join(dir, 'cluster'), ['--no-mount'], { nodes: 3, log: 'warn' })
  const elapsed = Date.now() - started
  // a figure, not an assertion: the machine may be loaded (startUp bounds it at 40 s)
  t.comment(`ready in ${elapsed} ms`)
  t.equal(ready.nodes.length, 3, 'three data nodes')
  t.match(ready.nats, /^nats:\/\/127\.0\.0\.1:\d+$/)

  const children = descendants(up.pid!)
  t.ok(children.length >= 5, `nats-server, meta and 3 nodes are children (${children.length})`)

  // Heartbeats reach meta within one period.
  let status: { nodes: Array<{ alive: boolean }> } = { nodes: [] }
  for (let i = 0; i < 20 && status.nodes.filter((n) => n.alive).length < 3; i++) {
    const r = spawnSync(process.execPath, [BERTH_BIN, 'status', '--json', '--credentials', ready.credentials], { encoding: 'utf8' })
    t.equal(r.status, 0, `berth status exits 0 ${r.stderr}`)
    status = JSON.parse(r.stdout)
    if (status.nodes.filter((n) => n.alive).length < 3) await new Promise((r) => setTimeout(r, 500))
  }
  t.equal(status.nodes.filter((n) => n.alive).length, 3, 'status lists three live nodes')

  const text = spawnSync(process.execPath, [BERTH_BIN, 'status', '--credentials', ready.credentials], { encoding: 'utf8' })
  t.match(text.stdout, /nodes: 3 live of 3/, 'human status output')

  // --watch: a report per interval until SIGINT (one JSON object per line with --json)
  const watch = spawn(process.execPath, [BERTH_BIN, 'status', '--watch', '0.3', '--json', '--credentials', ready.credentials], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (watch.exitCode === null) watch.kill('SIGKILL')
  })
  const lines = await new Promise<string[]>((resolve, reject) => {
    let out = ''
    watch.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c
      const done = out.split('\n').filter(Boolean)
      if (done.length >= 3) resolve(done)
    })
    watch.once('exit', (code) => reject(new Error(`status --watch exited ${code}`)))
  })
  const reports = lines.map((l) => JSON.parse(l) as { at: number; nodes: unknown[] })
  t.ok(reports.every((r) => r.nodes.length === 3 && r.at > 0), `status --watch --json: ${reports.length} reports, each with the nodes`)
  watch.kill('SIGINT')
  t.equal(await new Promise<number | null>((resolve) => (watch.exitCode !== null ? resolve(watch.exitCode) : watch.once('exit', (c) => resolve(c)))), 0, 'status --watch exits 0 on SIGINT')
  const badWatch = spawnSync(process.execPath, [BERTH_BIN, 'status', '--watch', 'soon', '--credentials', ready.credentials], { encoding: 'utf8', timeout: 30_000 })
  t.not(badWatch.status, 0, 'status --watch soon: refused')
  t.match(badWatch.stderr, /--watch SECONDS must be a number/)

  up.kill('SIGTERM')
  const code = await new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
  t.equal(code, 0, 'berth up exits 0 on SIGTERM')
  const left = children.filter(alive)
  t.same(left, [], 'no child process left behind')
})

t.test('berth status without a cluster fails clearly', async (t) => {
  const r = spawnSync(process.execPath, [BERTH_BIN, 'status', '--nats', 'nats://127.0.0.1:1'], { encoding: 'utf8', cwd: testDir(t) })
  t.not(r.status, 0)
  t.match(r.stderr, /cannot connect to NATS/)
})

/** `berth up` in `dir`, resolved with its ready event (--json) and a handle to stop it. */
async function startUp(t: Test, dir: string, extra: string[] = [], o: { nodes?: number; log?: string } = {}) {
  const up = spawn(process.execPath, [BERTH_BIN, 'up', '--json', '--dir', dir, '--nodes', String(o.nodes ?? 2), ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BERTH_LOG: o.log ?? 'info' },
  })
  let stderr = ''
  up.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
  })
  // --ha starts three clustered nats-servers and waits for JetStream: more on a loaded machine
  const ready = await readyLine<{ nats: string; credentials: string; nodes: Array<{ url: string }> }>(up, extra.includes('--ha') ? 120_000 : 40_000, () => stderr)
  return {
    up,
    ready,
    stderr: () => stderr,
    /**
     * Resolves true once berth up's stderr matches `re`, false after `ms` (or
     * when it exits without). stderr reaches this process only through 'data'
     * events, so a line berth up printed long ago is not in stderr() until the
     * event loop has run: wait here rather than test stderr() right after a
     * blocking call (spawnSync) or a wait on something else.
     */
    waitStderr(re: RegExp, ms: number): Promise<boolean> {
      if (re.test(stderr)) return Promise.resolve(true)
      return new Promise<boolean>((resolve) => {
        // registered after startUp's listener: `stderr` already holds the chunk
        const onData = () => {
          if (re.test(stderr)) finish(true)
        }
        const onExit = () => finish(re.test(stderr))
        const timer = setTimeout(() => finish(false), ms)
        const finish = (found: boolean) => {
          clearTimeout(timer)
          up.stderr.off('data', onData)
          up.off('exit', onExit)
          resolve(found)
        }
        up.stderr.on('data', onData)
        up.once('exit', onExit)
      })
    },
    async stop(): Promise<number | null> {
      if (up.exitCode !== null) return up.exitCode
      const exited = new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
      up.kill('SIGTERM')
      return exited
    },
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const execFileAsync = promisify(execFile)

t.test('berth up owns its folder: one per --dir, same port and credentials after a restart, dead children restarted', async (t) => {
  const root = testDir(t)
  const dir = join(root, 'cluster')
  const first = await startUp(t, dir, ['--no-mount'])
  const status = () => spawnSync(process.execPath, [BERTH_BIN, 'status', '--json', '--credentials', first.ready.credentials], { encoding: 'utf8', timeout: 30_000 })

  // a second start on the same folder refuses, names the first, changes nothing
  const envBefore = readFileSync(join(dir, 'client.env'), 'utf8')
  const confBefore = readFileSync(join(dir, 'nats', 'nats.conf'), 'utf8')
  const second = spawnSync(process.execPath, [BERTH_BIN, 'up', '--no-mount', '--dir', dir], { encoding: 'utf8', timeout: 30_000 })
  t.equal(second.status, 1, 'a second berth up on the same folder exits 1')
  t.match(second.stderr, new RegExp(`already runs on ${dir}[^]*pid ${first.up.pid}|pid ${first.up.pid}[^]*already runs on`), 'naming the running one')
  t.equal(readFileSync(join(dir, 'client.env'), 'utf8'), envBefore, 'client.env untouched')
  t.equal(readFileSync(join(dir, 'nats', 'nats.conf'), 'utf8'), confBefore, 'nats.conf untouched')
  t.equal(status().status, 0, 'the first still answers status')
  t.match(confBefore, new RegExp(`listen: 127\\.0\\.0\\.1:${new URL(first.ready.nats).port}\\n`), 'nats.conf listens on the fixed port, not -1')

  // a mount started separately, against client.env
  const mnt = join(root, 'mnt')
  mkdirSync(mnt)
  t.teardown(() => {
    const pid = readPid(mnt)
    if (pid !== null && alive(pid)) process.kill(pid, 'SIGKILL')
    fusermountUz(mnt)
  })
  const m = spawnSync(process.execPath, [BERTH_BIN, 'mount', mnt, '--credentials', first.ready.credentials], { encoding: 'utf8', timeout: 60_000 })
  t.equal(m.status, 0, `berth mount --credentials DIR/client.env: ${m.stderr}`)
  await fs.writeFile(join(mnt, 'before.txt'), 'before\n')

  // a node killed -9 comes back
  const nodePid = Number(/node 0 .*pid (\d+)\)/.exec(first.stderr())?.[1])
  t.ok(nodePid > 0, 'node 0 pid shown')
  process.kill(nodePid, 'SIGKILL')
  await first.waitStderr(/node-0 restarted/, 60_000)
  t.match(first.stderr(), /node-0 \(pid \d+\) exited unexpectedly \(SIGKILL\); restarting in 1 s/, 'the death is logged')
  t.match(first.stderr(), /node-0 restarted \(pid \d+\)/, 'and the node restarted')
  t.notMatch(first.stderr(), /expired \d+ session/, 'routine meta housekeeping stays off the terminal')

  t.equal(await first.stop(), 0, 'first berth up stops on SIGTERM')
  t.match(first.stderr(), /berth up: stopped; data kept in/, 'with a closing line')
  const again = await startUp(t, dir, ['--no-mount'])
  t.equal(again.ready.nats, first.ready.nats, 'same NATS URL after a restart')
  t.equal(readFileSync(join(dir, 'client.env'), 'utf8'), envBefore, 'same credentials after a restart')
  t.equal(readFileSync(join(mnt, 'before.txt'), 'utf8'), 'before\n', 'the separate mount survived the restart')
  await fs.writeFile(join(mnt, 'after.txt'), 'after\n')
  t.equal(readFileSync(join(mnt, 'after.txt'), 'utf8'), 'after\n', 'and writes after it')
  t.equal(spawnSync(process.execPath, [BERTH_BIN, 'umount', mnt], { encoding: 'utf8' }).status, 0, 'umount')
  t.notOk(isMounted(mnt))
  t.equal(await again.stop(), 0)
})

t.test('berth up that cannot mount ends at once, says why, leaves nothing running', async (t) => {
  const root = testDir(t, { full: { 'old.txt': 'x' } })
  const started = Date.now()
  const up = spawn(process.execPath, [BERTH_BIN, 'up', '--dir', join(root, 'cluster'), '--nodes', '1', '--mount', join(root, 'full')], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
  })
  let stderr = ''
  up.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const children = new Set<number>()
  const watch = setInterval(() => {
    if (up.pid) for (const p of descendants(up.pid)) children.add(p)
  }, 100)
  const code = await new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
  clearInterval(watch)
  t.equal(code, 1, 'exits 1')
  t.ok(Date.now() - started < 10_000, `within ${Date.now() - started} ms`)
  t.match(stderr, /berth up: mountpoint \S+full is not empty[^]*-o nonempty/, `the reason and hint on stderr: ${stderr}`)
  t.same([...children].filter(alive), [], 'no child left running')
  const again = spawnSync(process.execPath, [BERTH_BIN, 'up', '--no-mount', '--dir', join(root, 'cluster'), '--nodes', '1', '--help'], { encoding: 'utf8' })
  t.equal(again.status, 0, '--help exits 0')
  t.match(again.stdout, /Exit status/, 'and states the exit codes')
})

t.test('berth up --ha: three clustered nats-servers, two meta replicas; a killed replica is restarted and rejoins', async (t) => {
  const dir = join(testDir(t), 'cluster')
  const u = await startUp(t, dir, ['--no-mount', '--ha'])
  t.equal(u.ready.nats.split(',').length, 3, `three NATS servers (${u.ready.nats})`)
  const children = descendants(u.up.pid!)
  type Status = { metaId: string; replication?: { replicas?: Array<{ metaId: string; role: string; lag: number }> } }
  // asynchronous, so berth up's stderr keeps being read while a status call
  // waits (one right after the leader is killed waits out the failover)
  const status = async (): Promise<Status | null> => {
    try {
      const r = await execFileAsync(process.execPath, [BERTH_BIN, 'status', '--json', '--credentials', u.ready.credentials], { encoding: 'utf8', timeout: 60_000 })
      return JSON.parse(r.stdout) as Status
    } catch {
      return null
    }
  }
  const twoReplicas = async (what: string, also: (s: Status) => boolean = () => true): Promise<Status> => {
    for (const end = Date.now() + 120_000; Date.now() < end; ) {
      const s = await status()
      if (s?.replication?.replicas?.length === 2 && also(s)) return s
      await sleep(500)
    }
    throw new Error(`not within 120 s: ${what}\n${u.stderr().slice(-4000)}`)
  }
  const before = await twoReplicas('status lists two replicas')
  t.same(before.replication!.replicas!.map((r) => r.role).sort(), ['follower', 'leader'], 'one leader, one follower')
  const text = spawnSync(process.execPath, [BERTH_BIN, 'status', '--credentials', u.ready.credentials], { encoding: 'utf8' })
  t.match(text.stdout, /replicated \(--ha\): meta-\w+ leads/, 'human status names the leader')
  t.match(text.stdout, /replica meta-\w+ +follower +applied \d+ +lag \d+/, 'and each replica with its lag')

  // kill -9 one replica (leader or follower, whichever comes first): berth up
  // starts it again, it rejoins under a new id, and both report with lag 0
  const metaPids = children.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--ha')
    } catch {
      return false
    }
  })
  t.equal(metaPids.length, 2, 'two meta replica processes')
  const ids = new Set(before.replication!.replicas!.map((r) => r.metaId))
  const killed = metaPids[0]!
  process.kill(killed, 'SIGKILL')
  const after = await twoReplicas('a killed replica comes back and both report again', (s) => s.replication!.replicas!.some((r) => !ids.has(r.metaId)) && s.replication!.replicas!.every((r) => r.lag === 0))
  t.ok(after.replication!.replicas!.some((r) => !ids.has(r.metaId)), 'the restarted replica reports under a new id')
  // berth up prints the death as it happens and the restart a second later;
  // the replica reporting again says nothing about whether this process has
  // read those lines yet (a status call can outlast the whole restart): wait
  // for them, as the plain case waits for node-0's
  const died = new RegExp(`meta-([01]) \\(pid ${killed}\\) exited unexpectedly \\(SIGKILL\\); restarting in 1 s`)
  const saidDied = await u.waitStderr(died, 60_000)
  t.ok(saidDied, `berth up says it restarts the replica it lost (pid ${killed}; waited up to 60 s for the line)`, saidDied ? {} : { stderr: u.stderr().slice(-3000) })
  const which = died.exec(u.stderr())?.[1] ?? '[01]'
  const saidRestarted = await u.waitStderr(new RegExp(`meta-${which} restarted \\(pid \\d+\\)`), 60_000)
  t.ok(saidRestarted, `and that meta-${which} restarted (waited up to 60 s for the line)`, saidRestarted ? {} : { stderr: u.stderr().slice(-3000) })
  const running = descendants(u.up.pid!)
  t.equal(await u.stop(), 0, 'berth up exits 0 on SIGTERM')
  t.same(running.filter(alive), [], 'no child process left behind')
})

t.test('berth up: a kept dashboard port taken by another process moves to a free one', async (t) => {
  const dir = join(testDir(t), 'cluster')
  mkdirSync(dir, { recursive: true })
  // another process holds the port ui.json keeps for meta's dashboard
  const holder = createServer()
  await new Promise<void>((ok) => holder.listen(0, '127.0.0.1', ok))
  t.teardown(() => new Promise<void>((ok) => holder.close(() => ok())))
  const taken = (holder.address() as AddressInfo).port
  writeFileSync(join(dir, 'ui.json'), JSON.stringify({ ports: [taken] }) + '\n')
  const u = await startUp(t, dir, ['--no-mount'], { nodes: 1, log: 'warn' })
  t.match(u.stderr(), new RegExp(`dashboard port ${taken} of meta 0 was taken meanwhile; using \\d+`), 'says so')
  const kept = JSON.parse(readFileSync(join(dir, 'ui.json'), 'utf8')) as { ports: number[] }
  t.not(kept.ports[0], taken, 'ui.json keeps the new port')
  t.equal(await u.stop(), 0, 'stops cleanly')
})
