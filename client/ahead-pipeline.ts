/**
 * Namespace changes answered before meta has applied them: unlinks, rmdirs
 * of directories this mount emptied (docs/semantics.md#unlink), mkdirs in
 * directories whose listing this mount has whole (docs/semantics.md#mkdir)
 * and a directory's chmod, chown and utimens (docs/semantics.md#setattr).
 *
 * `rm -rf` removes one name per syscall and waits for each; at one meta trip
 * per unlink (about 1 ms here, 0.4 ms of it inside meta) the trip is the whole
 * cost of a delete. When the mount can predict an unlink's outcome (the VFS
 * decides when: client/vfs.ts unlink), the kernel is answered at once and the
 * request goes to meta without the caller waiting: up to `window` are in
 * flight, and meta's group commit applies them together.
 *
 * Order is kept by a barrier: every other request of this mount waits until
 * the unlinks sent before it have settled. So meta applies this mount's
 * operations in the order their syscalls returned, a reply never shows a
 * name this mount already removed, and a request that depends on an unlink
 * (rmdir of the parent, a create of the same name) comes after it.
 *
 * They go to meta in batches (the `ahead` request): one is sent at once
 * when fewer than MAX_REQUESTS requests are out; the ones that come while
 * they are wait and go together in the next request. A busy `rm -rf` or
 * `mkdir -p` thus costs meta one request, one transaction savepoint pair and
 * one reply per batch instead of per name. A meta without `ahead` answers
 * ENOSYS, and the mount then sends them one by one.
 *
 * Two requests may be out at once: meta applies them in the order they
 * arrive (one connection, one write queue). Only a request lost with the
 * connection (a meta that died) and retried after the next one was applied
 * is reordered. The later one's failed changes then go once more, after the
 * earlier one has settled (again()); a change still refused fails as any
 * late failure does (logged, EIO at the directory's fsync, an error at the
 * file's close).
 *
 * States of one change sent ahead:
 *
 *   waiting for a slot --(fewer than `window` taken)--> queued
 *   queued, held --(another change queued behind, a caller waits for the
 *                   queue, or HOLD_MS passed)--> queued
 *   queued --(a request slot is free)--> in a request to meta
 *   in a request --(meta answers, or its deadline passes, and every change
 *                   sent before it has settled)--> settled (`after` runs)
 *
 * The caller's syscall returns when the change is queued (a commit's caller
 * when it settled); at most `window` are queued or in requests.
 */
import type { Attr, DirAttrs, MetaOp, MetaReplies, MetaRequest } from '../common/protocol'
import { MAX_AHEAD } from '../common/protocol'
import { BerthError, fsError, isErrorCode } from '../common/errors'
import { logger } from '../common/log'
import type { MetaApi } from './stores'

const log = logger('client')

/** Requests of changes out at once: one being applied while the next fills. */
const MAX_REQUESTS = 2

/**
 * How long a held change (a create, whose file's close usually follows
 * within a millisecond) may wait in the queue for company. Sent alone, a
 * create and the commit at its close are two requests, two transactions and
 * two invalidations; held, they are one. Other mounts see the new name up to
 * this much later; anything of this mount that waits for the queue
 * (settled(): fsync, fsyncdir, any other meta request) sends it at once.
 */
export const HOLD_MS = 10

type CommitBody = Omit<MetaRequest<'commit'>, 'rid'>

/**
 * What may go ahead: changes whose outcome the mount predicted, and the
 * commit of a small file created ahead (its caller waits for the answer, but
 * not for a trip of its own: it rides behind the create).
 */
export type AheadItem =
  | { op: 'unlink' | 'rmdir'; parent: number; name: string }
  | { op: 'mkdir' | 'mknod'; parent: number; name: string; mode: number; uid: number; gid: number; ino: number; session: string }
  | ({ op: 'commit' } & CommitBody)
  | ({ op: 'setattr' } & Omit<MetaRequest<'setattr'>, 'rid' | 'size'>)
export type AheadOp = AheadItem['op']

/** Namespace changes answer with the changed directories' attributes; a mkdir or mknod, a commit and a setattr, with the inode's. */
export type AheadReply = DirAttrs & { attr?: Attr }

export type AheadOutcome = { ok: true; reply: AheadReply } | { ok: false; error: unknown }

interface Queued {
  /** Order of sending: the barrier waits for changes up to a sequence number. */
  seq: number
  item: AheadItem
  after: (outcome: AheadOutcome) => void
  /** Waits up to HOLD_MS for another change to go with (send's `hold`). */
  hold: boolean
}

