/**
 * The mount as scripts, fstab and systemd use it: `berth mount` without
 * --foreground returns only once the directory answers and keeps running in
 * the background; `berth umount` and SIGTERM flush dirty data before
 * unmounting; `berth up` mounts the local cluster where asked.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, promises as fs, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { isAlive as alive } from '../common/process-alive'
import { isMounted, readPid } from '../client/mount-state'
import { MOUNT_MALLOC_TUNABLES, NODE_FLAGS } from '../common/node-flags'
import { startCluster } from './helpers/cluster'
import { fusermountUz } from './helpers/mount'
import { freePort } from './helpers/net'
import { testDir } from './helpers/test-dir'

function berth(args: string[], env: NodeJS.ProcessEnv, cwd?: string): { status: number | null; stdout: string; stderr: string; ms: number } {
  const start = Date.now()
  const r = spawnSync(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000, cwd })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start }
}

/** Pids whose command line mentions `needle` (a test's unique mountpoint): what a failed mount left running. */
function processesMentioning(needle: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle) && alive(Number(name))) pids.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

t.test('daemon mount, berth umount, SIGTERM flushes an open dirty file', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const env = c.env('client')
  const dir = join(c.dir, 'mnt')
  mkdirSync(dir)
  // whichever daemon is current when the test ends (it may have failed midway)
  t.teardown(() => {
    const current = readPid(dir)
    if (current !== null && alive(current)) process.kill(current, 'SIGKILL')
    fusermountUz(dir)
  })
  const args = ['mount', c.nats.url, dir, '--cluster', c.cluster]

  const first = berth(args, env)
  t.equal(first.status, 0, `berth mount exits 0 once mounted: ${first.stderr}`)
  t.ok(isMounted(dir), 'mounted when the command returns')
  const pid = readPid(dir)
  t.ok(pid !== null && alive(pid), 'the daemon keeps running in the background')
  if (pid !== null) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    t.same(argv.slice(1, 1 + NODE_FLAGS.length), NODE_FLAGS, 'the daemon runs with berth\'s V8 flags (common/node-flags.ts)')
    // glibc copies GLIBC_TUNABLES at start and cuts the original string in place: /proc shows its first setting only
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')
    const first = MOUNT_MALLOC_TUNABLES.split(':')[0]!
    t.ok(environ.some((e) => e.startsWith(`GLIBC_TUNABLES=${first}`)), `and with its malloc settings (${environ.filter((e) => e.startsWith('GLIBC')).join(' ') || 'none'})`)
  }

  const data = randomBytes(5 * 1024 * 1024 + 17)
  try {
    await fs.writeFile(join(dir, 'kept.bin'), data)
  } catch (err) {
    for (const n of c.nodes) t.comment(n.stderr())
    throw err
  }
  const down = berth(['umount', dir], env)
  t.equal(down.status, 0, `berth umount exits 0: ${down.stderr}`)
  t.notOk(isMounted(dir), 'unmounted')
  t.notOk(pid !== null && alive(pid), 'daemon gone')

  t.equal(berth(args, env).status, 0, 'mounts again')
  t.ok((await fs.readFile(join(dir, 'kept.bin'))).equals(data), 'file intact across umount/mount')

  // A writer that never closes: its data is only in the client's buffers
  // until SIGTERM makes the client flush before it unmounts.
  const held = randomBytes(300 * 1024)
  const fh = await fs.open(join(dir, 'open.bin'), 'w')
  await fh.write(held)
  const pid2 = readPid(dir)
  t.ok(pid2 !== null, 'second daemon pid recorded')
  if (pid2 !== null) process.kill(pid2, 'SIGTERM')
  await waitFor('the daemon to exit after SIGTERM', () => pid2 === null || !alive(pid2), 30_000)
  await fh.close().catch(() => undefined) // the mount is gone; the kernel answers ENOTCONN or EIO
  fusermountUz(dir)

  t.equal(berth(args, env).status, 0, 'mounts a third time')
  t.ok((await fs.readFile(join(dir, 'open.bin'))).equals(held), 'data written through a handle still open at SIGTERM was flushed')
  t.equal(berth(['umount', dir], env).status, 0)
})

