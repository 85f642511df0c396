/**
 * Operator requests of `berth meta dump`: a consistent copy of the namespace
 * while meta serves.
 *
 * dumpStart runs `VACUUM INTO` a file next to the database, on a connection
 * of its own on a worker thread (meta/vacuum-into.ts): SQLite writes the copy
 * from one read transaction, so it is one committed state (WAL readers never
 * wait for, nor block, the writer), compacted, and independent of the WAL.
 * The worker keeps meta's thread and its reader free for requests meanwhile.
 * The caller then pages the file with dumpRead (NATS bodies are bounded) and
 * ends with dumpEnd, which deletes it. A dump nobody reads for DUMP_IDLE_MS is
 * deleted too, and copies a crashed meta left behind are removed at the next
 * dumpStart.
 */
import { createHash, randomBytes } from 'node:crypto'
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fsError } from '../common/errors'
import type { MetaParsed, MetaReplies } from '../common/protocol'
import type { MetaEnv } from './context'
import { openReadOnly } from './sqlite'
import { vacuumInto } from './vacuum-into'

const DUMP_IDLE_MS = 10 * 60_000

interface Dump {
  path: string
  size: number
  file: FileHandle
  timer: NodeJS.Timeout
}

const dumps = new WeakMap<MetaEnv, Map<string, Dump>>()

function dumpsOf(env: MetaEnv): Map<string, Dump> {
  let m = dumps.get(env)
  if (!m) dumps.set(env, (m = new Map()))
  return m
}

async function databaseFile(env: MetaEnv): Promise<string> {
  const rows = await env.db.read.all<{ name: string; file: string }>('PRAGMA database_list')
  const file = rows.find((r) => r.name === 'main')?.file
  if (!file) throw fsError('ENOSYS', 'meta runs on an in-memory database: nothing to dump')
  return file
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  const f = await open(path)
  try {
    for await (const part of f.createReadStream()) h.update(part as Buffer)
  } finally {
    await f.close().catch(() => undefined)
  }
  return h.digest('hex')
}

function forget(env: MetaEnv, id: string): Promise<void> {
  const d = dumpsOf(env).get(id)
  if (!d) return Promise.resolve()
  dumpsOf(env).delete(id)
  clearTimeout(d.timer)
  return d.file.close().catch(() => undefined).then(() => rm(d.path, { force: true }))
}

function idleTimer(env: MetaEnv, id: string): NodeJS.Timeout {
  const timer = setTimeout(() => void forget(env, id), DUMP_IDLE_MS)
  timer.unref()
  return timer
}

/** Every read restarts the idle clock. */
function armIdle(env: MetaEnv, id: string, d: Dump): void {
  clearTimeout(d.timer)
  d.timer = idleTimer(env, id)
}

export async function dumpStart(env: MetaEnv): Promise<MetaReplies['dumpStart']> {
  const db = await databaseFile(env)
  const prefix = `${basename(db)}.dump-`
  const live = new Set([...dumpsOf(env).values()].map((d) => basename(d.path)))
  for (const name of await readdir(dirname(db))) {
    if (name.startsWith(prefix) && !live.has(name)) await rm(join(dirname(db), name), { force: true })
  }
  const id = randomBytes(8).toString('hex')
  const path = `${db}.dump-${id}`
  let schemaVersion: number
  const at = Date.now()
  try {
    await vacuumInto(db, path)
    const copy = await openReadOnly(path)
    try {
      schemaVersion = (await copy.get<{ user_version: number }>('PRAGMA user_version'))?.user_version ?? 0
    } finally {
      await copy.close()
    }
  } catch (err) {
    await rm(path, { force: true })
    throw err
  }
  const size = (await stat(path)).size
  const sha256 = await sha256File(path)
  const d: Dump = { path, size, file: await open(path), timer: idleTimer(env, id) }
  dumpsOf(env).set(id, d)
  return { id, size, sha256, schemaVersion, at }
}

export async function dumpRead(env: MetaEnv, b: MetaParsed<'dumpRead'>): Promise<MetaReplies['dumpRead']> {
  const d = dumpsOf(env).get(b.id)
  if (!d) throw fsError('ENOENT', `no dump ${b.id} (ended, or idle for more than ${DUMP_IDLE_MS / 60_000} minutes)`)
  armIdle(env, b.id, d)
  const len = Math.max(0, Math.min(b.length, d.size - b.offset))
  const buf = Buffer.alloc(len)
  let got = 0
  while (got < len) {
    const { bytesRead } = await d.file.read(buf, got, len - got, b.offset + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return { data: buf.subarray(0, got), eof: b.offset + got >= d.size }
}

export async function dumpEnd(env: MetaEnv, b: MetaParsed<'dumpEnd'>): Promise<MetaReplies['dumpEnd']> {
  await forget(env, b.id)
  return {}
}
