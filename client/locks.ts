/**
 * fcntl, OFD and flock(2) locks of one mount, kept in meta's lock table so
 * they hold across every mount of the cluster (meta/locks.ts,
 * docs/semantics.md#locks).
 *
 * Meta grants or refuses at once. A blocking request (F_SETLKW, flock without
 * LOCK_NB) that was refused waits here until meta says a lock on the inode was
 * released or downgraded (`Invalidation.locks`, or this mount's own unlock),
 * or RETRY_MS passed (an invalidation lost with a meta that died), and asks
 * again; a signal to the waiting process (FUSE_INTERRUPT) ends the wait with
 * EINTR.
 *
 * When locks go (the kernel tells a FUSE filesystem, it keeps none itself):
 * - POSIX locks of a process: at any close(2) of the file by that process
 *   (FLUSH carries its owner id), as POSIX says.
 * - OFD locks (owner: the open file description) and flock locks: when the
 *   description's last reference goes (RELEASE). The handle they were taken
 *   through is recorded; a process lock taken through it was already dropped
 *   at the process's close, which always comes first.
 * - Everything of the mount: when its session ends or expires (meta).
 *
 *   unlocked --setlk/flock granted--> held --unlock / close (flush) / release--> unlocked
 *   unlocked --blocking request refused--> waiting --released on the inode, or RETRY_MS--> asks again
 *                                          waiting --signal (interrupt)--> EINTR
 *
 * Data written under a lock is committed before the lock goes: an unlock, a
 * downgrade or the close that drops a lock commits the file first, so the
 * next owner's open reads it (close-to-open, docs/semantics.md#locks).
 */
import { BerthError, fsError } from '../common/errors'
import { logger } from '../common/log'
import { LOCK_EOF, type MetaReplies, type MetaRequest } from '../common/protocol'
import type { MetaApi } from './stores'

const log = logger('client')

/** How often a refused blocking request asks again if no release is heard. */
export const RETRY_MS = 500

export type LockKind = 'posix' | 'flock'
export type LockType = 'r' | 'w' | 'u'

export interface LockRequest {
  ino: number
  /** The handle it came through (OFD and flock locks go when it is released). */
  fh: number
  kind: LockKind
  /** The kernel's lock owner id (hex): a process (POSIX) or an open file description (OFD, flock). */
  owner: string
  type: LockType
  start: number
  end: number
  pid: number
  /** F_SETLKW or flock without LOCK_NB. */
  wait: boolean
}

export interface Conflict {
  type: 'r' | 'w'
  start: number
  end: number
  /** The holder's pid on this mount; 0 for a holder on another mount. */
  pid: number
}

interface Held {
  kind: LockKind
  owner: string
  /** Handles the owner locked through since it last let go of everything. */
  fhs: Set<number>
}

export class MountLocks {
  /** ino -> "kind owner" -> what this mount's owners hold there (so closes without locks cost nothing). */
  private readonly held = new Map<number, Map<string, Held>>()
  /** ino -> wake-ups of refused blocking requests. */
  private readonly waiters = new Map<number, Set<() => void>>()
  /** ino -> requests asking meta now, and the releases heard meanwhile (one heard during a refusal means ask again at once). */
  private readonly asking = new Map<number, { requests: number; releases: number }>()
  /** ino -> unlocks of released handles still on their way (later lock requests wait for them). */
  private readonly unlocking = new Map<number, Promise<void>>()

  constructor(
    private readonly meta: MetaApi,
    private readonly session: string,
    /** Commits what the mount holds unwritten of the inode (before a lock that covered it goes). */
    private readonly commit: (ino: number) => Promise<void>,
  ) {}

  /**
   * Sets or clears a lock; a blocking request waits for it. EAGAIN when
   * refused and not waiting, EINTR when `signal` fires while waiting. A
   * granted lock resolves with meta's content generation and size of the
   * inode (the caller revalidates what it holds open: Vfs.lockGranted).
   */
  async set(req: LockRequest, signal?: AbortSignal): Promise<{ gen: number; size: number } | undefined> {
    checkRange(req.start, req.end)
    await this.unlocking.get(req.ino)
    const key = `${req.kind} ${req.owner}`
    // an unlock by an owner that holds nothing here: meta holds nothing of it
    // either (every grant is recorded), so no trip (programs unlock defensively)
    if (req.type === 'u' && !this.held.get(req.ino)?.has(key)) return undefined
    if (req.type === 'u' || req.type === 'r') {
      // an unlock or a downgrade may hand the range to someone else: what
      // was written under the lock goes to meta first
      if (this.held.get(req.ino)?.has(key)) await this.commit(req.ino)
    }
    let a = this.asking.get(req.ino)
    if (!a) this.asking.set(req.ino, (a = { requests: 0, releases: 0 }))
    a.requests++
    try {
      for (;;) {
        const heard = a.releases
        const { granted, gen, size } = await this.ask(req)
        if (granted) {
          this.record(req, key)
          return gen !== undefined && size !== undefined ? { gen, size } : undefined
        }
        if (req.kind === 'flock') this.forget(req.ino, key) // a refused conversion dropped the old lock (meta/locks.ts)
        if (!req.wait) throw fsError('EAGAIN', `inode ${req.ino} is locked by another owner`)
        if (a.releases === heard) await this.sleep(req.ino, signal)
        if (signal?.aborted) throw fsError('EINTR', 'lock wait interrupted')
      }
    } finally {
      if (--a.requests === 0) this.asking.delete(req.ino)
    }
  }

