/**
 * The replicated log: one JetStream stream per cluster, `BERTH_META_<cluster>`
 * on subject `<cluster>.metalog`. Each message is one entry: the writes of one
 * group commit of the leader (meta/sqlite.ts), or a leadership marker. Appends
 * are fenced: `expect.lastSequence` must be the last entry the appender has
 * applied, so an appender that missed an entry (a deposed leader) is refused by
 * the stream itself and can never add to the log.
 */
import { StorageType, type Consumer, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats'
import { decode, encode } from '../../common/wire'
import type { AppendRoute } from './append-route'
import type { Write } from '../sqlite'

export interface LogEntry {
  /** metaId of the appender. */
  by: string
  /** Writes of each operation, in order; empty for a leadership marker. */
  ops: Write[][]
  /** Set on the marker a new leader appends before it serves. */
  lead?: true
}

/** Entries stay well under NATS max_payload (1 MiB + headroom). */
export const ENTRY_MAX_BYTES = 768 * 1024

export function streamName(cluster: string): string {
  return `BERTH_META_${cluster.replace(/[^A-Za-z0-9_-]/g, '_')}`
}

/**
 * Per-call limit of the log's JetStream API calls (stream info, get, trim).
 * nats.js waits 5 s by default; while the stream has no leader (its server
 * died; JetStream's own election takes several seconds) every call goes
 * unanswered, and a replica step that waited out two such calls added 10 s to
 * a failover (kill -9 of the stream leader's server: 10.6 s to the first
 * mutation served). With 1 s a step fails fast and the next tick (200 ms)
 * asks again; a call slower than that on a loaded machine only costs a retry.
 */
const API_TIMEOUT_MS = 1000

/** How long a batched read waits for entries the log said it holds before it settles for fewer. */
const READ_WAIT_MS = 2000

export class MetaLog {
  readonly name: string
  readonly subject: string
  /** The follower's cursor: an ordered consumer positioned at `cursorSeq` (see readRange). */
  private cursor: Consumer | null = null
  private cursorSeq = 0
  /** Where appends go out (meta/log/append-route.ts); null: on the replica's own connection. */
  private route: AppendRoute | null = null

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    cluster: string,
  ) {
    this.name = streamName(cluster)
    this.subject = `${cluster}.metalog`
  }

  /** Binds to the cluster's log, creating it on first use. */
  static async open(nc: NatsConnection, cluster: string, replicas: number): Promise<MetaLog> {
    const jsm = await nc.jetstreamManager({ timeout: API_TIMEOUT_MS })
    const log = new MetaLog(nc.jetstream(), jsm, cluster)
    try {
      await jsm.streams.info(log.name)
    } catch {
      try {
        await jsm.streams.add({ name: log.name, subjects: [log.subject], storage: StorageType.File, num_replicas: replicas, max_msg_size: -1, allow_direct: false })
      } catch (err) {
        // another meta created it first: use that one
        await jsm.streams.info(log.name).catch(() => {
          throw err
        })
      }
    }
    return log
  }

  /** Appends `entry` if the log's last sequence is `after`; resolves with its sequence. */
  async append(entry: LogEntry, after: number): Promise<number> {
    const js = this.route?.current() ?? this.js
    try {
      const ack = await js.publish(this.subject, encode(entry), { expect: { lastSequence: after }, timeout: 5000 })
      return ack.seq
    } catch (err) {
      this.route?.failed(js, err)
      throw err
    }
  }

  /** Sends appends through `route` from now on. */
  routeAppends(route: AppendRoute): void {
    this.route = route
  }

  /** Server name of the stream's leader (undefined while it has none). */
  async streamLeader(): Promise<string | undefined> {
    return (await this.jsm.streams.info(this.name)).cluster?.leader
  }

  /** First and last sequence held (first > last when empty). */
  async bounds(): Promise<{ first: number; last: number }> {
    const info = await this.jsm.streams.info(this.name)
    return { first: info.state.first_seq, last: info.state.last_seq }
  }

  async read(seq: number): Promise<LogEntry> {
    const m = await this.jsm.streams.getMessage(this.name, { seq })
    return decode(m.data) as LogEntry
  }

  /**
   * Entries `from`..`to` (inclusive; the log holds them), in order; may return
   * fewer (at least one). A follower reads the log in sequence, so one ordered
   * consumer (ephemeral, in memory, no acks) is kept positioned after the last
   * entry read and each call is one pull of the whole batch. Fetching one
   * message per entry (`read`) cost a JetStream API request each, answered in
   * JSON with the entry in base64: about as much CPU on the follower and the
   * servers as the leader spent executing the group (docs/meta.md#replication).
   * Anything unexpected (a gap, a consumer gone) drops the cursor and falls
   * back to `read` for this call.
   */
  async readRange(from: number, to: number): Promise<LogEntry[]> {
    const out: LogEntry[] = []
    try {
      if (!this.cursor || this.cursorSeq !== from) {
        this.cursor = await this.js.consumers.get(this.name, { opt_start_seq: from, inactive_threshold: 30_000 })
        this.cursorSeq = from
      }
      const batch = await this.cursor.fetch({ max_messages: to - from + 1, expires: READ_WAIT_MS })
      for await (const m of batch) {
        if (m.seq !== this.cursorSeq) throw new Error(`log read: expected entry ${this.cursorSeq}, got ${m.seq}`)
        out.push(decode(m.data) as LogEntry)
        this.cursorSeq++
        if (this.cursorSeq > to) break
      }
    } catch {
      this.cursor = null
    }
    if (!out.length) {
      this.cursor = null
      out.push(await this.read(from))
    }
    return out
  }

  /** Forgets the read cursor (a leader reads nothing; the server drops the consumer once idle). */
  dropCursor(): void {
    this.cursor = null
  }

  /** Drops entries below `seq` (they are in a snapshot). */
  async trimBelow(seq: number): Promise<void> {
    await this.jsm.streams.purge(this.name, { seq })
  }
}

/**
 * Cuts a group's operations into entries of at most ENTRY_MAX_BYTES, at
 * operation boundaries: a replica that sees only the first entries of a group
 * has whole operations, none of them answered yet (answers wait for COMMIT,
 * after the last entry), and their retries are answered from the request table.
 */
export function entriesOf(by: string, ops: Write[][]): LogEntry[] {
  const out: LogEntry[] = []
  let cur: Write[][] = []
  let size = 0
  for (const op of ops) {
    const n = encode(op).length
    if (cur.length && size + n > ENTRY_MAX_BYTES) {
      out.push({ by, ops: cur })
      cur = []
      size = 0
    }
    cur.push(op)
    size += n
  }
  if (cur.length) out.push({ by, ops: cur })
  return out
}
