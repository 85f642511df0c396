/**
 * Repair: brings every referenced block back to R live copies, and no more.
 *
 * Work comes from the repair queue (meta/repair-queue.ts), never from a scan
 * of all blocks: a healthy cluster costs one indexed read of an empty queue
 * per pass. One pass, in order:
 * 1. suspects (copies a reader reported bad; their rows are already gone):
 *    the node re-hashes the copy and trashes it if it is bad, so a later
 *    repair onto that node writes a good copy instead of finding the bad
 *    one "already stored";
 * 2. live-set events: the blocks of a node that died or came back are queued
 *    (replicas_node index); after meta starts, those of nodes with rows that
 *    are not live once the startup grace has passed;
 * 3. the queue, oldest first, in batches. Per block:
 *    - fewer live copies than min(R, live nodes): a live holder copies it to
 *      a live `up` node holding no row and no suspect copy; many copies run
 *      at once, at most a few per node (meta/move-slots.ts), within the
 *      `--repair-mbps` byte rate (meta/rate-limit.ts); the row is added
 *      after the target reported the copy durable;
 *    - more than R, unpinned (a node came back after its blocks were
 *      repaired elsewhere): the copy on the fullest holder is removed through
 *      the conditional delete protocol;
 *    - at min(R, live) but below R: parked until a node joins;
 *    - otherwise (or unreferenced): done, removed from the queue.
 */
import type { Logger } from '../common/log'
import { NODE_DEAD_MS, type NodeInfo } from '../common/protocol'
import { wantedReplicas } from './cluster-ops'
import type { MetaEnv } from './context'
import type { LifecycleStats } from './lifecycle-stats'
import { LiveSetWatch } from './live-set'
import { MoveSlots, type Move } from './move-slots'
import { enforceDrains } from './node-admin'
import { deleteCopies, deleteToken, type AskNode } from './node-commands'
import type { RateLimit } from './rate-limit'
import type { Rebalance } from './rebalance'
import { dequeue, due, enqueueNode, nodesWithRows, park, retryLater, unparkAll, type QueueEntry } from './repair-queue'

const PAGE = 64
/** Queue entries looked at per batch; copies of one batch run in parallel. */
const BATCH = 256

export interface RepairOptions {
  /** Byte rate shared by every copy repair makes. */
  limit: RateLimit
  /** Copies in flight per node (as source or target). */
  perNode?: number
  /** Copies in flight in all. */
  parallel?: number
}

interface BlockView {
  refs: number
  size: number
  pinned: boolean
  holders: string[]
  suspects: string[]
}

export class Repair {
  private readonly watch = new LiveSetWatch()
  private readonly startedAt = Date.now()
  private orphanedChecked = false

  constructor(
    private readonly env: MetaEnv,
    private readonly ask: AskNode,
    private readonly log: Logger,
    private readonly stats: LifecycleStats,
    private readonly opts: RepairOptions,
    private readonly rebalance?: Rebalance,
  ) {}

  async pass(stopped: () => boolean): Promise<void> {
    // One view of the live set for the whole pass. Decisions (a block at R,
    // done) are only sound against the view whose changes were turned into
    // events: a node that drops out of a later view, unseen by the watch,
    // would make a block with a copy too many look done, and nothing would
    // queue it again (the orphans test's 4 MiB leftover). A node that dies
    // during the pass fails its copies (retried) and is an event next pass.
    const live = this.env.nodes.live()
    await this.verifySuspects(stopped, live)
    await this.liveSetEvents(live)
    await enforceDrains(this.env)
    await this.work(stopped, live)
    // rebalance only on a cluster with no repair due (its trims included)
    if (this.rebalance && !stopped() && !(await due(this.env.db.read, 1)).length) await this.rebalance.pass(stopped)
  }

  private async liveSetEvents(liveNodes: NodeInfo[]): Promise<void> {
    const live = liveNodes.map((n) => n.id)
    const { died, joined } = this.watch.change(live)
    // nodes that died while no meta was watching never "die" in front of this
    // one: after a full dead-node interval every live node has been heard
    let gone: string[] = []
    if (!this.orphanedChecked && Date.now() - this.startedAt > NODE_DEAD_MS) {
      this.orphanedChecked = true
      const liveSet = new Set(live)
      gone = (await nodesWithRows(this.env.db.read)).filter((id) => !liveSet.has(id))
    }
    if (!died.length && !joined.length && !gone.length) return
    await this.env.db.write(async (tx) => {
      for (const id of [...died, ...gone]) {
        const n = await enqueueNode(tx, id)
        this.log.warn(`repair: node ${id} is not live; ${n} block(s) queued for repair`)
      }
      for (const id of joined) await enqueueNode(tx, id)
      if (joined.length) await unparkAll(tx)
    })
  }

