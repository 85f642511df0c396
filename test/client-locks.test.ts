/**
 * The mount's side of locks (client/locks.ts) over a scripted meta (pure
 * logic: what is asked of meta, and when): a release heard while a refusal
 * was on its way makes the waiter ask again at once; an interrupt ends a
 * wait with EINTR; closes that hold nothing ask nothing; an old meta's ENOSYS
 * becomes ENOLCK; an unlock commits the file first.
 */
import t from 'tap'
import { fsError } from '../common/errors'
import type { MetaOp, MetaReplies } from '../common/protocol'
import { LOCK_EOF } from '../common/protocol'
import { MountLocks, RETRY_MS, type LockRequest } from '../client/locks'
import type { MetaApi } from '../client/stores'

type Sent = { op: MetaOp; body: Record<string, unknown> }

/** A meta whose `lock` answers come from `answer` (called with each request, in order). */
function scripted(answer: (body: Record<string, unknown>, n: number) => Promise<boolean> | boolean): { meta: MetaApi; sent: Sent[] } {
  const sent: Sent[] = []
  const meta: MetaApi = {
    async call<Op extends MetaOp>(op: Op, body: object): Promise<MetaReplies[Op]> {
      sent.push({ op, body: body as Record<string, unknown> })
      if (op === 'getlk') return { conflict: null } as MetaReplies[Op]
      const granted = await answer(body as Record<string, unknown>, sent.length)
      return { granted } as MetaReplies[Op]
    },
  }
  return { meta, sent }
}

const req = (over: Partial<LockRequest> = {}): LockRequest => ({ ino: 5, fh: 1, kind: 'posix', owner: 'a', type: 'w', start: 0, end: LOCK_EOF, pid: 9, wait: false, ...over })

t.test('a refused request that does not wait: EAGAIN; a waiting one asks again when a release is heard', async (t) => {
  let holder = true
  const { meta, sent } = scripted(() => !holder)
  const locks = new MountLocks(meta, 's', async () => undefined)
  await t.rejects(locks.set(req()), { code: 'EAGAIN' })
  const started = Date.now()
  const waiting = locks.set(req({ wait: true }))
  await new Promise((r) => setTimeout(r, 20))
  holder = false
  locks.wake([5])
  await waiting
  t.ok(Date.now() - started < RETRY_MS, `granted on the release, not the retry timer (${Date.now() - started} ms)`)
  t.equal(sent.length, 3)
})

t.test('a release heard while the refusal was on its way: the waiter asks again at once', async (t) => {
  let locks!: MountLocks
  const { meta, sent } = scripted((_b, n) => {
    if (n === 1) {
      locks.wake([5]) // the holder let go after meta refused, before the refusal arrived
      return false
    }
    return true
  })
  locks = new MountLocks(meta, 's', async () => undefined)
  const started = Date.now()
  await locks.set(req({ wait: true }))
  t.equal(sent.length, 2)
  t.ok(Date.now() - started < RETRY_MS / 2, `asked again at once (${Date.now() - started} ms)`)
})

t.test('with no release heard, a waiter asks again every RETRY_MS (a lost invalidation)', async (t) => {
  const { meta, sent } = scripted((_b, n) => n >= 2)
  const locks = new MountLocks(meta, 's', async () => undefined)
  const started = Date.now()
  await locks.set(req({ wait: true }))
  t.equal(sent.length, 2)
  t.ok(Date.now() - started >= RETRY_MS - 20, 'after the retry timer')
})

t.test('an interrupt ends the wait with EINTR', async (t) => {
  const { meta } = scripted(() => false)
  const locks = new MountLocks(meta, 's', async () => undefined)
  const ctl = new AbortController()
  const waiting = locks.set(req({ wait: true }), ctl.signal)
  setTimeout(() => ctl.abort(), 30)
  await t.rejects(waiting, { code: 'EINTR' })
})

t.test('closes and releases ask meta only for owners that locked here', async (t) => {
  const { meta, sent } = scripted(() => true)
  const committed: number[] = []
  const locks = new MountLocks(meta, 's', async (ino) => void committed.push(ino))
  await locks.closed(5, 'a')
  await locks.released(5, 1, '')
  t.equal(sent.length, 0, 'nothing held: no request')

  await locks.set(req({ owner: 'p', fh: 1 })) // a process's lock through handle 1
  await locks.set(req({ owner: 'o', fh: 2 })) // an OFD lock through handle 2
  await locks.set(req({ kind: 'flock', owner: 'f', fh: 3, type: 'r' }))
  await locks.closed(5, 'p')
  t.same(sent.at(-1)!.body, { session: 's', ino: 5, kind: 'posix', owner: 'p', type: 'u', start: 0, end: LOCK_EOF, pid: 0 }, 'the process\'s close unlocks it all')
  t.ok(committed.length === 0, 'a lock taken commits nothing')
  const n = sent.length
  await locks.released(5, 1, '')
  t.equal(sent.length, n, 'handle 1 released: its process already let go at close')
  await locks.released(5, 2, '')
  t.equal(sent.at(-1)!.body.owner, 'o', 'handle 2 released: the OFD lock goes')
  await locks.released(5, 3, 'f')
  t.same([sent.at(-1)!.body.kind, sent.at(-1)!.body.owner], ['flock', 'f'], 'the flock lock goes with its handle')
  t.same(locks.lockedInodes, [], 'nothing left')
})

t.test('an unlock or downgrade commits the file first; a lock on a file held by nobody here does not', async (t) => {
  const { meta, sent } = scripted(() => true)
  const committed: number[] = []
  const locks = new MountLocks(meta, 's', async (ino) => void committed.push(ino))
  await locks.set(req({ type: 'u' }))
  t.same(committed, [], 'unlock of nothing')
  t.equal(sent.length, 0, 'and no request: meta holds nothing of an owner this mount recorded nothing for')
  await locks.set(req())
  await locks.set(req({ type: 'r' }))
  await locks.set(req({ type: 'u' }))
  t.same(committed, [5, 5], 'downgrade and unlock committed')
})

t.test('a meta without the lock table: ENOLCK; bad ranges: EINVAL before asking', async (t) => {
  const meta: MetaApi = {
    call: async () => {
      throw fsError('ENOSYS', 'unknown operation lock')
    },
  }
  const locks = new MountLocks(meta, 's', async () => undefined)
  await t.rejects(locks.set(req()), { code: 'ENOLCK' })
  await t.rejects(locks.test(5, 'a', 'w', 0, LOCK_EOF), { code: 'ENOLCK' })
  await t.rejects(locks.set(req({ start: 2 ** 60 })), { code: 'EINVAL' })
})

t.test('a lock request right behind a RELEASE waits for the released handle\'s unlock', async (t) => {
  const { meta, sent } = scripted((b) => b.owner !== 'q' || sent.some((s) => s.body.owner === 'o' && s.body.type === 'u'))
  const locks = new MountLocks(meta, 's', async () => undefined)
  await locks.set(req({ owner: 'o', fh: 2 })) // an OFD lock through handle 2
  let commit!: () => void
  const committed = new Promise<void>((r) => (commit = r))
  const unlocked = locks.released(5, 2, '', committed) // the handle's commit still running
  const asked = locks.set(req({ owner: 'q', fh: 3 })) // another process, right behind
  await new Promise((r) => setTimeout(r, 20))
  t.equal(sent.length, 1, 'nothing asked while the release is pending')
  commit()
  await unlocked
  await asked
  t.same(sent.slice(1).map((s) => [s.body.owner, s.body.type]), [['o', 'u'], ['q', 'w']], 'the unlock went first, then the lock was granted')
})
