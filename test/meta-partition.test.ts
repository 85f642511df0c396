/**
 * Partitions of replicated meta (issue 9), with hosts simulated by network
 * namespaces (test/helpers/netns.ts) that the test creates and removes.
 *
 * 1. The leader meta loses its link to the NATS cluster while a client keeps
 *    writing: a new leader serves; when the link returns, the old leader has
 *    appended nothing to the log after the new leader's marker (the log
 *    records who appended each entry), and every mutation the client saw
 *    acknowledged is in the namespace the new leader serves, exactly once (a
 *    mutation answered by the deposed leader without reaching the log would be
 *    missing there). The old leader rejoins as a follower and catches up.
 * 2. A client partitioned for 2x its session TTL: its unlinked-but-open files
 *    are still readable afterwards or their handles fail with EIO and a log
 *    line; never wrong data, never a silent loss.
 *
 * Hosts: "nats" runs three clustered nats-servers (and, in case 2, meta and a
 * data node), "ma"/"mb" one meta each, "cl" the client (a writer script, or
 * a FUSE mount entered with nsenter --net so the test reads it).
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { generateUsers, natsConfig, natsServerPath, type NatsUsers } from '../cli/nats-server'
import { BERTH_BIN } from '../cli/spawn-service'
import { fusermountUz } from './helpers/mount'
import { createLab, netnsUnavailable, startIn, type Lab, type LabHost, type Started } from './helpers/netns'
import { sleep } from './helpers/lifecycle'
import { testDir } from './helpers/test-dir'

const CLIENT_JS = join(__dirname, 'helpers', 'partition-client.js')
const LEASE_TTL_MS = 3000
const isReady = (out: string) => /"event":"ready"/.test(out)

function skipReason(): string | false {
  const why = netnsUnavailable()
  if (why) return `network namespaces unavailable: ${why}`
  if (!natsServerPath()) return 'nats-server not installed'
  return false
}

/** Three clustered nats-servers on `host` (client ports 4222-4224, routes on its loopback); resolves with the URL list. */
async function startNats(lab: Lab, host: LabHost, dir: string, users: NatsUsers, n = 3): Promise<string> {
  const routes = Array.from({ length: n }, (_, i) => 6222 + i)
  await Promise.all(
    routes.map(async (routePort, i) => {
      const d = join(dir, `nats-${i}`)
      mkdirSync(d, { recursive: true })
      const conf = join(d, 'nats.conf')
      const route = n > 1 ? { serverName: `lab-nats-${i}`, port: routePort, routes } : undefined
      writeFileSync(conf, natsConfig({ port: 4222 + i, storeDir: join(d, 'js'), users, route, host: host.ip }), { mode: 0o600 })
      await startIn(lab, host, [natsServerPath()!, '-c', conf], {}, (_o, e) => /Server is ready/.test(e), { ms: 20_000 })
    }),
  )
  return routes.map((_, i) => `nats://${host.ip}:${4222 + i}`).join(',')
}

const roleEnv = (users: NatsUsers, role: keyof NatsUsers, secret: string) => ({ BERTH_NATS_USER: users[role].user, BERTH_NATS_PASS: users[role].pass, BERTH_SECRET: secret })

/** Runs partition-client.js in `host` to completion and parses its JSON lines. */
function script<T>(lab: Lab, host: LabHost, env: Record<string, string>, args: string[]): T[] {
  const r = spawnSync('ip', ['netns', 'exec', host.ns, process.execPath, CLIENT_JS, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 })
  if (r.status !== 0) throw new Error(`partition-client ${args[0]} failed (${r.status}): ${r.stderr}`)
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as T)
}

const metaIdOf = (s: Started) => (/"metaId":"([^"]+)"/.exec(s.log()) ?? [])[1] ?? ''

