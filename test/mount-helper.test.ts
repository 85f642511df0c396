/**
 * Mounting like any other filesystem: tools/install-mount-helper puts
 * /sbin/mount.fuse.berth in place, then the real `mount -t fuse.berth NATS_URL
 * DIR -o credentials=FILE,allow_other,_netdev,...` mounts a real cluster and
 * `umount DIR` unmounts it (the daemon notices, flushes and exits). A missing
 * credentials file fails the mount with a clear message and mounts nothing.
 * Any helper that was installed before is put back afterwards.
 */
import { execFile, spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { isAlive } from '../common/process-alive'
import { isMounted, readPid } from '../client/mount-state'
import { startCluster } from './helpers/cluster'
import { fusermountUz } from './helpers/mount'

const REPO = resolve(__dirname, '..', '..')
const HELPER = '/sbin/mount.fuse.berth'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((ok) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => ok({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr }))
  })
}

function mountLine(dir: string): string | undefined {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === dir)
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(100)
  }
}

t.test('mount -t fuse.berth and umount through /sbin/mount.fuse.berth', { skip: process.getuid?.() !== 0 ? 'needs root (mount(8))' : false }, async (t) => {
  const backupDir = existsSync(HELPER) ? mkdtempSync(join(tmpdir(), 'berth-helper-')) : null
  const backup = backupDir ? join(backupDir, 'previous') : null
  if (backup) copyFileSync(HELPER, backup)
  t.teardown(() => {
    if (backup && backupDir) {
      copyFileSync(backup, HELPER)
      chmodSync(HELPER, 0o755)
      rmSync(backupDir, { recursive: true, force: true })
    } else rmSync(HELPER, { force: true })
  })
  const inst = spawnSync(join(REPO, 'tools', 'install-mount-helper'), { encoding: 'utf8' })
  t.equal(inst.status, 0, `install-mount-helper: ${inst.stdout}${inst.stderr}`)
  t.match(readFileSync(HELPER, 'utf8'), `${REPO}/bin/berth.js`, 'the helper runs this checkout')

  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  const creds = join(c.dir, 'client.env')
  writeFileSync(creds, `# berth client\nBERTH_NATS_USER=${c.nats.users.client.user}\nBERTH_NATS_PASS=${c.nats.users.client.pass}\n`, { mode: 0o600 })
  const dir = mkdtempSync(join(tmpdir(), 'berth-fstab-'))
  const daemons: number[] = []
  t.teardown(() => {
    fusermountUz(dir)
    for (const pid of daemons) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  const opts = `_netdev,x-systemd.automount,nofail,credentials=${creds},allow_other`
  const m1 = await run('mount', ['-t', 'fuse.berth', c.nats.url, dir, '-o', opts])
  t.equal(m1.code, 0, `mount exits 0: ${m1.out}`)
  t.ok(isMounted(dir), 'mounted')
  const line = mountLine(dir) ?? ''
  t.match(line, /allow_other/, `allow_other reached the kernel: ${line}`)
  const pid1 = readPid(dir)
  t.ok(pid1 && isAlive(pid1), 'a mount daemon runs')
  if (pid1) daemons.push(pid1)

  await writeFile(join(dir, 'hello.txt'), 'mounted by mount(8)\n')
  t.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'mounted by mount(8)\n')

  const u1 = await run('umount', [dir])
  t.equal(u1.code, 0, `umount exits 0: ${u1.out}`)
  t.notOk(isMounted(dir), 'unmounted')
  await until('mount daemon exits after umount', () => !pid1 || !isAlive(pid1), 15_000)
  t.pass('the daemon exited by itself')

  const m2 = await run('mount', ['-t', 'fuse.berth', c.nats.url, dir, '-o', opts])
  t.equal(m2.code, 0, `mounts again: ${m2.out}`)
  const pid2 = readPid(dir)
  if (pid2) daemons.push(pid2)
  t.same(await readdir(dir), ['hello.txt'], 'the file survived umount and mount')
  t.equal(await readFile(join(dir, 'hello.txt'), 'utf8'), 'mounted by mount(8)\n')
  const u2 = await run('umount', [dir])
  t.equal(u2.code, 0, `umount again: ${u2.out}`)
  await until('second daemon exits', () => !pid2 || !isAlive(pid2), 15_000)

  const bad = await run('mount', ['-t', 'fuse.berth', c.nats.url, dir, '-o', `credentials=${join(c.dir, 'nope.env')}`])
  t.not(bad.code, 0, 'a missing credentials file fails the mount')
  t.match(bad.out, /cannot read credentials file/)
  t.notOk(isMounted(dir), 'nothing mounted')
})
