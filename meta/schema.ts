/**
 * The namespace schema, versioned with PRAGMA user_version. Each migration
 * moves the database from version i to i+1 inside one transaction; a new
 * migration is appended, never edited. docs/meta.md describes every column.
 */
import { ROOT_INO } from '../common/protocol'
import type { Conn } from './sqlite'
import { nowTs } from './time'

/**
 * Triggers that keep inodes.alloc equal to the bytes a table's rows of a file
 * hold (v11), for a table with an `ino` column; `len` is a row's length.
 */
function allocTriggers(table: string, len: (row: 'NEW' | 'OLD') => string, lenCols: string): string {
  return `
      CREATE TRIGGER ${table}_alloc_insert AFTER INSERT ON ${table} BEGIN
        UPDATE inodes SET alloc = alloc + ${len('NEW')} WHERE ino = NEW.ino;
      END;
      CREATE TRIGGER ${table}_alloc_delete AFTER DELETE ON ${table} BEGIN
        UPDATE inodes SET alloc = alloc - ${len('OLD')} WHERE ino = OLD.ino;
      END;
      CREATE TRIGGER ${table}_alloc_update AFTER UPDATE OF ino, ${lenCols} ON ${table} BEGIN
        UPDATE inodes SET alloc = alloc - ${len('OLD')} WHERE ino = OLD.ino;
        UPDATE inodes SET alloc = alloc + ${len('NEW')} WHERE ino = NEW.ino;
      END;`
}