export class AheadPipeline implements MetaApi {
  /** Changes not sent yet, in the order their syscalls returned. */
  private readonly queue: Queued[] = []
  /** Requests out (they never reject), each with the first sequence number it carries. */
  private readonly requests = new Map<Promise<void>, number>()
  private nextSeq = 0
  /** Callers of settled(), each waiting for the changes up to `upTo`. */
  private barrier: Array<{ upTo: number; resolve: () => void }> = []
  /** Changes queued or in requests (at most `window`). */
  private taken = 0
  private readonly slotWaiters: Array<() => void> = []
  /** false once meta answered ENOSYS to `ahead` (an older meta). */
  private batches = true
  /** Settles once the last batch sent has handed out its outcomes (never rejects). */
  private handedOut: Promise<void> = Promise.resolve()
  /** Set while the queue holds only held changes: sends them when HOLD_MS has passed. */
  private holdTimer: NodeJS.Timeout | null = null

  constructor(
    private readonly meta: MetaApi,
    readonly window: number,
    private readonly holdMs = HOLD_MS,
  ) {
    if (!(window >= 1)) throw new RangeError(`window must be at least 1, got ${window}`)
  }

  /**
   * MetaApi: waits for the changes sent before this call, then makes it. A
   * small commit (one chunk: a small file's close) joins the queue behind
   * them instead, so a file created ahead and closed at once costs one trip.
   */
  async call<Op extends MetaOp>(op: Op, body: Omit<MetaRequest<Op>, 'rid'>, opts?: { deadlineMs?: number }): Promise<MetaReplies[Op]> {
    if (this.taken && op === 'commit' && this.batches && opts === undefined) {
      const commit = body as unknown as CommitBody
      if (commit.chunks.length <= 1) return (await this.queued({ op: 'commit', ...commit })) as MetaReplies[Op]
    }
    if (this.taken) await this.settled()
    return this.meta.call(op, body, opts)
  }

  /** Sends `item` behind the queue and resolves with its answer (rejects with its error). */
  private queued(item: AheadItem): Promise<AheadReply> {
    return new Promise((resolve, reject) => {
      this.send(item, (outcome) => (outcome.ok ? resolve(outcome.reply) : reject(outcome.error))).catch(reject)
    })
  }

  /**
   * Resolves once every change sent so far has settled (fsync, fsyncdir,
   * unmount); not the ones sent after, so a steady `rm -rf` does not hold
   * another process's request back.
   */
  settled(): Promise<void> {
    const upTo = this.nextSeq - 1
    if (this.oldest() > upTo) return Promise.resolve()
    this.release() // someone waits for the held ones: they go now
    return new Promise((resolve) => this.barrier.push({ upTo, resolve }))
  }

  /** The sequence number of the oldest change not settled (Infinity: none). */
  private oldest(): number {
    let oldest = this.queue[0]?.seq ?? Infinity
    for (const first of this.requests.values()) oldest = Math.min(oldest, first)
    return oldest
  }

  /**
   * Sends `item` and resolves once it is queued (after a slot frees when
   * `window` are taken). `after` hears its outcome; it must not throw (a
   * throw is logged). `hold`: the change may wait up to HOLD_MS for others
   * to go with it (the commit of the file it creates) while nothing else is
   * queued.
   */
  async send(item: AheadItem, after: (outcome: AheadOutcome) => void, opts: { hold?: boolean } = {}): Promise<void> {
    while (this.taken >= this.window) await new Promise<void>((resolve) => this.slotWaiters.push(resolve))
    this.taken++
    this.queue.push({ seq: this.nextSeq++, item, after, hold: opts.hold === true })
    this.pump()
  }

  /** Held changes stop waiting and go with the next request. */
  private release(): void {
    for (const q of this.queue) q.hold = false
    if (this.holdTimer) clearTimeout(this.holdTimer)
    this.holdTimer = null
    this.pump()
  }

  private pump(): void {
    while (this.requests.size < MAX_REQUESTS && this.queue.length) {
      if (this.queue.every((q) => q.hold)) {
        this.holdTimer ??= setTimeout(() => this.release(), this.holdMs).unref()
        return
      }
      const batch = this.queue.splice(0, this.batches ? batchLength(this.queue) : 1)
      const p: Promise<void> = this.apply(batch, this.handedOut)
        .catch((err: unknown) => log.error('handling changes sent ahead failed', err))
        .finally(() => {
          this.requests.delete(p)
          this.taken -= batch.length
          for (const wake of this.slotWaiters.splice(0, batch.length)) wake()
          this.pump()
          const oldest = this.oldest()
          const done = this.barrier.filter((w) => w.upTo < oldest)
          this.barrier = this.barrier.filter((w) => w.upTo >= oldest)
          for (const w of done) w.resolve()
        })
      this.requests.set(p, batch[0]!.seq)
      this.handedOut = p
    }
  }

