/**
 * One meta replica of a replicated cluster (docs/meta.md#replication).
 *
 *            start: catch up from the log
 *                      │
 *                      ▼
 *   ┌──────────► follower ── lease free: tryAcquire ──► candidate
 *   │              ▲  │ apply each new entry             │ catch up to the log's end,
 *   │              │  └──────────────────┘               │ append a marker fenced on it
 *   │              │                                     ▼
 *   │              └── lost lease / refused append ── leader: serves requests;
 *   │                  (refuse writes, stop serving,     every group commit is
 *   │                   release, catch up)               appended (fenced) before COMMIT
 *   └─ stop ───────────────────────────────────────────────┘
 *
 * Only the leader serves `<cluster>.meta.*` (reads too, so every answer is as
 * fresh as the last acknowledged mutation) and runs maintenance. A follower
 * writes nothing but the entries it applies. All transitions and ticks run on
 * one promise chain, so they never interleave.
 */
import { ErrorCode } from 'nats'
import { NoReply } from '../common/wire'
import type { Logger } from '../common/log'
import type { Lease } from './lease'
import { appliedSeq, applyEntries, setApplied } from './log/apply'
import type { SnapshotStore } from './log/snapshot'
import { entriesOf, type LogEntry, type MetaLog } from './log/stream'
import type { Database, Write } from './sqlite'

export type Role = 'follower' | 'leader' | 'stopped'

export interface ReplicaDeps {
  db: Database
  log: MetaLog
  lease: Lease
  metaId: string
  logger: Logger
  /** Start serving (called as leader, the commit hook already set). */
  lead(): Promise<void>
  /** Stop serving; resolves when no request is in flight. */
  follow(): Promise<void>
  /** This replica cannot go on (its state may differ from the log): exit. */
  fatal(why: string, err?: unknown): void
  /** Snapshots (docs/meta.md#snapshots); absent: the log is never trimmed. */
  snapshots?: {
    store: SnapshotStore
    /** This replica's database file (a snapshot copies it). */
    dbFile: string
    /** A leader snapshots after this many entries since the last snapshot... */
    everyEntries: number
    /** ...or this long after the last one when anything was appended since. */
    everyMs: number
    /** Entries kept in the log behind a snapshot, so a follower a little behind needs no snapshot. */
    keepEntries: number
    /**
     * The lowest sequence a running follower reported applied (null: none
     * heard). The trim keeps the entries after it, up to FOLLOWER_KEEP_MAX.
     */
    followerApplied?: () => number | null
  }
}

/** A follower's commit hook: a write that is not a log entry is never committed, and never answered. */
async function refuseWrites(): Promise<void> {
  throw new NoReply('not the leader')
}

const TICK_MS = 200
const CATCH_UP_BATCH = 64
const SNAPSHOT_RETRY_MS = 30_000
/**
 * Most entries a trim keeps for a running follower beyond `keepEntries`. A
 * follower trimmed past exits and restarts from the snapshot; with only
 * `keepEntries` kept, one a few entries behind while the leader stored a
 * snapshot (a replica just restored, or paused for a moment under load while
 * writes poured in) did so (test/meta-snapshot, with 5 kept). One so far
 * behind that it would keep more than this is left to that path: the log
 * must not grow without bound for a replica that cannot keep up.
 */
const FOLLOWER_KEEP_MAX = 100_000

export class Replica {
  role: Role = 'follower'
  /** Last log sequence applied to this replica's SQLite. */
  applied = 0
  lastLogSeq = 0
  private chain: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined
  private lastRenew = 0
  /** Sequence of the stored snapshot (leader only); -1: not known yet. */
  private snapSeq = -1
  private snapAt = performance.now()
  private snapping: Promise<void> | null = null
  private snapFailedAt = -Infinity

  /** The stored snapshot's log sequence as this replica last knew it (null: none or not known). */
  get snapshotSeq(): number | null {
    return this.snapSeq > 0 ? this.snapSeq : null
  }

  constructor(private readonly d: ReplicaDeps) {}

