/**
 * Metadata benchmark: create (mknod), getattr, unlink, mkdir and rmdir operations per second over
 * NATS against a `berth meta` it starts itself (nats-server + meta in a temp
 * dir, no data nodes), at concurrency 1 and 16; beside it the same machine's
 * local disk doing the nearest equivalent (create an empty file; stat).
 *
 *   node dist/tools/bench/meta.js [--count 2000] [--dir DIR] [--ha]
 *
 * --ha adds the same rows against replicated meta (3 clustered nats-servers,
 * 2 metas, log and lease replicated 3 ways) in the same run, and their ratio.
 *
 * Every meta create is a committed transaction (WAL; with meta's default
 * --sync normal it survives kill -9 of meta but is not fsynced per commit, see
 * docs/meta.md#durability); "local create" is the like-for-like row, "local
 * create+fsync" what --sync full compares with.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MetaClient } from '../../common/meta-client'
import { connectNats } from '../../common/nats-connect'
import { ROOT_INO } from '../../common/protocol'
import { launchNatsCluster, launchNatsServer, type NatsUsers } from '../../cli/nats-server'
import { spawnService } from '../../cli/spawn-service'

interface Row {
  what: string
  concurrency: number
  opsPerSec: number
}

async function pool(count: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0
  const t0 = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await fn(next++)
    }),
  )
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  return count / seconds
}

interface Setup {
  url: string
  users: NatsUsers
  metaArgs: string[][]
  stop: () => Promise<void>
}

/** One meta on one nats-server (today's default). */
async function single(dir: string): Promise<Setup> {
  const nats = await launchNatsServer({ dir: join(dir, 'nats') })
  return { url: nats.url, users: nats.users, metaArgs: [['--db', join(dir, 'meta', 'meta.db')]], stop: () => nats.stop() }
}

/** `berth up --ha`'s shape: 3 clustered nats-servers, 2 metas with --ha, log and lease replicated 3 ways. */
async function replicated(dir: string): Promise<Setup> {
  const nats = await launchNatsCluster({ dir: join(dir, 'nats'), n: 3 })
  const ha = ['--ha', '--log-replicas', '3']
  return { url: nats.url, users: nats.users, metaArgs: [['--db', join(dir, 'meta', 'a.db'), ...ha], ['--db', join(dir, 'meta', 'b.db'), ...ha]], stop: () => nats.stop() }
}

async function measureMeta(label: string, setup: Setup, count: number, rows: Row[]): Promise<void> {
  const stops: Array<() => Promise<unknown>> = [() => setup.stop()]
  try {
    const env = { BERTH_NATS_USER: setup.users.meta.user, BERTH_NATS_PASS: setup.users.meta.pass, BERTH_SECRET: 'b'.repeat(32), BERTH_LOG: 'warn' }
    for (const args of setup.metaArgs) {
      const meta = await spawnService(['meta', '--nats', setup.url, ...args], { env, readyTimeoutMs: 60_000 })
      stops.unshift(() => meta.stop())
    }
    const nc = await connectNats({ url: setup.url, name: 'bench-meta', ...setup.users.client })
    stops.unshift(() => nc.close())
    const m = new MetaClient(nc, { cluster: 'berth', deadlineMs: 60_000 })
    for (const concurrency of [1, 16]) {
      const d = (await m.call('mkdir', { parent: ROOT_INO, name: `c${concurrency}`, mode: 0o755, uid: 0, gid: 0 })).attr
      const inos: number[] = []
      const create = await pool(count, concurrency, async (i) => {
        inos[i] = (await m.call('mknod', { parent: d.ino, name: `f${i}`, mode: 0o100644, uid: 0, gid: 0 })).attr.ino
      })
      rows.push({ what: `${label} create (mknod)`, concurrency, opsPerSec: create })
      const getattr = await pool(count, concurrency, (i) => m.call('getattr', { ino: inos[i]! }))
      rows.push({ what: `${label} getattr`, concurrency, opsPerSec: getattr })
      const unlink = await pool(count, concurrency, (i) => m.call('unlink', { parent: d.ino, name: `f${i}` }))
      rows.push({ what: `${label} unlink`, concurrency, opsPerSec: unlink })
      const mkdir = await pool(count, concurrency, (i) => m.call('mkdir', { parent: d.ino, name: `d${i}`, mode: 0o755, uid: 0, gid: 0 }))
      rows.push({ what: `${label} mkdir`, concurrency, opsPerSec: mkdir })
      const rmdir = await pool(count, concurrency, (i) => m.call('rmdir', { parent: d.ino, name: `d${i}` }))
      rows.push({ what: `${label} rmdir`, concurrency, opsPerSec: rmdir })
    }
  } finally {
    for (const stop of stops) await stop().catch(() => undefined)
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '2000' }, dir: { type: 'string' }, ha: { type: 'boolean', default: false } } })
  const count = Number(values.count)
  if (!Number.isInteger(count) || count < 1) throw new Error('--count must be a positive integer')
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'berth-bench-meta-'))
  const rows: Row[] = []
  try {
    await measureMeta('meta', await single(join(dir, 'single')), count, rows)
    // --ha: the same operations against replicated meta, in the same run, and the ratio
    if (values.ha) await measureMeta('meta --ha', await replicated(join(dir, 'ha')), count, rows)

    for (const concurrency of [1, 16]) {
      const d = join(dir, 'local', `c${concurrency}`)
      mkdirSync(d, { recursive: true })
      rows.push({
        what: 'local create',
        concurrency,
        opsPerSec: await pool(count, concurrency, async (i) => (await open(join(d, `f${i}`), 'wx')).close()),
      })
      rows.push({ what: 'local stat', concurrency, opsPerSec: await pool(count, concurrency, (i) => stat(join(d, `f${i}`))) })
      rows.push({
        what: 'local create+fsync',
        concurrency,
        opsPerSec: await pool(Math.min(count, 500), concurrency, async (i) => {
          const fh = await open(join(d, `s${i}`), 'wx')
          await fh.sync()
          await fh.close()
        }),
      })
    }
  } finally {
    if (!values.dir) rmSync(dir, { recursive: true, force: true })
  }

  const w = Math.max(...rows.map((r) => r.what.length))
  const lines = [`${'operation'.padEnd(w)}  ${'conc'.padStart(4)}  ${'ops/s'.padStart(9)}`, `${'-'.repeat(w)}  ----  ---------`]
  for (const r of rows) lines.push(`${r.what.padEnd(w)}  ${String(r.concurrency).padStart(4)}  ${r.opsPerSec.toFixed(0).padStart(9)}`)
  const ratios = rows
    .filter((r) => r.what.startsWith('meta --ha '))
    .map((r) => {
      const base = rows.find((x) => x.what === r.what.replace('meta --ha ', 'meta ') && x.concurrency === r.concurrency)
      return base ? `${r.what.replace('meta --ha ', '')} c${r.concurrency}: ${(r.opsPerSec / base.opsPerSec).toFixed(2)}x` : ''
    })
    .filter(Boolean)
  process.stdout.write(`berth meta benchmark (${count} ops per row; local create+fsync ${Math.min(count, 500)})\n${lines.join('\n')}\n`)
  if (ratios.length) process.stdout.write(`--ha / single: ${ratios.join(', ')}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench meta: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
