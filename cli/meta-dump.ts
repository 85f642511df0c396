/**
 * `berth meta dump` and `berth meta load` (also named `backup` and `restore`):
 * backup and restore of the namespace (docs/operations.md#backup-and-restore).
 *
 * dump asks the serving meta for a consistent SQLite copy (meta/dump.ts:
 * VACUUM INTO from one read transaction, while meta keeps serving), pages it
 * over NATS into `--out`, checks its SHA-256 and only then renames it into
 * place. load is offline: it checks a dump (SQLite header, integrity check,
 * schema version, berth's tables, a root directory), copies it to a new
 * database file, upgrades its schema like `berth meta` would, and renames it
 * into place; an existing database is never overwritten.
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { copyFile, open, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { BerthError } from '../common/errors'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO, type DumpInfo } from '../common/protocol'
import { migrate, SCHEMA_VERSION } from '../meta/schema'
import { openDatabase, openReadOnly } from '../meta/sqlite'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'
import { Progress } from './progress'
import { bytes } from './status'

const HELP = `usage: berth meta dump [--out FILE] [--json] [--no-progress] [connection options]
       berth meta load FILE --db PATH [--json]
       (berth meta backup and berth meta restore are the same two commands)

dump   a consistent copy of the namespace (an SQLite database) from the serving
       meta, taken while it keeps serving; written to FILE (default
       ./berth-meta-<UTC time>.db), never over an existing file
load   restore a dump into a new meta database PATH (refused if PATH exists);
       then start \`berth meta --db PATH\` against the same data nodes

Blocks the dump references must still exist when it is restored: see
docs/operations.md#backup-and-restore for the order relative to block GC.
  --out FILE           where the dump goes
  --db PATH            the new database (load)
  --json               machine-readable summary on stdout
  --no-progress        no progress on stderr while the dump is transferred
${CONNECTION_HELP}

Exit status: 0 on success, 1 on failure (nothing is written then), 2 on bad usage.
`

/** The command each name runs: backup and restore are what people look for first. */
const VERBS: Readonly<Record<string, 'dump' | 'load'>> = { dump: 'dump', backup: 'dump', load: 'load', restore: 'load' }

export function isDumpOrLoad(argv: string[]): boolean {
  return Object.hasOwn(VERBS, argv[0] ?? '')
}