  async start(): Promise<void> {
    // a follower writes nothing but the log's entries: any other write (a request that reached
    // this replica while it stopped serving, a late background job) is refused, never committed
    this.d.db.setCommitHook(refuseWrites)
    this.applied = await appliedSeq(this.d.db)
    await this.serial(() => this.catchUp())
    this.timer = setInterval(() => void this.serial(() => this.tick()), TICK_MS)
  }

  /** Clean stop: a leader stops serving and frees the lease so a follower takes over at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.snapping
    await this.serial(async () => {
      if (this.role === 'leader') await this.stepDownNow('stopping')
      this.role = 'stopped'
    })
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const p = this.chain.then(fn).catch((err: unknown) => {
      // the log unanswered (its stream electing a leader after a server died):
      // one line, not a stack per 1 s try (meta/log/stream.ts API_TIMEOUT_MS)
      if ((err as { code?: string }).code === ErrorCode.Timeout) this.d.logger.warn('replica step: the log did not answer (JetStream electing a stream leader?); trying again')
      else this.d.logger.warn('replica step failed', err)
    })
    this.chain = p
    return p
  }

  private async tick(): Promise<void> {
    if (this.role === 'stopped') return
    if (this.role === 'leader') {
      if (performance.now() - this.lastRenew >= this.d.lease.ttlMs / 4) {
        this.lastRenew = performance.now()
        if (!(await this.d.lease.renew())) await this.stepDownNow('lease lost')
      } else if (!this.d.lease.held()) await this.stepDownNow('lease expired')
      this.maybeSnapshot()
      return
    }
    await this.catchUp()
    if (await this.d.lease.holder()) return
    if (!(await this.d.lease.tryAcquire())) return
    await this.takeOver()
  }

  /** Applies every entry after `applied`. */
  private async catchUp(): Promise<void> {
    const { first, last } = await this.d.log.bounds()
    this.lastLogSeq = last
    if (last > this.applied && first > this.applied + 1) {
      // trimmed past us while we were behind: a restart starts from the snapshot (meta/main.ts)
      this.d.fatal(`the log starts at ${first} but this replica has applied only ${this.applied}: restarting from the snapshot (docs/meta.md#snapshots)`)
      return
    }
    // read in batches (one pull each), applied a batch per transaction: a follower
    // keeps up with a leader that appends one entry per group commit
    while (this.applied < last) {
      const from = this.applied + 1
      const entries = await this.d.log.readRange(from, Math.min(last, this.applied + CATCH_UP_BATCH))
      await applyEntries(this.d.db, from, entries)
      this.applied = from + entries.length - 1
    }
  }

  private async takeOver(): Promise<void> {
    const started = performance.now()
    this.lastRenew = started
    // fence: our marker lands only right after the last entry we applied; if
    // someone appended meanwhile (a deposed leader's last group), catch up again
    for (let attempt = 0; this.d.lease.held(); attempt++) {
      await this.catchUp()
      try {
        const seq = await this.d.log.append(await this.marker(), this.applied)
        await this.d.db.write((tx) => setApplied(tx, seq), { replay: true })
        this.applied = seq
        break
      } catch (err) {
        this.d.logger.info(`leadership marker refused (attempt ${attempt + 1}): ${(err as Error).message}`)
      }
    }
    if (!this.d.lease.held()) {
      this.d.logger.warn('lease expired while catching up; staying a follower')
      return
    }
    this.d.log.dropCursor()
    this.d.db.setCommitHook((tx, writes) => this.append(tx, writes), (err) => this.d.fatal('COMMIT failed after its writes were appended to the log', err))
    this.role = 'leader'
    this.d.logger.info(`leading from log sequence ${this.applied} (took ${Math.round(performance.now() - started)} ms to catch up and fence)`)
    await this.d.lead()
  }