  /** F_GETLK: the first lock of another owner in the way, or null. */
  async test(ino: number, owner: string, type: 'r' | 'w', start: number, end: number): Promise<Conflict | null> {
    checkRange(start, end)
    await this.unlocking.get(ino)
    const { conflict } = await this.call('getlk', { session: this.session, ino, owner, type, start, end })
    if (!conflict) return null
    return { type: conflict.type, start: conflict.start, end: conflict.end, pid: conflict.session === this.session ? conflict.pid : 0 }
  }

  /** close(2) by `owner`: its POSIX locks on `ino` go (after the file's commit, which the caller did). */
  async closed(ino: number, owner: string): Promise<void> {
    const key = `posix ${owner}`
    if (!this.held.get(ino)?.has(key)) return
    await this.unlockAll(ino, 'posix', owner)
  }

  /**
   * The handle's last reference went: OFD and flock locks taken through it
   * go, and `flockOwner`'s flock lock (the kernel names it when the handle
   * took one), once `committed` (the handle's own commit) settled. Call it
   * as the RELEASE arrives: the kernel sends RELEASE after close(2) returned,
   * so another process's lock request may come right behind it, and it
   * waits for what is registered here.
   */
  released(ino: number, fh: number, flockOwner: string, committed?: Promise<unknown>): Promise<void> {
    const byKey = this.held.get(ino)
    if (!byKey) return Promise.resolve()
    const gone: Held[] = []
    for (const h of byKey.values()) if (h.fhs.has(fh) || (h.kind === 'flock' && h.owner === flockOwner)) gone.push(h)
    if (gone.length === 0) return Promise.resolve()
    const before = Promise.all([this.unlocking.get(ino), committed?.catch(() => undefined)])
    const done: Promise<void> = before
      .then(async () => {
        for (const h of gone) await this.unlockAll(ino, h.kind, h.owner)
      })
      .catch((err: unknown) => log.warn(`locks of inode ${ino} not released at close (its session's end will): ${(err as Error).message}`))
      .finally(() => {
        if (this.unlocking.get(ino) === done) this.unlocking.delete(ino)
      })
    this.unlocking.set(ino, done)
    return done
  }

  /** Meta says locks on these inodes were released or downgraded: blocked requests ask again. */
  wake(inos: Iterable<number>): void {
    for (const ino of inos) {
      const a = this.asking.get(ino)
      if (a) a.releases++
      const ws = this.waiters.get(ino)
      if (!ws) continue
      this.waiters.delete(ino)
      for (const w of ws) w()
    }
  }

  /**
   * The session lapsed and meta dropped its locks (client/session-lease.ts):
   * what this mount thought it held is gone; the processes are not told (as
   * with NFS's lost locks), the mount's log says which inodes.
   */
  forgetAll(): void {
    if (this.held.size === 0) return
    log.error(`this mount's session lapsed: its locks on inodes ${[...this.held.keys()].slice(0, 20).join(', ')} were released by meta`)
    this.held.clear()
  }

  /** Inodes with locks held here (tests, status). */
  get lockedInodes(): number[] {
    return [...this.held.keys()]
  }

  private async unlockAll(ino: number, kind: LockKind, owner: string): Promise<void> {
    await this.ask({ ino, fh: -1, kind, owner, type: 'u', start: 0, end: LOCK_EOF, pid: 0, wait: false })
    this.forget(ino, `${kind} ${owner}`)
  }

  private forget(ino: number, key: string): void {
    const byKey = this.held.get(ino)
    byKey?.delete(key)
    if (byKey?.size === 0) this.held.delete(ino)
  }

  private async ask(req: LockRequest): Promise<MetaReplies['lock']> {
    const reply = await this.call('lock', {
      session: this.session,
      ino: req.ino,
      kind: req.kind,
      owner: req.owner,
      type: req.type,
      start: req.start,
      end: req.end,
      pid: req.pid,
    })
    // this mount's own waiters need not wait for meta's invalidation
    if (req.type !== 'w' && reply.granted) this.wake([req.ino])
    return reply
  }

  private async call<Op extends 'lock' | 'getlk'>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>): Promise<MetaReplies[Op]> {
    try {
      return await this.meta.call(op, body)
    } catch (err) {
      // a meta that predates the lock table answers ENOSYS: no locks available
      if (err instanceof BerthError && err.code === 'ENOSYS') throw fsError('ENOLCK', 'meta keeps no lock table (upgrade meta)')
      throw err
    }
  }

  private record(req: LockRequest, key: string): void {
    let byKey = this.held.get(req.ino)
    if (req.type === 'u') {
      // all of it unlocked: closes need not ask meta; part of it: the rest stays recorded
      if (req.kind === 'flock' || (req.start === 0 && req.end === LOCK_EOF)) this.forget(req.ino, key)
      return
    }
    if (!byKey) this.held.set(req.ino, (byKey = new Map()))
    let h = byKey.get(key)
    if (!h) byKey.set(key, (h = { kind: req.kind, owner: req.owner, fhs: new Set() }))
    h.fhs.add(req.fh)
  }

  private sleep(ino: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve()
      let ws = this.waiters.get(ino)
      if (!ws) this.waiters.set(ino, (ws = new Set()))
      const done = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        ws!.delete(done)
        resolve()
      }
      const timer = setTimeout(done, RETRY_MS)
      ws.add(done)
      signal?.addEventListener('abort', done)
    })
  }
}

function checkRange(start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw fsError('EINVAL', `lock range ${start}..${end}: offsets past 2^53 - 1 are not supported`)
  }
}
