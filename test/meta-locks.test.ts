/**
 * meta's lock table (meta/locks.ts) through a real `berth meta`: grants and
 * refusals, what is published for waiters (`Invalidation.locks`), bad
 * requests, a retried request, and the end, expiry and restore of a session.
 */
import t from 'tap'
import { LOCK_EOF as EOF, ROOT_INO, type Invalidation } from '../common/protocol'
import { decode, request, subjects } from '../common/wire'
import { startCluster } from './helpers/cluster'

const REG = 0o100000
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

t.test('lock table', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m = await c.metaClient()
  const nc = await c.connect('client')
  const heard: Invalidation[] = []
  const sub = nc.subscribe(subjects(c.cluster).inval, { callback: (_e, msg) => heard.push(decode(msg.data) as Invalidation) })
  t.teardown(() => sub.unsubscribe())
  /** Inodes named in `locks` by invalidations from now until `fn` settled (and a moment after). */
  const lockNotes = async (fn: () => Promise<unknown>): Promise<number[]> => {
    await nc.flush()
    const from = heard.length
    await fn()
    await sleep(100)
    return heard.slice(from).flatMap((i) => i.locks ?? [])
  }
  let n = 0
  const file = async () => (await m.call('mknod', { parent: ROOT_INO, name: `f${n++}`, mode: REG | 0o644, uid: 0, gid: 0 })).attr.ino
  const lock = (session: string, ino: number, owner: string, type: 'r' | 'w' | 'u', start = 0, end = EOF, kind: 'posix' | 'flock' = 'posix') =>
    m.call('lock', { session, ino, kind, owner, type, start, end, pid: 42 }).then((r) => r.granted)

  await m.call('session', { session: 'A', ttlMs: 60_000 })
  await m.call('session', { session: 'B', ttlMs: 60_000 })

  t.test('grants, refusals and what waiters hear', async (t) => {
    const ino = await file()
    t.equal(await lock('A', ino, 'a1', 'w', 0, 99), true, 'A writes 0-99')
    t.equal(await lock('B', ino, 'a1', 'r', 50, 50), false, 'the same owner id on another session is another owner')
    t.same((await m.call('getlk', { session: 'B', ino, owner: 'a1', type: 'r', start: 0, end: EOF })).conflict, { type: 'w', start: 0, end: 99, pid: 42, session: 'A' })
    t.same(await lockNotes(() => lock('A', ino, 'a1', 'w', 0, 199)), [], 'growing a lock releases nothing')
    t.same(await lockNotes(() => lock('A', ino, 'a1', 'r', 0, 199)), [ino], 'a downgrade is heard')
    t.equal(await lock('B', ino, 'b1', 'r', 0, EOF), true, 'readers share')
    t.same(await lockNotes(() => lock('A', ino, 'a1', 'u', 100, 149)), [ino], 'an unlock is heard')
    t.same(await lockNotes(() => lock('A', ino, 'ff', 'u')), [], 'an unlock of nothing writes and publishes nothing')
    t.same((await m.call('getlk', { session: 'A', ino, owner: 'a1', type: 'w', start: 0, end: EOF })).conflict?.session, 'B', 'B\'s read lock is in A\'s way')
  })

  t.test('a flock conversion that is refused drops the old lock, as on Linux', async (t) => {
    const ino = await file()
    t.equal(await lock('A', ino, 'f1', 'r', 0, EOF, 'flock'), true)
    t.equal(await lock('B', ino, 'f2', 'r', 0, EOF, 'flock'), true)
    t.same(await lockNotes(async () => t.equal(await lock('A', ino, 'f1', 'w', 0, EOF, 'flock'), false, 'upgrade refused')), [ino], 'its shared lock went')
    t.equal(await lock('B', ino, 'f2', 'w', 0, EOF, 'flock'), true, 'so B can upgrade')
    t.equal(await lock('A', ino, 'b1', 'w', 0, EOF), true, 'POSIX locks do not see flock locks')
  })

  t.test('bad requests change nothing', async (t) => {
    const ino = await file()
    await t.rejects(lock('A', ino, 'a1', 'w', 10, 9), { code: 'EINVAL' }, 'end before start')
    await t.rejects(lock('A', ino, 'a1', 'w', 1, EOF, 'flock'), { code: 'EINVAL' }, 'a flock lock is the whole file')
    await t.rejects(lock('A', ino, 'not-hex', 'w'), { code: 'EBADMSG' }, 'owner must be hex')
    await t.rejects(lock('A', ino, 'a1', 'w', 0, EOF + 1), { code: 'EBADMSG' }, 'offset past 2^53 - 1')
    await t.rejects(lock('A', 999_999_999, 'a1', 'w'), { code: 'ENOENT' }, 'no such inode')
    t.equal((await m.call('getlk', { session: 'B', ino, owner: 'bb', type: 'w', start: 0, end: EOF })).conflict, null, 'nothing was locked')
  })

  t.test('a retried request is answered as the first time', async (t) => {
    const ino = await file()
    const body = { rid: 'lockretry.1.1', session: 'A', ino, kind: 'posix' as const, owner: 'c1', type: 'w' as const, start: 0, end: EOF, pid: 1 }
    const send = () => request<{ granted: boolean }>(nc, subjects(c.cluster).meta('lock'), body, { timeoutMs: 3000, deadlineMs: 30_000 })
    t.equal((await send()).granted, true)
    t.equal(await lock('A', ino, 'c1', 'u'), true, 'unlocked meanwhile')
    t.equal(await lock('B', ino, 'c2', 'w'), true, 'and taken by B')
    t.equal((await send()).granted, true, 'the retry gets the remembered answer')
    t.equal(await lock('B', ino, 'c2', 'w'), true, 'and did not take the lock from B again')
  })

  t.test('a session that ends, expires or is restored holds no locks', async (t) => {
    const ino = await file()
    await m.call('session', { session: 'E', ttlMs: 60_000 })
    t.equal(await lock('E', ino, 'e1', 'w'), true)
    t.same(await lockNotes(() => m.call('sessionEnd', { session: 'E' })), [ino], 'session end: waiters hear it')
    t.equal(await lock('B', ino, 'e9', 'w'), true, 'free')
    t.equal(await lock('B', ino, 'e9', 'u'), true)

    await m.call('session', { session: 'R', ttlMs: 60_000 })
    t.equal(await lock('R', ino, 'd1', 'w'), true)
    await m.call('sessionRestore', { session: 'R', ttlMs: 60_000, open: [] })
    t.equal(await lock('B', ino, 'e9', 'w'), true, 'a restored session lost its locks')
    t.equal(await lock('B', ino, 'e9', 'u'), true)

    await m.call('session', { session: 'X', ttlMs: 1000 })
    t.equal(await lock('X', ino, 'e1', 'w'), true)
    const until = Date.now() + 15_000
    let free = false
    while (!free && Date.now() < until) {
      await sleep(200)
      free = await lock('B', ino, 'e8', 'w')
    }
    t.ok(free, 'an expired session\'s lock went')
  })
})