  private async verifySuspects(stopped: () => boolean, liveNodes: NodeInfo[]): Promise<void> {
    const live = new Set(liveNodes.map((n) => n.id))
    const rows = await this.env.db.read.all<{ hash: string; node_id: string }>('SELECT hash, node_id FROM suspects ORDER BY since LIMIT ?', [PAGE])
    for (const s of rows) {
      if (stopped()) return
      if (!live.has(s.node_id)) continue // asked again when it is back
      try {
        const r = await this.ask(s.node_id, { op: 'verify', hashes: [s.hash] }, 60_000)
        this.stats.corrupt += r.bad.length
        if (r.bad.length) this.log.warn(`repair: node ${s.node_id}: copy of ${s.hash} was corrupt; moved to trash`)
      } catch (err) {
        this.log.warn(`repair: verify of ${s.hash} on ${s.node_id} failed: ${(err as Error).message}`)
        continue
      }
      await this.env.db.write((tx) => tx.run('DELETE FROM suspects WHERE hash = ? AND node_id = ?', [s.hash, s.node_id]))
    }
  }

  private async view(hash: string, live: Set<string>): Promise<BlockView | null> {
    const c = this.env.db.read
    const b = await c.get<{ refs: number; size: number; pinned: number }>('SELECT refs, size, EXISTS (SELECT 1 FROM pins p WHERE p.hash = b.hash) AS pinned FROM blocks b WHERE hash = ?', [hash])
    if (!b) return null
    const rows = await c.all<{ node_id: string }>('SELECT node_id FROM replicas WHERE hash = ?', [hash])
    const sus = await c.all<{ node_id: string }>('SELECT node_id FROM suspects WHERE hash = ?', [hash])
    return { refs: b.refs, size: b.size, pinned: b.pinned !== 0, holders: rows.map((r) => r.node_id).filter((id) => live.has(id)), suspects: sus.map((r) => r.node_id) }
  }

  /** Works the due queue until it is empty or a batch changes nothing. */
  private async work(stopped: () => boolean, live: NodeInfo[]): Promise<void> {
    for (;;) {
      if (stopped()) return
      // a node of this pass's view died: its copies would fail again and again
      // (a dead source or target, asked every batch), so the pass ends and the
      // next one starts from a view that has the death as an event
      if (live.some((n) => this.env.nodes.isDead(n.id))) return
      // SQLite calls settle as microtasks: without a turn of the event loop
      // between batches, a long queue would keep heartbeats and requests
      // waiting until the whole queue was worked
      await new Promise((r) => setImmediate(r))
      const entries = await due(this.env.db.read, BATCH)
      if (!entries.length) return
      const slots = new MoveSlots(this.opts.perNode ?? 2, this.opts.parallel ?? 16)
      const copies: Promise<void>[] = []
      let settled = 0
      for (const e of entries) {
        if (stopped()) break
        const r = await this.one(e, live, slots, copies)
        if (r) settled++
      }
      await Promise.all(copies)
      if (!settled && !copies.length) return
    }
  }

