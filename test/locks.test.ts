/**
 * Locks across mounts (client/locks.ts, meta/locks.ts, docs/semantics.md#locks):
 * real processes calling fcntl(2) and flock(2) on two mounts of one cluster,
 * each step driven in order, so every interleaving here is the one named.
 */
import { spawnSync } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startCluster } from './helpers/cluster'
import { within } from './helpers/lifecycle'
import { LockProbe } from './helpers/lock-probe'
import { mountCluster } from './helpers/mount'
import { testDir } from './helpers/test-dir'

/**
 * One script of lock calls by two processes, answered by a local directory and
 * by a mount: the answers must be the same (pids named P and Q). Splits,
 * merges, F_GETLK's answers, a refused flock upgrade that drops the shared lock.
 */
const SCRIPT: Array<['P' | 'Q', string]> = [
  ['P', 'open f FILE rw'],
  ['Q', 'open f FILE rw'],
  ['P', 'lock f setlk w 0 10'],
  ['Q', 'lock f setlk r 5 1'],
  ['Q', 'getlk f w 0 0'],
  ['P', 'lock f setlk r 2 3'],
  ['Q', 'getlk f w 0 0'],
  ['Q', 'getlk f r 2 3'],
  ['Q', 'lock f setlk r 3 1'],
  ['Q', 'lock f setlk w 3 1'],
  ['P', 'lock f setlk w 2 3'],
  ['Q', 'getlk f r 4 100'],
  ['P', 'lock f setlk u 0 0'],
  ['Q', 'getlk f w 0 0'],
  ['Q', 'lock f setlk w 0 0'],
  ['P', 'getlk f r 1000 0'],
  ['P', 'flock f ex+nb'],
  ['Q', 'flock f sh+nb'],
  ['P', 'flock f sh'],
  ['Q', 'flock f sh+nb'],
  ['Q', 'flock f ex+nb'],
  ['P', 'flock f ex+nb'],
  ['Q', 'flock f sh+nb'],
  ['P', 'close f'],
  ['Q', 'flock f ex+nb'],
  ['Q', 'getlk f w 0 0'],
]

async function runScript(t: Test, file: string): Promise<string[]> {
  const p = { P: new LockProbe(t), Q: new LockProbe(t) }
  const out: string[] = []
  for (const [who, cmd] of SCRIPT) {
    const answer = await p[who].send(cmd.replace('FILE', file))
    out.push(`${who} ${cmd.replace(' FILE', '')} -> ${answer.replace(String(p.P.pid), 'P').replace(String(p.Q.pid), 'Q')}`)
  }
  p.P.kill()
  p.Q.kill()
  return out
}

t.test('one mount answers a script of lock calls as a local directory does', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const m = await mountCluster(t, c)
  const local = await runScript(t, join(testDir(t), 'locked'))
  const berth = await runScript(t, join(m.dir, 'locked'))
  t.same(berth, local, 'the same answers')
  t.ok(local.some((l) => l.includes('EAGAIN')) && local.some((l) => l.includes(' lk w ')), 'the script meets refusals and conflicts')
})

t.test('-o local_locks: the kernel keeps locks on its machine, other mounts do not see them', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  const local = await mountCluster(t, c, { args: ['-o', 'local_locks'] })
  const other = await mountCluster(t, c)
  const p1 = await LockProbe.opened(t, join(local.dir, 'll'))
  const p2 = await LockProbe.opened(t, join(local.dir, 'll'))
  const q = await LockProbe.opened(t, join(other.dir, 'll'))
  t.equal(await p1.send('lock f setlk w 0 0'), 'ok')
  t.equal(await p2.send('lock f setlk w 0 0'), 'err EAGAIN', 'two processes on that machine still exclude each other')
  t.equal(await p2.send('flock f ex+nb'), 'ok')
  t.equal(await p1.send('flock f ex+nb'), 'err EAGAIN', 'flock too')
  t.equal(await q.send('lock f setlk w 0 0'), 'ok', 'a process on another mount does not see them')
  t.equal(await q.send('flock f ex+nb'), 'ok')
})

