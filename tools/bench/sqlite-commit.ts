/**
 * What a COMMIT costs SQLite when the connection's page cache is large and the
 * database has free pages (docs/bench.md, "A create's COMMIT after deletes").
 *
 *   node dist/tools/bench/sqlite-commit.js [--commits 3000]
 *
 * For each page-cache size (16 and 128 MiB) and each database state (no free
 * pages; 80 MiB freed by a delete), fills a WAL database, reads the index's
 * pages into the cache (the freed pages stay cached from their inserts, as
 * far as the cache holds), then times COMMITs of transactions that insert
 * five rows at random places in an index (page splits). It prints the mean
 * COMMIT time.
 *
 * Why it matters (SQLite 3.53 as bundled by better-sqlite3): when a split
 * takes pages from the freelist out of order, balance_nonroot() swaps two
 * pages' numbers through a temporary one, the page past the 1 GiB lock byte.
 * The page cache then records that number as the largest key it has seen,
 * and the end of the transaction, which drops cached pages past the
 * database's end, finds it past the end and walks the whole cache (its hash
 * table and every page) instead of its last few slots. The walk grows with
 * the pages cached, so a large cache makes every such commit slower.
 * Meta keeps its large cache and avoids the splits that swap instead: its
 * one table of large rows, inline_chunks, is a rowid table (schema v13),
 * whose appends add a leaf without rebalancing. Re-run this after an SQLite
 * upgrade: the day both lines with free pages read alike, the quirk is gone.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import BetterSqlite3 from 'better-sqlite3'

function commitMicros(dir: string, cacheMb: number, freed: boolean, commits: number): { us: number; free: number } {
  const db = new BetterSqlite3(join(dir, `c${cacheMb}-${freed ? 'free' : 'full'}.db`))
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma(`cache_size = -${cacheMb * 1024}`)
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID; CREATE TABLE pad (v BLOB)')
    const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)')
    const row = Buffer.alloc(200, 1)
    db.transaction(() => {
      for (let i = 0; i < 60_000; i++) insert.run(`k${Math.random()}`, row)
    })()
    if (freed) {
      const pad = db.prepare('INSERT INTO pad (v) VALUES (?)')
      db.transaction(() => {
        for (let i = 0; i < 20_000; i++) pad.run(Buffer.alloc(4000))
      })()
      db.exec('DELETE FROM pad')
    }
    // every page of t into the cache, as a long-running meta has its tables;
    // pad's pages, freed, stay cached from their inserts (as far as the cache holds)
    db.prepare('SELECT * FROM t').all()
    const begin = db.prepare('BEGIN IMMEDIATE')
    const commit = db.prepare('COMMIT')
    let ns = 0n
    for (let i = 0; i < commits; i++) {
      begin.run()
      for (let j = 0; j < 5; j++) insert.run(`k${Math.random()}`, row)
      const t0 = process.hrtime.bigint()
      commit.run()
      ns += process.hrtime.bigint() - t0
    }
    return { us: Number(ns) / commits / 1e3, free: db.pragma('freelist_count', { simple: true }) as number }
  } finally {
    db.close()
  }
}

function main(): void {
  const { values } = parseArgs({ options: { commits: { type: 'string', default: '3000' } } })
  const commits = Number(values.commits)
  const dir = mkdtempSync(join(tmpdir(), 'sqlite-commit-'))
  try {
    for (const cacheMb of [16, 128]) {
      for (const freed of [false, true]) {
        const r = commitMicros(dir, cacheMb, freed, commits)
        console.log(`cache ${String(cacheMb).padStart(3)} MiB, ${freed ? `${r.free} free pages` : 'no free pages   '}: COMMIT ${r.us.toFixed(1)} us`)
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main()