t.test('a busy mount: berth umount refuses (EBUSY) and changes nothing, -l detaches it lazily; kill -9 mid-cp leaves a mount the next berth mount takes', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 1 })
  const env = c.env('client')
  const dir = join(c.dir, 'mnt')
  mkdirSync(dir)
  const sleepers: ChildProcess[] = []
  t.teardown(() => {
    for (const s of sleepers) s.kill('SIGKILL')
    const current = readPid(dir)
    if (current !== null && alive(current)) process.kill(current, 'SIGKILL')
    fusermountUz(dir)
  })
  const args = ['mount', c.nats.url, dir, '--cluster', c.cluster]
  t.equal(berth(args, env).status, 0, 'mounted')
  const pid = readPid(dir)
  writeFileSync(join(dir, 'kept.txt'), 'kept\n')
  // a process whose working directory is on the mount, as a shell cd'd into it
  const inside = spawn('sleep', ['60'], { cwd: dir, stdio: 'ignore' })
  sleepers.push(inside)
  await waitFor('the process inside to start', () => inside.pid !== undefined && existsSync(`/proc/${inside.pid}/cwd`), 5_000)

  const busy = berth(['umount', dir], env)
  t.equal(busy.status, 1, 'berth umount exits 1 while a process is inside')
  t.match(busy.stderr, /EBUSY|busy/i, `and says it is busy: ${busy.stderr.split('\n')[0]}`)
  t.ok(isMounted(dir) && pid !== null && alive(pid), 'still mounted, the daemon still running')
  t.equal(readFileSync(join(dir, 'kept.txt'), 'utf8'), 'kept\n', 'and it still serves')

  const lazy = berth(['umount', '-l', dir], env)
  t.equal(lazy.status, 0, `berth umount -l exits 0: ${lazy.stderr}`)
  t.notOk(isMounted(dir), 'detached from the directory tree at once')
  t.equal(readFileSync(`/proc/${inside.pid}/cwd/kept.txt`, 'utf8'), 'kept\n', 'the process inside still reads through it')
  t.ok(pid !== null && alive(pid), 'its daemon serves it')
  // a new mount on the same path while the detached one still serves that process
  t.equal(berth(args, env).status, 0, 'mounted again on the same path meanwhile')
  const pid2 = readPid(dir)
  inside.kill('SIGKILL')
  await waitFor('the detached mount\'s daemon to exit once the last process left', () => pid === null || !alive(pid), 30_000)
  t.pass('the daemon exited after the last process left')
  await sleep(500)
  t.ok(isMounted(dir) && pid2 !== null && alive(pid2), 'the new mount stays: the old daemon unmounted nothing of it on its way out')
  t.equal(readFileSync(join(dir, 'kept.txt'), 'utf8'), 'kept\n', 'and serves')

  // kill -9 of the client while cp writes into the mount
  const src = join(c.dir, 'src.bin')
  writeFileSync(src, randomBytes(64 * 1024 * 1024))
  const cp = spawn('cp', [src, join(dir, 'copy.bin')], { stdio: 'ignore' })
  sleepers.push(cp)
  const cpDone = new Promise<number | null>((resolve) => cp.once('exit', (code) => resolve(code)))
  await waitFor('cp to have written into the mount', () => {
    try {
      return statSync(join(dir, 'copy.bin')).size > 0
    } catch {
      return false
    }
  }, 30_000)
  if (pid2 !== null) process.kill(pid2, 'SIGKILL')
  const code = await cpDone
  t.not(code, 0, `cp fails once the client is gone (exit ${code})`)
  const again = berth(args, env)
  t.equal(again.status, 0, `berth mount on the same path succeeds: ${again.stderr}`)
  t.ok(isMounted(dir), 'mounted')
  t.equal(readFileSync(join(dir, 'kept.txt'), 'utf8'), 'kept\n', 'and serves the files written before')
  t.equal(berth(['umount', dir], env).status, 0, 'unmounted')
})