  /**
   * A leader stores a snapshot every `everyEntries` entries (or `everyMs`
   * after the last one), then trims the log behind it, keeping `keepEntries`.
   * It runs beside serving: the copy is one read transaction of its own. A
   * leader deposed meanwhile still trims correctly: every entry up to the
   * snapshot's sequence is in the log for good.
   */
  private maybeSnapshot(): void {
    const snap = this.d.snapshots
    if (!snap || this.snapping || this.role !== 'leader' || performance.now() - this.snapFailedAt < SNAPSHOT_RETRY_MS) return
    const due = this.snapSeq >= 0 && (this.applied - this.snapSeq >= snap.everyEntries || (this.applied > this.snapSeq && performance.now() - this.snapAt >= snap.everyMs))
    if (this.snapSeq >= 0 && !due) return
    this.snapping = (async () => {
      if (this.snapSeq < 0) {
        this.snapSeq = (await snap.store.latest())?.seq ?? 0
        return
      }
      const started = performance.now()
      const taken = await snap.store.take(snap.dbFile, `${snap.dbFile}.snapshot-out`)
      this.snapSeq = taken.seq
      this.snapAt = performance.now()
      const below = trimPoint(taken.seq, snap.keepEntries, snap.followerApplied?.() ?? null)
      const { first } = await this.d.log.bounds()
      if (below > first) await this.d.log.trimBelow(below)
      this.d.logger.info(`snapshot at log sequence ${taken.seq} (${taken.bytes} bytes, ${Math.round(performance.now() - started)} ms); log trimmed below ${Math.max(first, below)}`)
    })()
      .catch((err: unknown) => {
        this.snapFailedAt = performance.now()
        this.d.logger.warn('snapshot failed (the log is kept; next try in 30 s)', err)
      })
      .finally(() => {
        this.snapping = null
      })
  }

  /**
   * The first leader of a fresh log also sends its root inode's times: they
   * were set by each replica's own clock when its database was created.
   */
  private async marker(): Promise<LogEntry> {
    const entry: LogEntry = { by: this.d.metaId, ops: [], lead: true }
    if (this.applied === 0) {
      const r = await this.d.db.read.get<{ a: number; an: number; m: number; mn: number; c: number; cn: number }>(
        'SELECT atime_s AS a, atime_ns AS an, mtime_s AS m, mtime_ns AS mn, ctime_s AS c, ctime_ns AS cn FROM inodes WHERE ino = 1',
      )
      if (r) entry.ops.push([['run', 'UPDATE inodes SET atime_s = ?, atime_ns = ?, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = 1', [r.a, r.an, r.m, r.mn, r.c, r.cn]]])
    }
    return entry
  }

  /** The commit hook while leading: a group is acknowledged only once it is in the log. */
  private async append(tx: Parameters<typeof setApplied>[0], writes: Write[][]): Promise<void> {
    if (this.role !== 'leader' || !this.d.lease.held()) {
      void this.serial(() => this.stepDownNow('lease expired'))
      throw new NoReply('not the leader')
    }
    let seq = this.applied
    try {
      for (const e of entriesOf(this.d.metaId, writes)) seq = await this.d.log.append(e, seq)
    } catch (err) {
      // refused (someone else appended: we are deposed) or unknown (timeout):
      // either way this group's fate is decided by the log, which we re-read
      this.d.logger.warn(`append after ${seq} failed; stepping down: ${(err as Error).message}`)
      void this.serial(() => this.stepDownNow('append failed'))
      throw new NoReply('append failed')
    }
    await setApplied(tx, seq)
    this.applied = seq
    this.lastLogSeq = seq
  }

  private async stepDownNow(why: string): Promise<void> {
    if (this.role !== 'leader') return
    this.d.logger.warn(`stepping down: ${why}`)
    this.role = 'follower'
    // refuse every write still queued, then stop serving (bounded: with NATS unreachable the
    // subscription's drain cannot finish, and requests may still arrive on it when the link
    // returns: they too meet refuseWrites), then apply the log again
    this.d.db.setCommitHook(refuseWrites)
    await this.d.follow()
    await this.d.lease.release()
    this.applied = await appliedSeq(this.d.db)
  }
}

/**
 * Where a trim after a snapshot at `snapSeq` may cut: `keep` entries behind
 * it, and no further than the entry after `followerApplied` unless that
 * would keep more than FOLLOWER_KEEP_MAX entries.
 */
export function trimPoint(snapSeq: number, keep: number, followerApplied: number | null): number {
  const below = snapSeq + 1 - keep
  if (followerApplied === null || followerApplied + 1 >= below) return below
  return Math.max(followerApplied + 1, below - FOLLOWER_KEEP_MAX)
}
