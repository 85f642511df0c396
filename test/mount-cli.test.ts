/**
 * The mount as scripts, fstab and systemd use it: `berth mount` without
 * --foreground returns only once the directory answers and keeps running in
 * the background; `berth umount` and SIGTERM flush dirty data before
 * unmounting; `berth up` mounts the local cluster where asked.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, promises as fs, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { isAlive as alive, isMounted, readPid } from '../client/mount-state'
import { startCluster } from './helpers/cluster'
import { fusermountUz } from './helpers/mount'

function berth(args: string[], env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
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

t.test('berth up mounts the local cluster at --mount and unmounts on SIGTERM', async (t) => {
  const root = t.testdir()
  const mnt = join(root, 'mnt')
  const up: ChildProcess = spawn(process.execPath, [BERTH_BIN, 'up', '--dir', join(root, 'cluster'), '--nodes', '3', '--mount', mnt], {
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