t.test('berth up mounts the local cluster at --mount and unmounts on SIGTERM', async (t) => {
  const root = testDir(t)
  const mnt = join(root, 'mnt')
  const up: ChildProcess = spawn(process.execPath, [BERTH_BIN, 'up', '--json', '--dir', join(root, 'cluster'), '--nodes', '3', '--mount', mnt], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BERTH_LOG: 'warn' },
  })
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
    fusermountUz(mnt)
  })
  let out = ''
  up.stdout?.on('data', (b: Buffer) => (out += b.toString()))
  up.stderr?.on('data', (b: Buffer) => (out += b.toString()))
  await waitFor('berth up to report ready', () => out.includes('"event":"ready"'), 30_000)
  t.ok(isMounted(mnt), `mounted at ${mnt}`)
  await fs.writeFile(join(mnt, 'hello.txt'), 'hello\n')
  t.equal(readFileSync(join(mnt, 'hello.txt'), 'utf8'), 'hello\n', 'a new user can write and read in the mount')
  const exited = new Promise<number | null>((r) => up.once('exit', (code) => r(code)))
  up.kill('SIGTERM')
  t.equal(await exited, 0, 'berth up exits 0 on SIGTERM')
  t.notOk(isMounted(mnt), 'unmounted after SIGTERM')
  t.ok(existsSync(mnt), 'the mountpoint directory stays')
})