  /**
   * One request for `batch`, and each change's outcome to its `after` once
   * the batch sent before it has handed out its own (`before`). Meta applies
   * two requests in the order they were sent, but their replies may reach
   * here in either order (a batch and a lone change resolve through different
   * numbers of promise steps): a directory's chown answered after its chmod
   * put the chown's older attributes over the chmod's.
   */
  private async apply(batch: Queued[], before: Promise<void>): Promise<void> {
    let earlierDone = false
    void before.then(() => (earlierDone = true))
    const outcomes = await this.outcomes(batch)
    const answeredFirst = !earlierDone
    await before
    if (answeredFirst) await this.again(batch, outcomes)
    batch.forEach((r, i) => {
      try {
        r.after(outcomes[i]!)
      } catch (err) {
        log.error(`handling an ${r.item.op} outcome failed`, err)
      }
    })
  }

  /**
   * A request answered while the one sent before it was still out may have
   * been applied first: the earlier one was lost with a meta that died and
   * retried after it (test/meta-ha-mount: a file's commit reached the new
   * leader before its create, ENOENT, and tar's close failed). Its failures
   * may be only that, so its failed changes go once more now that the earlier
   * ones are applied (a failed change applied nothing). Changes that succeeded
   * out of order stay as they are (two chmods of one directory may end in the
   * older mode). A change that timed out is not sent again: the cluster gave
   * no answer within the whole deadline, and a second try would only make the
   * caller wait out another one.
   */
  private async again(batch: Queued[], outcomes: AheadOutcome[]): Promise<void> {
    const failed = outcomes.flatMap((o, i) => (o.ok || (o.error as BerthError | undefined)?.code === 'ETIMEDOUT' ? [] : [i]))
    if (!failed.length) return
    const retried = await this.outcomes(failed.map((i) => batch[i]!))
    failed.forEach((i, k) => (outcomes[i] = retried[k]!))
  }

  private async outcomes(batch: Queued[]): Promise<AheadOutcome[]> {
    if (batch.length === 1 || !this.batches) return Promise.all(batch.map((r) => this.one(r.item)))
    try {
      const { results } = await this.meta.call('ahead', { items: batch.map((r) => r.item) })
      return batch.map((_, i): AheadOutcome => {
        const res = results[i]
        if (res === undefined) return { ok: false, error: fsError('EIO', `meta answered ${results.length} of ${batch.length} changes`) }
        if ('error' in res) return { ok: false, error: new BerthError(isErrorCode(res.error.code) ? res.error.code : 'EIO', res.error.message) }
        return { ok: true, reply: res }
      })
    } catch (error) {
      if ((error as BerthError).code !== 'ENOSYS') return batch.map(() => ({ ok: false, error }))
      log.info('meta does not take changes in one request (an older meta): sending them one by one')
      this.batches = false
      return Promise.all(batch.map((r) => this.one(r.item)))
    }
  }

  /** `item` as a request of its own (the op it names). */
  private request(item: AheadItem): Promise<AheadReply> {
    return this.meta.call(item.op, strip(item))
  }

  private one(item: AheadItem): Promise<AheadOutcome> {
    return this.request(item).then(
      (reply): AheadOutcome => ({ ok: true, reply }),
      (error: unknown): AheadOutcome => ({ ok: false, error }),
    )
  }
}

/** The item as its own request's body. */
function strip<T extends AheadItem>(item: T): Omit<T, 'op'> {
  const { op: _op, ...body } = item
  return body
}

/** Requests stay well under NATS's 1 MiB payload: a commit may carry 64 KiB of inline bytes. */
const BATCH_BYTES = 512 * 1024

/** How many of the queue's first items go in one request (at least one). */
function batchLength(queue: Queued[]): number {
  let bytes = 0
  let n = 0
  while (n < queue.length && n < MAX_AHEAD) {
    bytes += estimatedBytes(queue[n]!.item)
    if (n > 0 && bytes > BATCH_BYTES) break
    n++
  }
  return n
}

function estimatedBytes(item: AheadItem): number {
  if (item.op === 'setattr') return 128
  if (item.op !== 'commit') return 128 + item.name.length * 3
  return 256 + item.chunks.reduce((sum, c) => sum + 256 + (c.data?.length ?? 0), 0)
}