t.test('the leader meta cut off from NATS: a new leader serves; the old one appends and answers nothing', { skip: skipReason(), timeout: 240_000 }, async (t) => {
  const dir = testDir(t)
  const lab = createLab(t)
  const natsHost = lab.addHost('nats')
  const hostA = lab.addHost('ma')
  const hostB = lab.addHost('mb')
  const client = lab.addHost('cl')
  const users = generateUsers()
  const secret = randomBytes(24).toString('base64url')
  const url = await startNats(lab, natsHost, dir, users)
  // no snapshots: the checks read the whole log (who appended after B's marker),
  // and a snapshot every 10,000 entries trims it (the writer makes ~12,000)
  const metaArgs = (db: string) => [BERTH_BIN, 'meta', '--nats', url, '--db', db, '--ha', '--log-replicas', '3', '--lease-ttl-ms', String(LEASE_TTL_MS), '--snapshot-entries', '0']
  const metaA = await startIn(lab, hostA, metaArgs(join(dir, 'a.db')), roleEnv(users, 'meta', secret), isReady)
  const metaB = await startIn(lab, hostB, metaArgs(join(dir, 'b.db')), roleEnv(users, 'meta', secret), isReady)
  const idA = metaIdOf(metaA)
  const idB = metaIdOf(metaB)
  t.ok(idA && idB, `metas ${idA} on ${hostA.ip}, ${idB} on ${hostB.ip}`)

  // the writer: mknod for 24 s; A is cut 3 s after its first line and healed 10 s later
  const writer = lab.spawnIn(client, process.execPath, [CLIENT_JS, 'write', url, 'w', '24000'], { env: { ...process.env, ...roleEnv(users, 'client', secret) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  writer.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c))
  writer.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c))
  const writerDone = new Promise<number | null>((r) => writer.once('exit', (code) => r(code)))
  // the writer's first line says who leads; let it write for 3 s more before the cut
  for (let i = 0; i < 300 && !out.includes('\n'); i++) await sleep(100)
  await sleep(3000)
  const first = JSON.parse(out.split('\n')[0] ?? '{}') as { leader?: string }
  t.equal(first.leader, idA, 'A (started first) leads before the cut')
  const cutAt = Date.now()
  lab.cut(hostA)
  await sleep(10_000)
  lab.heal(hostA)
  const healAt = Date.now()
  t.equal(await writerDone, 0, `the writer ran to its end ${err ? `(stderr: ${err.slice(0, 500)})` : ''}`)

  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { op?: number; ok?: boolean; at?: number; code?: string })
  const ops = lines.filter((l) => l.op !== undefined)
  const acked = ops.filter((l) => l.ok).map((l) => `f${l.op}`)
  const failed = ops.filter((l) => !l.ok)
  const afterCut = ops.filter((l) => l.ok && l.at! > cutAt)
  const firstAfter = afterCut[0]?.at
  t.ok(afterCut.length > 0, `${afterCut.length} mutations acknowledged after the cut (the first ${firstAfter ? firstAfter - cutAt : '?'} ms after it), ${ops.filter((l) => l.ok && l.at! > healAt).length} after the heal`)
  t.comment(`${acked.length} acknowledged, ${failed.length} failed (${[...new Set(failed.map((f) => f.code))].join(', ')})`)
  // the client's NATS server keeps A's subscriptions until it drops the dead
  // connection; the client asks the leader probe again once an attempt on A has
  // waited 1 s and goes on with B (common/meta-route.ts). Before, it sent to
  // the queue group, where its server preferred A, and waited for the heal
  const during = ops.filter((l) => l.ok && l.at! > cutAt && l.at! <= healAt).map((l) => l.at!)
  let gap = 0
  for (let i = 0, prev = cutAt; i <= during.length; prev = during[i++] ?? prev) gap = Math.max(gap, (during[i] ?? healAt) - prev)
  t.ok(during.length > 100, `the writer goes on while A is cut off: ${during.length} acknowledged during the ${healAt - cutAt} ms partition, the longest wait ${gap} ms`)

  // let A notice it was deposed and catch up as a follower
  let check: { leader: string; names: string[]; replicas: Array<{ metaId: string; lag: number }> } | undefined
  for (let i = 0; i < 30; i++) {
    check = script<typeof check & object>(lab, client, roleEnv(users, 'client', secret), ['check', url, 'w'])[0]
    if (check?.replicas.some((r) => r.metaId === idA && r.lag <= 2)) break
    await sleep(1000)
  }
  t.equal(check?.leader, idB, 'B leads after the partition')
  t.ok(check?.replicas.some((r) => r.metaId === idA && r.lag <= 2), 'A rejoined as a follower and caught up')
  const names = new Set(check?.names ?? [])
  const missing = acked.filter((n) => !names.has(n))
  const when = (n: string) => `${n}@${(ops.find((o) => `f${o.op}` === n)?.at ?? 0) - cutAt}ms`
  t.same(missing.map(when), [], 'every acknowledged mutation is in the namespace the new leader serves (name@ms after the cut)')
  const unknown = [...names].filter((n) => !acked.includes(n) && !failed.some((f) => `f${f.op}` === n))
  t.same(unknown, [], 'nothing is there that was neither acknowledged nor attempted')
  t.equal(names.size, check?.names.length, 'no name twice')

  const { entries } = script<{ entries: Array<{ seq: number; by: string; lead: boolean; names: string[] }> }>(lab, client, roleEnv(users, 'meta', secret), ['log', url])[0]!
  if (missing.length) {
    const near = script<{ entries: Array<{ seq: number; by: string; sql?: string[] }> }>(lab, client, roleEnv(users, 'meta', secret), ['log', url, String(entries.find((x) => x.by === idB && x.lead)?.seq ?? 0)])[0]!
    for (const e of near.entries.filter((x) => x.sql)) t.comment(`entry ${e.seq} by ${e.by}:\n  ${e.sql!.join('\n  ')}`)
  }
  for (const n of missing) t.comment(`${n}: writer ops around it (op, ok, ms after the cut): ${JSON.stringify(ops.filter((o) => Math.abs(o.op! - Number(n.slice(1))) <= 2).map((o) => [o.op, o.ok, o.at! - cutAt]))}; heal at ${healAt - cutAt} ms; in log entries ${JSON.stringify(entries.filter((e) => e.names.includes(n)).map((e) => ({ seq: e.seq, by: e.by })))}; around B's marker: ${JSON.stringify(entries.filter((e) => Math.abs(e.seq - (entries.find((x) => x.by === idB && x.lead)?.seq ?? 0)) <= 2))}`)
  const markerB = entries.filter((e) => e.by === idB && e.lead).at(-1)
  t.ok(markerB, `B appended its leadership marker (seq ${markerB?.seq})`)
  const lateA = entries.filter((e) => e.by === idA && markerB && e.seq > markerB.seq)
  t.same(lateA.map((e) => e.seq), [], `A appended nothing after B's marker (A's last entry: seq ${entries.filter((e) => e.by === idA).at(-1)?.seq}, log ${entries.length} entries)`)
  t.comment(`A's log lines around the partition:\n${metaA.log().split('\n').filter((l) => /lease|lead|step|follow/i.test(l)).slice(-8).join('\n')}`)
})