const MIGRATIONS: Array<(c: Conn) => Promise<void>> = [
  async (c) => {
    await c.exec(`
      CREATE TABLE inodes (
        ino INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: clients key caches by ino
        mode INTEGER NOT NULL,
        nlink INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        rdev INTEGER NOT NULL DEFAULT 0,
        atime_s INTEGER NOT NULL, atime_ns INTEGER NOT NULL,
        mtime_s INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        ctime_s INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
        gen INTEGER NOT NULL DEFAULT 0,
        target TEXT
      );
      CREATE TABLE dentries (
        parent INTEGER NOT NULL,
        name TEXT NOT NULL,
        ino INTEGER NOT NULL,
        PRIMARY KEY (parent, name)
      ) WITHOUT ROWID;
      CREATE INDEX dentries_ino ON dentries (ino);
      CREATE TABLE chunks (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash TEXT NOT NULL,
        len INTEGER NOT NULL,
        PRIMARY KEY (ino, idx)
      ) WITHOUT ROWID;
      CREATE INDEX chunks_hash ON chunks (hash);
      CREATE TABLE blocks (
        hash TEXT PRIMARY KEY,
        refs INTEGER NOT NULL,
        size INTEGER NOT NULL,
        zero_since INTEGER
      ) WITHOUT ROWID;
      CREATE INDEX blocks_zero ON blocks (zero_since) WHERE zero_since IS NOT NULL;
      CREATE TABLE replicas (
        hash TEXT NOT NULL,
        node_id TEXT NOT NULL,
        PRIMARY KEY (hash, node_id)
      ) WITHOUT ROWID;
      CREATE TABLE xattrs (
        ino INTEGER NOT NULL,
        name TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (ino, name)
      ) WITHOUT ROWID;
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        expires INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE open_files (
        session TEXT NOT NULL,
        ino INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (session, ino)
      ) WITHOUT ROWID;
      CREATE INDEX open_files_ino ON open_files (ino);
    `)
    const [s, ns] = nowTs(null)
    await c.run(
      `INSERT INTO inodes (ino, mode, nlink, uid, gid, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns)
       VALUES (?, ?, 2, 0, 0, ?, ?, ?, ?, ?, ?)`,
      [ROOT_INO, 0o40755, s, ns, s, ns, s, ns],
    )
  },
  // v2: small files' bytes live in meta (one row per inline chunk), so writing
  // and reading them needs no data node round trip.
  async (c) => {
    await c.exec(`
      CREATE TABLE inline_chunks (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ino, idx)
      ) WITHOUT ROWID;
    `)
  },
  // v3: the block lifecycle (docs/data-node.md#block-lifecycle). Upload pins keep
  // a block that a session uploaded (or re-uploaded by dedup) from GC until the
  // session commits it; piece checksums let readers verify ranges end to end.
  async (c) => {
    await c.exec(`
      CREATE TABLE pins (
        hash TEXT NOT NULL,
        session TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (hash, session)
      ) WITHOUT ROWID;
      CREATE INDEX pins_session ON pins (session);
      ALTER TABLE blocks ADD COLUMN sums BLOB;
    `)
  },
  // v4: reconciliation with the nodes (docs/data-node.md#block-lifecycle).
  // replicas.since: when meta last learnt the copy exists (its clock, ms), so a
  // row asserted after an inventory page was listed is never removed for being
  // absent from it. pins.count: one pin per upload, so two uploads of the same
  // content by one session are both protected until both are committed or
  // released. suspects: copies a reader reported bad, for the repair loop to
  // have the node re-hash (and trash) before it copies the block anywhere.
  async (c) => {
    await c.exec(`
      ALTER TABLE replicas ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
      CREATE INDEX replicas_node ON replicas (node_id, hash);
      ALTER TABLE pins ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
      CREATE TABLE suspects (
        hash TEXT NOT NULL,
        node_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (hash, node_id)
      ) WITHOUT ROWID;
    `)
  },
  // v5: the repair queue (meta/repair-queue.ts). Blocks whose copy count may
  // be off are queued by the events that can change it (a node died or came
  // back, a copy was found missing or bad, a commit with fewer than R copies),
  // so a healthy cluster costs one indexed read per repair pass instead of a
  // scan of every block. parked: below R but at min(R, live nodes); looked at
  // again only when a node joins. replicas_node (v4) lists a dead node's blocks.
  async (c) => {
    await c.exec(`
      CREATE TABLE repair_queue (
        hash TEXT PRIMARY KEY,
        since INTEGER NOT NULL,
        parked INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;
      CREATE INDEX repair_queue_due ON repair_queue (parked, since);
    `)
  },
  // v6: what operators asked of data nodes (meta/node-admin.ts): draining,
  // decommissioned or forgotten; kept across meta restarts.
  async (c) => {
    await c.exec(`
      CREATE TABLE node_admin (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since INTEGER NOT NULL
      ) WITHOUT ROWID;
    `)
  },
  // v7: exactly-once and session epochs (docs/meta.md#exactly-once). `requests`
  // keeps each mutation's answer by client and request number until the client
  // acknowledges it, in the same transaction as the mutation; a session has an
  // epoch (a renewal naming an older one is ESTALE) and remembers its TTL so a
  // restart can give every session one full TTL of grace. `engine_state` holds
  // counters of the replicated state (next epoch, applied log sequence).
  async (c) => {
    await c.exec(`
      CREATE TABLE requests (
        client TEXT NOT NULL,
        n INTEGER NOT NULL,
        op TEXT NOT NULL,
        reply BLOB NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (client, n)
      ) WITHOUT ROWID;
      CREATE INDEX requests_at ON requests (at);
      ALTER TABLE sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE sessions ADD COLUMN ttl_ms INTEGER NOT NULL DEFAULT 60000;
      CREATE TABLE engine_state (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
    `)
  },
  // v8: appended slices (docs/data-node.md#appends-slices-and-compaction). A
  // chunk is its `chunks` row (the base block) followed by its slices in `pos`
  // order, each a whole block of `len` bytes starting at `pos` in the chunk,
  // so a small append + fsync uploads only its new bytes. Each slice holds one
  // reference on its block, like a chunk row: GC, pins, reconciliation and
  // repair see a slice block as any referenced block.
  async (c) => {
    await c.exec(`
      CREATE TABLE slices (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        hash TEXT NOT NULL,
        len INTEGER NOT NULL,
        PRIMARY KEY (ino, idx, pos)
      ) WITHOUT ROWID;
      CREATE INDEX slices_hash ON slices (hash);
    `)
  },
  // v9: inode numbers reserved for a session's mkdirs ahead (the `inos`
  // request): ino_next .. ino_last, used in increasing order; empty when
  // ino_next > ino_last. Taken from AUTOINCREMENT's counter, so no other
  // inode ever gets them, and claimed one at a time, so none is used twice.
  async (c) => {
    await c.exec(`
      ALTER TABLE sessions ADD COLUMN ino_next INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE sessions ADD COLUMN ino_last INTEGER NOT NULL DEFAULT -1;
    `)
  },
  // v10: byte-range locks (meta/locks.ts, docs/semantics.md#locks). One row
  // per range an owner holds: `kind` 'posix' (fcntl, OFD) or 'flock'; an
  // owner is (session, owner), the kernel's lock owner id in hex; `end`
  // inclusive, 9007199254740991 (LOCK_EOF) for "to the end of the file".
  // A session's rows go when it ends or expires.
  async (c) => {
    await c.exec(`
      CREATE TABLE locks (
        ino INTEGER NOT NULL,
        kind TEXT NOT NULL,
        session TEXT NOT NULL,
        owner TEXT NOT NULL,
        type TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        pid INTEGER NOT NULL
      );
      CREATE INDEX locks_ino ON locks (ino, kind);
      CREATE INDEX locks_session ON locks (session);
    `)
  },
  // v11: the bytes a file holds, for st_blocks (docs/semantics.md): alloc
  // is the sum of its chunks', slices' and inline chunks' lengths; a hole
  // (no row) holds none. Triggers keep it, so every path that changes a chunk
  // map (commit, truncate, clone, free, a follower replaying the log) keeps
  // it without knowing of it.
  async (c) => {
    await c.exec(`
      ALTER TABLE inodes ADD COLUMN alloc INTEGER NOT NULL DEFAULT 0;
      UPDATE inodes SET alloc =
        COALESCE((SELECT SUM(len) FROM chunks WHERE chunks.ino = inodes.ino), 0) +
        COALESCE((SELECT SUM(len) FROM slices WHERE slices.ino = inodes.ino), 0) +
        COALESCE((SELECT SUM(length(data)) FROM inline_chunks WHERE inline_chunks.ino = inodes.ino), 0);
      ${allocTriggers('chunks', (r) => `${r}.len`, 'len')}
      ${allocTriggers('slices', (r) => `${r}.len`, 'len')}
      ${allocTriggers('inline_chunks', (r) => `length(${r}.data)`, 'data')}
    `)
  },
  // v12: POSIX ACLs (common/acl.ts, docs/semantics.md#acls). They are the
  // xattrs system.posix_acl_access and system.posix_acl_default; `acl` says
  // which of the two an inode has (bit 1, bit 2), so a create reads its
  // directory's default ACL only when there is one, and a mount answers
  // "no ACL" from cached attributes without asking.
  async (c) => {
    await c.exec(`
      ALTER TABLE inodes ADD COLUMN acl INTEGER NOT NULL DEFAULT 0;
      UPDATE inodes SET acl =
        (CASE WHEN EXISTS (SELECT 1 FROM xattrs x WHERE x.ino = inodes.ino AND x.name = 'system.posix_acl_access') THEN 1 ELSE 0 END) |
        (CASE WHEN EXISTS (SELECT 1 FROM xattrs x WHERE x.ino = inodes.ino AND x.name = 'system.posix_acl_default') THEN 2 ELSE 0 END)
      WHERE ino IN (SELECT ino FROM xattrs WHERE name IN ('system.posix_acl_access', 'system.posix_acl_default'));
    `)
  },
  // v13: inline_chunks becomes a rowid table (its key, (ino, idx), a unique
  // index beside it). Its rows are kilobytes; WITHOUT ROWID suits rows far
  // smaller than a page (SQLite's own advice). Appended to a WITHOUT ROWID
  // b-tree, every few creates redistributed the cells of the last three
  // leaves (balance_nonroot) and, with pages from the freelist, swapped page
  // numbers through a temporary one past the 1 GiB lock byte; the page cache
  // then walked every cached page at the end of that commit: after a source
  // tree was untarred and removed, 17 % of meta's CPU, about 100 us per
  // create with its 128 MiB cache (docs/bench.md, "A create's COMMIT after
  // deletes"). A rowid table takes appends with balance_quick: one new leaf.
  // The rows move as they are; dropping the old table drops its triggers
  // without firing them, and the copy runs before the new ones exist, so
  // inodes.alloc is untouched.
  async (c) => {
    await c.exec(`
      CREATE TABLE inline_chunks_v13 (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ino, idx)
      );
      INSERT INTO inline_chunks_v13 (ino, idx, data) SELECT ino, idx, data FROM inline_chunks ORDER BY ino, idx;
      DROP TABLE inline_chunks;
      ALTER TABLE inline_chunks_v13 RENAME TO inline_chunks;
      ${allocTriggers('inline_chunks', (r) => `length(${r}.data)`, 'data')}
    `)
  },
]

export const SCHEMA_VERSION = MIGRATIONS.length

/** Brings the database to `to` (default: the current version); `to` is for upgrade tests. */
export async function migrate(c: Conn, to: number = SCHEMA_VERSION): Promise<void> {
  const row = await c.get<{ user_version: number }>('PRAGMA user_version')
  const from = row?.user_version ?? 0
  if (from > SCHEMA_VERSION) {
    throw new Error(`database schema version ${from} is newer than this berth (${SCHEMA_VERSION}); upgrade berth`)
  }
  for (let v = from; v < Math.min(to, SCHEMA_VERSION); v++) {
    await c.exec('BEGIN IMMEDIATE')
    try {
      await MIGRATIONS[v]!(c)
      await c.exec(`PRAGMA user_version = ${v + 1}`)
      await c.exec('COMMIT')
    } catch (err) {
      await c.exec('ROLLBACK').catch(() => undefined)
      throw err
    }
  }
}