export async function run(argv: string[]): Promise<void> {
  const verb = VERBS[argv[0] ?? '']
  const { values, positionals } = parseArgs({
    args: argv.slice(1),
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      out: { type: 'string' },
      db: { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-progress': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  const usage = verb === 'dump' ? positionals.length !== 0 || values.db !== undefined : positionals.length !== 1 || !values.db || values.out !== undefined
  if (values.help || usage) {
    process.stdout.write(HELP)
    if (!values.help) process.exitCode = 2
    return
  }
  if (verb === 'dump') await dump(values)
  else await load(positionals[0]!, values.db!, values.json)
}

function stamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
}

async function dump(values: { out?: string; json: boolean; 'no-progress': boolean } & Parameters<typeof connectClient>[0]): Promise<void> {
  if (values.out !== undefined && existsSync(values.out)) throw new BerthError('EEXIST', `${values.out} exists; a dump never overwrites a file`)
  const outDir = values.out !== undefined ? dirname(resolve(values.out)) : process.cwd()
  if (!existsSync(outDir)) throw new BerthError('ENOENT', `folder ${outDir} does not exist`)
  const { nc, meta } = await connectClient(values, 'berth-meta-dump', 60_000)
  const started = Date.now()
  try {
    const info = await meta.call('dumpStart', {}, { deadlineMs: 30 * 60_000 })
    let out: string
    try {
      out = resolve(values.out ?? `berth-meta-${stamp(info.at)}.db`)
      await transfer(meta, info, out, !values['no-progress'])
    } finally {
      // meta's copy goes whatever happened here (else it waits out its idle time)
      await meta.call('dumpEnd', { id: info.id }).catch(() => undefined)
    }
    const summary = { out, size: info.size, sha256: info.sha256, schemaVersion: info.schemaVersion, at: new Date(info.at).toISOString(), seconds: (Date.now() - started) / 1000 }
    process.stdout.write(values.json ? JSON.stringify(summary, null, 2) + '\n' : `meta dump: ${out} (${bytes(info.size)}, snapshot of ${summary.at}, sha256 ${info.sha256})\n`)
  } finally {
    await nc.close()
  }
}

/** Pages dump `info` into `out` through `out.partial`; renames it only when whole and its hash matches. */
async function transfer(meta: MetaClient, info: DumpInfo, out: string, showProgress: boolean): Promise<void> {
  if (existsSync(out)) throw new BerthError('EEXIST', `${out} exists; a dump never overwrites a file`)
  const partial = `${out}.partial`
  const f = await open(partial, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw new BerthError(err.code === 'EEXIST' ? 'EEXIST' : 'EIO', err.code === 'EEXIST' ? `${partial} exists: another dump is writing it, or one was interrupted (remove it)` : `${partial}: ${err.message}`)
  })
  const progress = new Progress({ label: 'meta dump', enabled: showProgress, total: { files: 1, bytes: info.size }, unit: 'file' })
  const h = createHash('sha256')
  let offset = 0
  try {
    while (offset < info.size) {
      const page = await meta.call('dumpRead', { id: info.id, offset })
      if (page.data.length === 0) throw new BerthError('EIO', `dump ended at ${offset} of ${info.size} bytes`)
      await f.write(page.data, 0, page.data.length, offset)
      h.update(page.data)
      offset += page.data.length
      progress.update({ files: offset >= info.size ? 1 : 0, bytes: offset })
    }
    await f.sync()
    await f.close()
    const got = h.digest('hex')
    if (got !== info.sha256) throw new BerthError('EIO', `dump transfer corrupted: SHA-256 ${got}, meta sent ${info.sha256}`)
    renameSync(partial, out)
  } catch (err) {
    await f.close().catch(() => undefined)
    rmSync(partial, { force: true })
    throw err
  } finally {
    progress.done()
  }
}

const REQUIRED_TABLES = ['inodes', 'dentries', 'chunks', 'blocks', 'replicas'] as const

export interface DumpSummary {
  schemaVersion: number
  inodes: number
  files: number
  blocks: number
  bytes: number
}

/** Checks that `file` is a whole berth namespace; throws saying what is wrong. */
export async function checkDump(file: string): Promise<DumpSummary> {
  const head = Buffer.alloc(16)
  const f = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new BerthError('ENOENT', `${file}: ${err.code ?? err.message}`)
  })
  try {
    await f.read(head, 0, 16, 0)
  } finally {
    await f.close()
  }
  if (head.toString('latin1') !== 'SQLite format 3\0') throw new BerthError('EINVAL', `${file} is not an SQLite database (not a berth meta dump)`)
  // a live database's last commits are in its WAL: a copy of the main file alone is not one state
  if ((await stat(`${file}-wal`).catch(() => null))?.size) {
    throw new BerthError('EINVAL', `${file} has a non-empty ${file}-wal: it is a live (or crashed) database, not a dump; take one with \`berth meta dump\``)
  }
  const c = await openReadOnly(file)
  try {
    const ok = await c.all<{ integrity_check: string }>('PRAGMA integrity_check')
    if (ok.length !== 1 || ok[0]!.integrity_check !== 'ok') throw new BerthError('EINVAL', `${file} fails SQLite's integrity check: ${ok.slice(0, 3).map((r) => r.integrity_check).join('; ')}`)
    const version = (await c.get<{ user_version: number }>('PRAGMA user_version'))?.user_version ?? 0
    if (version < 1) throw new BerthError('EINVAL', `${file} has no berth schema (user_version 0)`)
    if (version > SCHEMA_VERSION) throw new BerthError('EINVAL', `${file} has schema version ${version}, newer than this berth (${SCHEMA_VERSION}); load it with a newer berth`)
    const tables = new Set((await c.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
    const missing = REQUIRED_TABLES.filter((t) => !tables.has(t))
    if (missing.length) throw new BerthError('EINVAL', `${file} lacks berth's table(s) ${missing.join(', ')}: not a berth meta dump`)
    const root = await c.get<{ mode: number }>('SELECT mode FROM inodes WHERE ino = ?', [ROOT_INO])
    if (!root) throw new BerthError('EINVAL', `${file} has no root directory (inode ${ROOT_INO})`)
    const n = async (sql: string) => (await c.get<{ n: number }>(sql))?.n ?? 0
    return {
      schemaVersion: version,
      inodes: await n('SELECT COUNT(*) AS n FROM inodes'),
      files: await n(`SELECT COUNT(*) AS n FROM inodes WHERE (mode & ${0o170000}) = ${0o100000}`),
      blocks: await n('SELECT COUNT(*) AS n FROM blocks WHERE refs > 0'),
      bytes: await n('SELECT COALESCE(SUM(size), 0) AS n FROM inodes WHERE (mode & 61440) = 32768'),
    }
  } finally {
    await c.close()
  }
}

async function load(file: string, dbPath: string, json: boolean): Promise<void> {
  const target = resolve(dbPath)
  for (const p of [target, `${target}-wal`, `${target}-shm`]) {
    if (existsSync(p)) throw new BerthError('EEXIST', `${p} exists; load restores into a new database only (move the old one away first, with meta stopped)`)
  }
  const summary = await checkDump(file)
  mkdirSync(dirname(target), { recursive: true })
  const tmp = `${target}.loading-${process.pid}`
  try {
    await copyFile(file, tmp)
    // WAL mode and the current schema, as `berth meta` would on start; FULL sync: the restore is durable once renamed
    const db = await openDatabase(tmp, migrate, { sync: 'full' })
    await db.close()
    rmSync(`${tmp}-wal`, { force: true })
    rmSync(`${tmp}-shm`, { force: true })
    if (existsSync(target)) throw new BerthError('EEXIST', `${target} appeared while loading; left untouched`)
    renameSync(tmp, target)
  } catch (err) {
    for (const p of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(p, { force: true })
    throw err
  }
  const out = { db: target, from: resolve(file), ...summary, schemaVersion: SCHEMA_VERSION, dumpSchemaVersion: summary.schemaVersion }
  process.stdout.write(
    json
      ? JSON.stringify(out, null, 2) + '\n'
      : `meta load: ${target} from ${out.from}: ${summary.inodes} inode(s), ${summary.files} file(s) (${bytes(summary.bytes)}), ${summary.blocks} block(s) referenced\n` +
          `next: start \`berth meta --db ${target}\` against the same data nodes, then remount clients\n`,
  )
}
