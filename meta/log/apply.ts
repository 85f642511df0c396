/**
 * Applying log entries to this replica's SQLite. An entry's writes run in one
 * transaction together with the new applied sequence (engine_state `applied`),
 * so a crash between entries resumes exactly after the last one applied.
 */
import type { Conn, Database, Params, Write } from '../sqlite'
import type { LogEntry } from './stream'

export async function appliedSeq(db: Database): Promise<number> {
  const row = await db.read.get<{ value: number }>("SELECT value FROM engine_state WHERE key = 'applied'")
  return row?.value ?? 0
}

export async function setApplied(tx: Conn, seq: number): Promise<void> {
  await tx.run("INSERT INTO engine_state (key, value) VALUES ('applied', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [seq])
}

/** msgpack gives back blobs as Uint8Array; sqlite3 binds only Buffers as blobs. */
function bindable(params: Params): Params {
  return params.map((p) => (p instanceof Uint8Array && !Buffer.isBuffer(p) ? Buffer.from(p.buffer, p.byteOffset, p.byteLength) : p))
}

async function replay(tx: Conn, w: Write): Promise<void> {
  if (w[0] === 'exec') await tx.exec(w[1])
  else await tx.run(w[1], bindable(w[2]))
}

/**
 * Applies consecutive entries (the first is `from`) in one transaction; must
 * only run while this replica writes nothing else (a follower).
 */
export async function applyEntries(db: Database, from: number, entries: LogEntry[]): Promise<void> {
  await db.write(async (tx) => {
    for (const entry of entries) for (const op of entry.ops) for (const w of op) await replay(tx, w)
    await setApplied(tx, from + entries.length - 1)
  }, { replay: true })
}