  /** Handles one entry; true when it left the due queue or a copy started. */
  private async one(e: QueueEntry, live: NodeInfo[], slots: MoveSlots, copies: Promise<void>[]): Promise<boolean> {
    // copies on draining nodes are sources but do not count (meta/node-admin.ts)
    const homes = live.filter((n) => !n.admin)
    const homeIds = new Set(homes.map((n) => n.id))
    const v = await this.view(e.hash, new Set(live.map((n) => n.id)))
    const want = wantedReplicas(this.env, homes)
    const R = this.env.replicas
    const db = this.env.db
    if (!v || v.refs === 0) {
      await db.write((tx) => dequeue(tx, e))
      return true
    }
    const counted = v.holders.filter((h) => homeIds.has(h))
    const leaving = v.holders.filter((h) => !homeIds.has(h))
    if (counted.length < want) {
      if (!v.holders.length) {
        this.log.warn(`block ${e.hash} has no live replica`)
        await db.write((tx) => park(tx, e))
        return true
      }
      const avoid = new Set([...v.holders, ...v.suspects])
      const zoneOf = new Map(live.map((n) => [n.id, n.zone]))
      const held = new Set(counted.map((h) => zoneOf.get(h)).filter((z) => z !== undefined))
      const open = homes.filter((n) => n.state === 'up' && !avoid.has(n.id))
      // failure domains: a zone that holds no counted copy first, whenever one is live
      const newZone = open.filter((n) => n.zone !== undefined && !held.has(n.zone))
      const targets = newZone.length ? newZone : open
      const move = await slots.acquire(v.holders, targets, v.size)
      if (!move) {
        await db.write((tx) => retryLater(tx, e))
        return false
      }
      copies.push(this.copy(e, move, slots))
      return true
    }
    if (leaving.length || (counted.length > R && !v.pinned)) {
      const fullness = new Map(live.map((n) => [n.id, n.capacity > 0 ? n.used / n.capacity : 1]))
      // victims first: copies sharing a zone with another copy, then the fullest
      const zoneOf = new Map(live.map((n) => [n.id, n.zone ?? `-${n.id}`]))
      const perZone = new Map<string, number>()
      for (const h of counted) perZone.set(zoneOf.get(h) ?? h, (perZone.get(zoneOf.get(h) ?? h) ?? 0) + 1)
      const shared = (h: string) => ((perZone.get(zoneOf.get(h) ?? h) ?? 0) > 1 ? 0 : 1)
      const byFullness = [...counted].sort((a, b) => shared(a) - shared(b) || (fullness.get(b) ?? 0) - (fullness.get(a) ?? 0) || a.localeCompare(b))
      const extra = Math.max(0, counted.length - R)
      const victims = [...leaving, ...byFullness.slice(0, extra)]
      const keepers = byFullness.slice(extra)
      const removed = v.pinned ? 0 : await this.remove(e.hash, victims, keepers, homeIds, Math.min(R, keepers.length))
      if (removed < victims.length) {
        // pinned (an upload in flight) or a node did not answer: later
        await db.write((tx) => retryLater(tx, e))
        return false
      }
      await db.write((tx) => dequeue(tx, e))
      return true
    }
    // Over R but pinned (an upload in flight, or a session that died with it):
    // keep it queued, or the extra copy would outlive the pin with no event to
    // bring it back here. Not settled: the next pass looks again (counting it
    // as settled made one pass spin on it until the pin went).
    if (counted.length > R && v.pinned) {
      await db.write((tx) => retryLater(tx, e))
      return false
    }
    await db.write((tx) => (counted.length < R ? park(tx, e) : dequeue(tx, e)))
    return true
  }

  private async copy(e: QueueEntry, m: Move, slots: MoveSlots): Promise<void> {
    try {
      await this.opts.limit.take(m.bytes)
      try {
        await this.ask(m.source, { op: 'replicate', hash: e.hash, to: { id: m.target.id, url: m.target.url } }, 60_000)
      } catch (err) {
        this.log.warn(`replicating ${e.hash} from ${m.source} to ${m.target.id} failed: ${(err as Error).message}`)
        await this.env.db.write((tx) => retryLater(tx, e))
        return
      }
      // the entry stays due: the next batch looks again (R=3 may need two copies)
      await this.env.db.write((tx) =>
        tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?) ON CONFLICT (hash, node_id) DO UPDATE SET since = excluded.since', [e.hash, m.target.id, Date.now()]),
      )
      this.stats.repaired++
      this.stats.repairedBytes += m.bytes
      this.env.repairMeter?.add(m.bytes)
    } finally {
      slots.release(m)
    }
  }

  /**
   * Removes `victims`' copies through the conditional delete protocol, only
   * while at least `keep` rows stay on counted nodes (`homes`), after the
   * keepers confirmed with `has` that their copies really exist (a row
   * reconciliation has not yet found stale must not cost a real copy).
   * Returns how many were removed.
   */
  private async remove(hash: string, victims: string[], keepers: string[], homes: Set<string>, keep: number): Promise<number> {
    const confirmed = await Promise.all(keepers.map((n) => this.ask(n, { op: 'has', hashes: [hash] }, 5000).then((r) => r.present.includes(hash), () => false)))
    if (!confirmed.every(Boolean)) return 0
    const ids = JSON.stringify([...homes])
    let done = 0
    for (const victim of victims) {
      const token = await deleteToken(this.ask, victim)
      if (token === null) continue
      const removed = await this.env.db.write(async (tx) => {
        const still = await tx.get<{ n: number }>(
          `SELECT (SELECT COUNT(*) FROM replicas r WHERE r.hash = ? AND r.node_id != ? AND r.node_id IN (SELECT value FROM json_each(?))) AS n
           WHERE NOT EXISTS (SELECT 1 FROM pins WHERE hash = ?) AND EXISTS (SELECT 1 FROM replicas WHERE hash = ? AND node_id = ?)`,
          [hash, victim, ids, hash, hash, victim],
        )
        if (!still || still.n < keep) return false
        await tx.run('DELETE FROM replicas WHERE hash = ? AND node_id = ?', [hash, victim])
        return true
      })
      if (!removed) continue
      done++
      const r = await deleteCopies(this.ask, this.log, victim, [hash], token)
      if (homes.has(victim)) this.stats.trimmed += r.deleted
      else this.stats.drained += r.deleted
    }
    return done
  }
}