t.test('locks across two mounts', async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const a = await mountCluster(t, c, { args: ['--session-ttl-ms', '4000'] })
  const b = await mountCluster(t, c)
  const fa = (name: string) => join(a.dir, name)
  const fb = (name: string) => join(b.dir, name)

  await t.test('fcntl write lock on A: B is refused, F_GETLK names it (pid 0: another mount), A\'s other process sees the pid', async (t) => {
    const p1 = await LockProbe.opened(t, fa('rec'))
    const p2 = await LockProbe.opened(t, fa('rec'))
    const q = await LockProbe.opened(t, fb('rec'))
    t.equal(await p1.send('lock f setlk w 0 100'), 'ok', 'A locks bytes 0-99')
    t.equal(await q.send('lock f setlk w 50 10'), 'err EAGAIN', 'B: overlapping write lock refused')
    t.equal(await q.send('lock f setlk r 99 1'), 'err EAGAIN', 'B: read lock on the last byte refused')
    t.equal(await q.send('lock f setlk w 100 10'), 'ok', 'B: the bytes after it are free')
    t.equal(await q.send('getlk f w 0 0'), 'lk w 0 100 0', 'B: F_GETLK reports the range, pid 0')
    t.equal(await p2.send('getlk f r 10 1'), `lk w 0 100 ${p1.pid}`, 'A\'s other process: the holder\'s pid')
    t.equal(await p1.send('getlk f w 100 0'), 'lk w 100 10 0', 'A: B\'s lock is in the way')
    t.equal(await p1.send('lock f setlk u 40 20'), 'ok', 'A unlocks the middle')
    t.equal(await q.send('lock f setlk w 45 10'), 'ok', 'B takes the middle')
    t.equal(await q.send('lock f setlk w 0 10'), 'err EAGAIN', 'the start stays A\'s')
  })

  await t.test('read locks share across mounts, a writer waits for both', async (t) => {
    const ra = await LockProbe.opened(t, fa('shared'))
    const rb = await LockProbe.opened(t, fb('shared'))
    const w = await LockProbe.opened(t, fb('shared'))
    t.equal(await ra.send('lock f setlk r 0 0'), 'ok', 'reader on A')
    t.equal(await rb.send('lock f setlk r 0 0'), 'ok', 'reader on B')
    const waiting = w.send('lock f setlkw w 0 0')
    t.equal(await within(waiting, 300, 'pending'), 'pending', 'the writer waits')
    t.equal(await ra.send('lock f setlk u 0 0'), 'ok')
    t.equal(await within(waiting, 300, 'pending'), 'pending', 'one reader left: still waiting')
    const start = Date.now()
    t.equal(await rb.send('close f'), 'ok', 'the other reader closes its file: its lock goes')
    t.equal(await within(waiting, 5000, 'pending'), 'ok', 'the writer gets the lock')
    t.comment(`granted ${Date.now() - start} ms after the close`)
  })

  await t.test('POSIX: closing any descriptor of the file drops the process\'s locks, a read-only one too', async (t) => {
    const p = new LockProbe(t)
    const other = await LockProbe.opened(t, fb('closeany'))
    t.equal(await p.send(`open rw ${fa('closeany')} rw`), 'ok')
    t.equal(await p.send(`open ro ${fa('closeany')} r`), 'ok')
    t.equal(await p.send('lock rw setlk w 0 0'), 'ok')
    t.equal(await other.send('lock f setlk w 0 0'), 'err EAGAIN', 'held')
    t.equal(await p.send('close ro'), 'ok', 'close the read-only descriptor')
    t.equal(await other.send('lock f setlk w 0 0'), 'ok', 'the lock went with it')
  })

  await t.test('OFD locks belong to the open file description: they go at its last close', async (t) => {
    const p = new LockProbe(t)
    const other = await LockProbe.opened(t, fb('ofd'))
    t.equal(await p.send(`open x ${fa('ofd')} rw`), 'ok')
    t.equal(await p.send(`open y ${fa('ofd')} rw`), 'ok')
    t.equal(await p.send('lock x ofd w 0 0'), 'ok', 'OFD lock through x')
    t.equal(await p.send('lock y ofd w 0 0'), 'err EAGAIN', 'the same process through another description conflicts')
    t.equal(await other.send('lock f setlk r 0 0'), 'err EAGAIN', 'B is refused')
    t.equal(await p.send('close y'), 'ok', 'closing the other description keeps it')
    t.equal(await other.send('lock f setlk r 0 0'), 'err EAGAIN', 'still held')
    t.equal(await p.send('close x'), 'ok')
    t.equal(await within(other.send('lock f setlkw r 0 0'), 5000, 'pending'), 'ok', 'gone with its description')
  })

  await t.test('flock: exclusive across mounts, shared together, released at close', async (t) => {
    const pa = await LockProbe.opened(t, fa('flk'))
    const pb = await LockProbe.opened(t, fb('flk'), 'r')
    t.equal(await pa.send('flock f ex+nb'), 'ok', 'A exclusive')
    t.equal(await pb.send('flock f sh+nb'), 'err EAGAIN', 'B shared refused (EWOULDBLOCK)')
    t.equal(await pa.send('flock f sh'), 'ok', 'A converts to shared')
    t.equal(await pb.send('flock f sh+nb'), 'ok', 'B shares it')
    const upgrade = pb.send('flock f ex')
    t.equal(await within(upgrade, 300, 'pending'), 'pending', 'B waits to upgrade while A shares')
    t.equal(await pa.send('close f'), 'ok', 'A closes: its flock lock goes')
    t.equal(await within(upgrade, 5000, 'pending'), 'ok', 'B upgraded')
    // the fcntl and flock tables are separate, as on Linux
    const p = await LockProbe.opened(t, fa('flk'))
    t.equal(await p.send('lock f setlk w 0 0'), 'ok', 'an fcntl lock beside a flock lock')
  })

  await t.test('flock of a directory: the kernel keeps it on its machine (FUSE passes no directory lock on)', async (t) => {
    await mkdir(fa('lockdir'))
    const p = new LockProbe(t)
    const p2 = new LockProbe(t)
    const q = new LockProbe(t)
    t.equal(await p.send(`open d ${fa('lockdir')} r`), 'ok')
    t.equal(await p.send('flock d ex+nb'), 'ok', 'A locks the directory')
    t.equal(await p2.send(`open d ${fa('lockdir')} r`), 'ok')
    t.equal(await p2.send('flock d ex+nb'), 'err EAGAIN', 'another process on A is refused')
    t.equal(spawnSync('flock', ['-n', fa('lockdir'), 'true']).status, 1, 'flock(1) -n on A: busy')
    t.equal(await q.send(`open d ${fb('lockdir')} r`), 'ok')
    t.equal(await q.send('flock d ex+nb'), 'ok', 'a process on B does not see it (docs/semantics.md#locks)')
    t.equal(await p.send('close d'), 'ok')
    t.equal(await p2.send('flock d ex+nb'), 'ok', 'gone with its descriptor')
  })

  await t.test('a waiting process can be killed: SIGKILL ends its F_SETLKW and the mount stays well', async (t) => {
    const holder = await LockProbe.opened(t, fa('kill'))
    const waiter = await LockProbe.opened(t, fb('kill'))
    t.equal(await holder.send('lock f setlk w 0 0'), 'ok')
    const waiting = waiter.send('lock f setlkw w 0 0')
    t.equal(await within(waiting, 300, 'pending'), 'pending', 'waiting')
    const start = Date.now()
    waiter.kill('SIGKILL')
    const code = await within(waiter.exited.then(() => 'exited'), 5000, 'stuck')
    t.equal(code, 'exited', `the killed waiter exited (${Date.now() - start} ms)`)
    const next = await LockProbe.opened(t, fb('kill')) // B still answers
    t.equal(await next.send('lock f setlk w 0 0'), 'err EAGAIN', 'and the holder still holds')
  })

  await t.test('data written under a lock is in meta before the lock goes', async (t) => {
    const w = await LockProbe.opened(t, fa('data'))
    const r = await LockProbe.opened(t, fb('data'))
    t.equal(await w.send('lock f setlk w 0 0'), 'ok')
    t.equal(await w.send('write f written-under-lock'), 'ok')
    const waiting = r.send('lock f setlkw w 0 0')
    t.equal(await w.send('lock f setlk u 0 0'), 'ok', 'unlock without closing')
    t.equal(await within(waiting, 5000, 'pending'), 'ok', 'B gets the lock')
    t.equal(await readFile(fb('data'), 'utf8'), 'written-under-lock', 'and a fresh open on B reads what A wrote')
  })

  await t.test('a descriptor opened before the write reads it once its process took the lock (revalidated at lock time)', async (t) => {
    const w = await LockProbe.opened(t, fa('coherent'))
    t.equal(await w.send('write f version-one'), 'ok')
    t.equal(await w.send('close f'), 'ok')
    const r = await LockProbe.opened(t, fb('coherent')) // B opens and keeps the file open
    t.equal(await r.send('lock f setlk r 0 0'), 'ok')
    t.equal(await r.send('read f'), 'data version-one', 'B reads the first version')
    t.equal(await r.send('lock f setlk u 0 0'), 'ok')
    t.equal(await w.send(`open f ${fa('coherent')} rw`), 'ok')
    t.equal(await w.send('lock f setlk w 0 0'), 'ok')
    t.equal(await w.send('write f version-two, longer'), 'ok')
    t.equal(await w.send('lock f setlk u 0 0'), 'ok', 'A unlocks, its file still open')
    t.equal(await r.send('lock f setlkw r 0 0'), 'ok', 'B locks again')
    t.equal(await r.send('read f'), 'data version-two, longer', 'through its old descriptor B reads what A wrote under the lock, longer file included')
  })

  await t.test('a mount killed with SIGKILL: its locks go when its session expires', async (t) => {
    const holder = await LockProbe.opened(t, fa('crash'))
    t.equal(await holder.send('lock f setlk w 0 0'), 'ok')
    const other = await LockProbe.opened(t, fb('crash'))
    t.equal(await other.send('lock f setlk w 0 0'), 'err EAGAIN')
    const start = Date.now()
    void a.client.kill()
    holder.kill()
    t.equal(await within(other.send('lock f setlkw w 0 0'), 30_000, 'pending'), 'ok', 'B gets it after A\'s session expired')
    t.comment(`granted ${Date.now() - start} ms after the kill (session TTL 4 s)`)
  })
})