t.test('every failed mount ends within seconds, says why with a hint, and leaves no process', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const env = c.env('client')
  const root = join(c.dir, 'failures')
  mkdirSync(root)
  const mnt = (name: string) => join(root, name)
  const cleanup: string[] = []
  t.teardown(() => {
    for (const dir of cleanup) {
      const pid = readPid(dir)
      if (pid !== null && alive(pid)) process.kill(pid, 'SIGKILL')
      fusermountUz(dir)
    }
  })
  const user = env.BERTH_NATS_USER!
  const pass = env.BERTH_NATS_PASS!
  const noCreds = { BERTH_NATS_USER: '', BERTH_NATS_PASS: '' }
  const port = new URL(c.nats.url).port

  const fails = (what: string, args: string[], e: NodeJS.ProcessEnv, expect: RegExp[]) => {
    const r = berth(args, e, c.dir)
    t.not(r.status, 0, `${what}: exits non-zero`)
    t.ok(r.ms < 10_000, `${what}: ends in ${r.ms} ms`)
    for (const re of expect) t.match(r.stderr, re, `${what}: stderr says ${re}`)
    t.notMatch(r.stderr, new RegExp(pass.replace(/[-]/g, '\\-')), `${what}: no password on stderr`)
    return r
  }
  const noProcessLeft = async (what: string, dir: string) => {
    // the daemon exits right after it reports the failure
    await waitFor(`${what}: no process left`, () => processesMentioning(dir).length === 0, 3000).catch(() => undefined)
    t.same(processesMentioning(dir), [], `${what}: no process left`)
    t.notOk(isMounted(dir), `${what}: nothing mounted`)
  }

  fails('missing mountpoint', ['mount', c.nats.url, mnt('missing')], env, [/does not exist/, /mkdir -p/])
  await noProcessLeft('missing mountpoint', mnt('missing'))

  writeFileSync(mnt('file'), 'x')
  fails('a file', ['mount', c.nats.url, mnt('file')], env, [/not a directory/])

  mkdirSync(mnt('full'))
  writeFileSync(join(mnt('full'), 'old.txt'), 'x')
  fails('not empty', ['mount', c.nats.url, mnt('full')], env, [/not empty/, /-o nonempty/])
  await noProcessLeft('not empty', mnt('full'))
  cleanup.push(mnt('full'))
  const over = berth(['mount', c.nats.url, mnt('full'), '-o', 'nonempty'], env, c.dir)
  t.equal(over.status, 0, `-o nonempty mounts over a non-empty directory: ${over.stderr}`)
  t.ok(isMounted(mnt('full')), '-o nonempty: mounted')
  t.match(berth(['mount', c.nats.url, mnt('full')], env, c.dir).stderr, /already mounted by berth \(pid \d+\)[^]*berth umount/, 'already mounted: names the pid and says how to unmount')
  t.equal(berth(['umount', mnt('full')], env, c.dir).status, 0, 'unmounted')
  t.ok(existsSync(join(mnt('full'), 'old.txt')), 'the hidden file is back')

  mkdirSync(mnt('m'))
  const closed = await freePort()
  fails('wrong URL', ['mount', `nats://127.0.0.1:${closed}`, mnt('m')], env, [/cannot connect to NATS/, /CONNECTION_REFUSED/, /hint/])
  await noProcessLeft('wrong URL', mnt('m'))
  fails('wrong credentials', ['mount', c.nats.url, mnt('m')], { ...env, BERTH_NATS_PASS: 'wrong' }, [/refused/, /Authorization Violation/, /--credentials/])
  await noProcessLeft('wrong credentials', mnt('m'))
  fails('missing credentials', ['mount', c.nats.url, mnt('m')], { ...env, ...noCreds }, [/refused/, /sent no credentials/, /--credentials/])
  await noProcessLeft('missing credentials', mnt('m'))
  const bad = fails('wrong password in the URL', ['mount', `nats://${user}:not-${pass}@127.0.0.1:${port}`, mnt('m')], { ...env, ...noCreds }, [/refused/, /:\*\*\*@|127\.0\.0\.1/])
  t.notMatch(bad.stderr, /not-/, 'the wrong password is not printed either')
  await noProcessLeft('wrong password in the URL', mnt('m'))

  // credentials inside the URL are accepted, and masked everywhere
  cleanup.push(mnt('m'))
  const ok = berth(['mount', `nats://${user}:${pass}@127.0.0.1:${port}`, mnt('m')], { ...env, ...noCreds }, c.dir)
  t.equal(ok.status, 0, `credentials in the URL: mounted: ${ok.stderr}`)
  const pid = readPid(mnt('m'))
  t.ok(pid !== null && alive(pid), 'daemon running')
  if (pid !== null) {
    t.notMatch(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), pass, 'the password is not in the daemon\'s command line (ps)')
    const log = /log (\S+)\)/.exec(ok.stderr)?.[1]
    if (log) t.notMatch(readFileSync(log, 'utf8'), pass, 'nor in its log')
  }
  await fs.writeFile(join(mnt('m'), 'a.txt'), 'a')

  // a crashed mount: the daemon dies, the kernel answers ENOTCONN; umount cleans it
  if (pid !== null) process.kill(pid, 'SIGKILL')
  await waitFor('the daemon to die', () => pid === null || !alive(pid), 5000)
  const crashed = berth(['umount', mnt('m')], env, c.dir)
  t.equal(crashed.status, 0, `umount of a crashed mount exits 0: ${crashed.stderr}`)
  t.match(crashed.stderr, /crashed/, 'and says it was a crashed mount')
  t.notOk(isMounted(mnt('m')), 'crashed mount detached')
  const again = berth(['umount', mnt('m')], env, c.dir)
  t.not(again.status, 0, 'umount of what is not mounted fails')
  t.match(again.stderr, /not mounted/, 'saying so')

  // status and fsck: the same reasons, fast
  fails('status, wrong URL', ['status', '--nats', `nats://127.0.0.1:${closed}`], env, [/cannot connect to NATS/])
  fails('fsck, missing credentials', ['fsck', '--nats', c.nats.url], { ...env, ...noCreds }, [/sent no credentials/])
  const creds = join(root, 'client.env')
  writeFileSync(creds, `BERTH_NATS_URL=${c.nats.url}\nBERTH_NATS_USER=${user}\nBERTH_NATS_PASS=${pass}\n`, { mode: 0o644 })
  const st = berth(['status', '--credentials', creds], { ...env, ...noCreds }, c.dir)
  t.equal(st.status, 0, `status with a credentials file: ${st.stderr}`)
  t.match(st.stderr, /readable by every user[^]*chmod 600/, 'a world-readable credentials file gets a warning')
})
