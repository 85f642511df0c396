/**
 * Snapshots of the replicated state (docs/meta.md#snapshots), kept in a
 * JetStream object store, `BERTH_META_SNAP_<cluster>`, under one name,
 * `latest`, whose description is `{"seq": N}`: the database as it was right
 * after log entry N was applied. The log may be trimmed up to N once the
 * snapshot is stored; a replica whose database is older than the log's first
 * entry (new, or down while the log was trimmed) starts from the snapshot and
 * applies the tail.
 *
 * A snapshot is `VACUUM INTO` on a connection of its own, on a worker thread
 * (meta/vacuum-into.ts): a consistent copy of one read transaction, taken
 * while the leader keeps committing. Every row of the database is replicated
 * state (requests, sessions, engine_state included) and `engine_state.applied`
 * is written in the same transaction as the entries it counts, so the copy
 * says itself which entry it follows.
 */
import { createReadStream, renameSync, rmSync, statSync } from 'node:fs'
import { open as openFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { StorageType, type NatsConnection, type ObjectInfo, type ObjectStore } from 'nats'
import { openReadOnly } from '../sqlite'
import { vacuumInto } from '../vacuum-into'

export const SNAPSHOT_NAME = 'latest'

export function snapshotBucket(cluster: string): string {
  return `BERTH_META_SNAP_${cluster.replace(/[^A-Za-z0-9_-]/g, '_')}`
}

export interface SnapshotInfo {
  /** The last log entry the snapshot contains. */
  seq: number
  bytes: number
}

/** The applied log sequence recorded in a database file (0 when none). */
export async function appliedIn(file: string): Promise<number> {
  const db = await openReadOnly(file)
  try {
    const row = await db.get<{ value: number }>("SELECT value FROM engine_state WHERE key = 'applied'")
    return row?.value ?? 0
  } finally {
    await db.close()
  }
}

/** Copies the live database at `file` into `to` (one consistent read transaction). */
export async function copyDatabase(file: string, to: string): Promise<void> {
  rmSync(to, { force: true })
  await vacuumInto(file, to)
}

/** Removes a database file and its WAL and shared-memory files. */
export function removeDatabase(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true })
}

export class SnapshotStore {
  private constructor(private readonly os: ObjectStore) {}

  static async open(nc: NatsConnection, cluster: string, replicas: number): Promise<SnapshotStore> {
    const os = await nc.jetstream().views.os(snapshotBucket(cluster), { storage: StorageType.File, replicas })
    return new SnapshotStore(os)
  }

  /** The stored snapshot's sequence, or null when there is none. */
  async latest(): Promise<SnapshotInfo | null> {
    const info = await this.os.info(SNAPSHOT_NAME)
    if (!info || info.deleted) return null
    return { seq: parseSeq(info.description), bytes: info.size }
  }

  /**
   * Takes a snapshot of the database at `dbFile` and stores it; `tmp` is a
   * scratch file beside it. Resolves with what was stored.
   */
  async take(dbFile: string, tmp: string): Promise<SnapshotInfo> {
    try {
      await copyDatabase(dbFile, tmp)
      const seq = await appliedIn(tmp)
      const bytes = statSync(tmp).size
      const body = Readable.toWeb(createReadStream(tmp)) as unknown as ReadableStream<Uint8Array>
      await this.os.put({ name: SNAPSHOT_NAME, description: JSON.stringify({ seq }) }, body)
      return { seq, bytes }
    } finally {
      rmSync(tmp, { force: true })
    }
  }

  /**
   * Replaces the database at `dbFile` (closed by the caller) with the stored
   * snapshot; resolves with its sequence, or null when there is none. The
   * bytes are checked against the store's digest before they replace anything;
   * a read that fails leaves `dbFile` as it was.
   *
   * The read is watched (`watchedRead`): nats.js reads the version it found
   * when the read began, and a leader storing its next snapshot meanwhile
   * purges that version's chunks; the read would then wait forever. It ends
   * with SnapshotReplaced instead, and the caller reads the newer one.
   */
  async restore(dbFile: string, watch: ReadWatch = {}): Promise<SnapshotInfo | null> {
    const got = await this.os.get(SNAPSHOT_NAME)
    if (!got || got.info.deleted) return null
    const tmp = `${dbFile}.snapshot-in`
    const out = await openFile(tmp, 'w', 0o600)
    let bytes = 0
    try {
      try {
        await watchedRead(got.data, got.info.nuid, () => this.os.info(SNAPSHOT_NAME), watch, async (chunk) => {
          await out.write(chunk)
          bytes += chunk.length
        })
        await out.sync()
      } finally {
        await out.close()
      }
      const err = await got.error
      if (err) throw err
    } catch (err) {
      rmSync(tmp, { force: true })
      throw err
    }
    const seq = await appliedIn(tmp)
    removeDatabase(dbFile)
    renameSync(tmp, dbFile)
    return { seq, bytes }
  }
}

/** The stored snapshot was replaced by a newer one while this replica read it: read again. */
export class SnapshotReplaced extends Error {
  constructor() {
    super('the leader stored a newer snapshot while this one was read (its parts are gone): reading the newer one')
    this.name = 'SnapshotReplaced'
  }
}

export interface ReadWatch {
  /** No part for this long: is the version still the stored one? (default 1 s) */
  checkMs?: number
  /** No part for this long, the version not replaced: give up (default 60 s). */
  stallMs?: number
}

/**
 * Reads `data` into `sink`, and when no part came for `checkMs`, asks for the
 * stored version: gone or another one (a newer put purged this one's parts) ends
 * the read with SnapshotReplaced; no part for `stallMs` (the version unchanged,
 * or the store not answering) ends it with an error. Both cancel the read
 * (nats.js then drops its consumer).
 */
async function watchedRead(
  data: ReadableStream<Uint8Array>,
  nuid: string,
  stored: () => Promise<ObjectInfo | null>,
  watch: ReadWatch,
  sink: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const checkMs = watch.checkMs ?? 1000
  const stallMs = watch.stallMs ?? 60_000
  const reader = data.getReader()
  let lastPart = performance.now()
  let ended: Error | null = null
  let checking = false
  const end = (err: Error) => {
    if (ended) return
    ended = err
    void reader.cancel(err).catch(() => undefined)
  }
  const timer = setInterval(() => {
    const quiet = performance.now() - lastPart
    // also when the store does not answer the version check (NATS gone)
    if (quiet >= stallMs) return end(new Error(`no part of the snapshot came for ${Math.round(stallMs / 1000)} s: giving up; a restart reads it again`))
    if (checking || quiet < checkMs) return
    checking = true
    stored()
      .then((info) => {
        if (!info || info.deleted || info.nuid !== nuid) end(new SnapshotReplaced())
      })
      .catch(() => undefined) // the store unanswered: asked again at the next tick
      .finally(() => {
        checking = false
      })
  }, Math.min(checkMs, 250))
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (ended) throw ended
      if (done) return
      lastPart = performance.now()
      await sink(value)
    }
  } finally {
    clearInterval(timer)
    reader.releaseLock()
  }
}

function parseSeq(description: string | undefined): number {
  try {
    const v = JSON.parse(description ?? '{}') as { seq?: unknown }
    return typeof v.seq === 'number' ? v.seq : 0
  } catch {
    return 0
  }
}

