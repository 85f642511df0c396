/**
 * A data node whose disk hangs while the process goes on (a dead disk behind
 * long I/O timeouts, a hung network block device; here `fsfreeze` of the
 * ext4 filesystem its folder is on, in a loop device the test creates and
 * removes). Its event loop is free, so it kept sending heartbeats and every
 * peer counted it live: a block PUT to it waited out the writer's 30 s
 * deadline and the application's fsync failed, while two healthy nodes were
 * up. Now the node notices that its canary write has not finished within
 * --disk-stall-ms, sends a last heartbeat that says `down`, then none, leaves
 * placement and refuses PUTs, so its peers count it dead at once and writers
 * go elsewhere; when the disk answers again, it comes back.
 */
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { StatusReply } from '../common/protocol'
import { berthCli, berthJson } from './helpers/berth-cli'
import { startCluster } from './helpers/cluster'
import { blockClient, eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

const STALL_MS = 3000

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (losetup, mount, fsfreeze)'
  for (const tool of ['losetup', 'mkfs.ext4', 'fsfreeze']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} not installed`
  }
  // a container without loop devices
  if (!existsSync('/dev/loop-control') || spawnSync('losetup', ['--find']).status !== 0) return 'no free loop device'
  return false
}

const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.trim()
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

t.test('a node whose disk hangs leaves the cluster until it answers again; no fsync fails', { skip: skipReason(), timeout: 240_000 }, async (t) => {
  // a small ext4 in a loop device: the node's folder is on it. Outside the
  // test's folder, which startCluster takes over (tap recreates it)
  const dir = mkdtempSync(join(tmpdir(), 'berth-disk-stall-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const image = join(dir, 'disk.img')
  run('truncate', ['-s', '512M', image])
  run('mkfs.ext4', ['-q', '-F', image])
  const loop = run('losetup', ['--find', '--show', image])
  const mnt = join(dir, 'disk')
  mkdirSync(mnt)
  let frozen = false
  // teardowns run last-registered first: thaw, unmount, then free the loop device
  t.teardown(() => void spawnSync('losetup', ['-d', loop]))
  run('mount', [loop, mnt])
  t.teardown(() => void spawnSync('umount', [mnt]))
  const thaw = () => {
    if (frozen) run('fsfreeze', ['-u', mnt])
    frozen = false
  }
  t.teardown(thaw)

  const c = await startCluster(t, { nodes: 2, replicas: 2, nodeArgs: ['--disk-stall-ms', String(STALL_MS)] })
  const victim = await c.startNode({ dir: join(mnt, 'node') })
  c.nodes.push(victim)
  const victimId = String(victim.ready.id)
  const bc = await blockClient(t, c, 3)
  const m = await mountCluster(t, c)

  const sums: string[] = []
  const failed: string[] = []
  const waits: number[] = []
  const writeLoop = async (ms: number) => {
    const until = Date.now() + ms
    while (Date.now() < until) {
      const i = sums.length
      const data = Buffer.alloc(200_000, i % 251)
      data.writeUInt32LE(i)
      const t0 = Date.now()
      try {
        const fd = openSync(join(m.dir, `f${i}`), 'w')
        writeSync(fd, data)
        fsyncSync(fd)
        closeSync(fd)
      } catch (err) {
        failed.push(`f${i}: ${(err as Error).message} after ${Date.now() - t0} ms`)
      }
      waits.push(Date.now() - t0)
      sums.push(sha(data))
      // fs calls are synchronous here: let the test's own timers run
      await new Promise((r) => setImmediate(r))
    }
  }
  await writeLoop(3000)
  const before = sums.length

  run('fsfreeze', ['-f', mnt])
  frozen = true
  const frozenAt = Date.now()
  await writeLoop(8000)
  const during = waits.slice(before)
  t.same(failed, [], `no write or fsync failed while the disk hung (${during.length} files, longest wait ${Math.max(...during)} ms)`)
  // before: one fsync failed with ETIMEDOUT after the writer's 30 s deadline
  // the node's last heartbeat says `down`: peers count it dead at once, not NODE_DEAD_MS later
  t.ok(Math.max(...during) < 20_000, `the longest wait (${Math.max(...during)} ms) is about the stall limit (${STALL_MS} ms), not the 30 s deadline`)
  t.ok(await eventually(() => !bc.liveNodes().has(victimId), 15_000, 200), 'the node counts as dead while its disk hangs')
  t.match(victim.stderr(), /disk stalled/, 'and its log says why')
  const st = await berthCli(c, ['status'])
  t.match(st.stdout.split('\n').find((l) => l.startsWith(victimId)) ?? '', /down, disk hangs/, 'and berth status says why')
  const js = await berthJson<StatusReply>(t, c, ['status'])
  t.match(js.json.nodes.find((n) => n.id === victimId), { alive: false, down: true }, 'also in --json')
  t.comment(`frozen for ${Date.now() - frozenAt} ms; node log: ${victim.stderr().split('\n').filter((l) => /disk/.test(l)).slice(0, 3).join(' | ')}`)

  thaw()
  t.ok(await eventually(() => bc.liveNodes().has(victimId), 20_000, 200), 'it comes back once the disk answers')
  await writeLoop(2000)
  let bad = 0
  for (let i = 0; i < sums.length; i++) if (sha(readFileSync(join(m.dir, `f${i}`))) !== sums[i]) bad++
  t.equal(bad, 0, `all ${sums.length} files read back intact`)
})