t.test('a client partitioned for 2x its session TTL: unlinked open files read back right or fail with EIO, loudly', { skip: skipReason() || (!existsSync('/dev/fuse') && 'no /dev/fuse'), timeout: 180_000 }, async (t) => {
  const SESSION_TTL_MS = 4000
  const dir = testDir(t)
  // outside the test dir: tap removes that first among the teardowns, while the mount is still up
  const mnt = mkdtempSync(join(tmpdir(), 'berth-partition-mnt-'))
  const lab = createLab()
  const fds: number[] = []
  // close(2) of a handle that failed may itself say EIO; the descriptor is gone either way
  const closeAll = () =>
    fds.splice(0).forEach((fd) => {
      try {
        closeSync(fd)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EIO') throw err
      }
    })
  // in order: our open handles, the mount (in this machine's mount namespace), then the lab's processes
  t.teardown(async () => {
    try {
      closeAll()
    } finally {
      fusermountUz(mnt)
      await lab.destroy()
      rmSync(mnt, { recursive: true, force: true })
    }
  })
  const server = lab.addHost('srv')
  const client = lab.addHost('cl')
  const users = generateUsers()
  const secret = randomBytes(24).toString('base64url')
  const url = await startNats(lab, server, dir, users, 1)
  await startIn(lab, server, [BERTH_BIN, 'meta', '--nats', url, '--db', join(dir, 'meta.db'), '--replicas', '1'], roleEnv(users, 'meta', secret), isReady)
  await startIn(lab, server, [BERTH_BIN, 'node', '--nats', url, '--dir', join(dir, 'node'), '--listen', `${server.ip}:7001`], roleEnv(users, 'node', secret), isReady)
  const mount = await startIn(lab, client, [BERTH_BIN, 'mount', url, mnt, '--foreground', '--session-ttl-ms', String(SESSION_TTL_MS)], roleEnv(users, 'client', secret), isReady, { hostMounts: true, ms: 30_000 })

  // one inline file (kept in meta) and one of blocks on the node; both open, then unlinked
  const files = [
    { name: 'small', data: randomBytes(3000) },
    { name: 'big', data: randomBytes(300 * 1024) },
  ]
  for (const f of files) {
    writeFileSync(join(mnt, f.name), f.data)
    fds.push(openSync(join(mnt, f.name), 'r'))
    unlinkSync(join(mnt, f.name))
  }

  lab.cut(client)
  await sleep(2 * SESSION_TTL_MS + 2000)
  lab.heal(client)
  // a renewal comes every third of the TTL; give it a few rounds to hear ESTALE and restore
  await sleep(SESSION_TTL_MS)

  let eio = 0
  for (const [i, f] of files.entries()) {
    const buf = Buffer.alloc(f.data.length)
    try {
      let got = 0
      while (got < buf.length) {
        const n = readSync(fds[i]!, buf, got, buf.length - got, got)
        if (n === 0) break
        got += n
      }
      t.ok(got === f.data.length && buf.equals(f.data), `${f.name}: the open handle still reads the file's exact bytes`)
    } catch (err) {
      t.equal((err as NodeJS.ErrnoException).code, 'EIO', `${f.name}: the handle fails with EIO (not wrong data)`)
      eio++
    }
  }
  if (eio > 0) t.match(mount.log(), /session lease lapsed|EIO/, 'the mount logged why those handles fail')
  t.comment(`${files.length - eio} handle(s) still read their bytes, ${eio} failed with EIO; mount log:\n${mount.log().split('\n').filter((l) => /session|lease|EIO/i.test(l)).slice(-5).join('\n')}`)
  // the mount works again after the partition
  writeFileSync(join(mnt, 'after'), 'ok')
  t.equal(spawnSync('cat', [join(mnt, 'after')], { encoding: 'utf8' }).stdout, 'ok', 'the mount serves new files after the partition')
  closeAll()
})
