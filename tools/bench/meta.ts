/**
 * Metadata benchmark: create (mknod), getattr, unlink, mkdir and rmdir operations per second over
 * NATS against a `berth meta` it starts itself (nats-server + meta in a temp
 * dir, no data nodes), at concurrency 1 and 16; beside it the same machine's
 * local disk doing the nearest equivalent (create an empty file; stat).
 *
 *   node dist/tools/bench/meta.js [--count 2000] [--dir DIR] [--ha] [--mount] [--rounds N]
 *
 * --ha adds the same rows against replicated meta (3 clustered nats-servers,
 * 2 metas, log and lease replicated 3 ways) in the same run, and their ratio.
 * Both shapes run side by side; --rounds N repeats every phase N times,
 * alternating which shape goes first, and reports each row's median.
 *
 * --mount adds, for each shape, the same through FUSE: `berth mount` A creates
 * empty files (open O_EXCL + close: one mknod-with-open and a batched release),
 * and a second mount B, whose caches have never seen those names, stats each
 * (one lookup per file reaches meta; a stat on A would be served from A's
 * caches and measure nothing of meta). libuv's pool is widened to 16 threads
 * so concurrency 16 really has 16 syscalls in flight.
 *
 * Every meta create is a committed transaction (WAL; with meta's default
 * --sync normal it survives kill -9 of meta but is not fsynced per commit, see
 * docs/meta.md#durability); "local create" is the like-for-like row, "local
 * create+fsync" what --sync full compares with.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { mkdir, open, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MetaClient } from '../../common/meta-client'
import { connectNats } from '../../common/nats-connect'
import { ROOT_INO } from '../../common/protocol'
import { launchNatsCluster, launchNatsServer, type NatsUsers } from '../../cli/nats-server'
import { spawnService, type ServiceHandle } from '../../cli/spawn-service'

// before the first fs call: the pool is sized when first used (--mount's concurrency 16)
process.env.UV_THREADPOOL_SIZE ??= '16'

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

/** `berth mount --foreground` on a fresh directory; the stop unmounts (and `fusermount3 -uz` if the client died). */
async function mount(setup: Setup, dir: string, stops: Array<() => Promise<unknown>>): Promise<string> {
  mkdirSync(dir, { recursive: true })
  stops.unshift(async () => spawnSync('fusermount3', ['-uz', dir], { stdio: 'ignore' }))
  const env = { BERTH_NATS_USER: setup.users.client.user, BERTH_NATS_PASS: setup.users.client.pass, BERTH_LOG: 'warn' }
  const client: ServiceHandle = await spawnService(['mount', setup.url, dir, '--foreground', '--cluster', 'berth'], { env, readyTimeoutMs: 60_000 })
  stops.unshift(() => client.stop())
  return dir
}

/** One running shape: its metas, a client, and (--mount) mount A that creates and mount B that stats. */
interface Target {
  label: string
  m: MetaClient
  mounts: { a: string; b: string } | null
}

async function startTarget(label: string, setup: Setup, mountDir: string | null, stops: Array<() => Promise<unknown>>): Promise<Target> {
  stops.unshift(() => setup.stop())
  const env = { BERTH_NATS_USER: setup.users.meta.user, BERTH_NATS_PASS: setup.users.meta.pass, BERTH_SECRET: 'b'.repeat(32), BERTH_LOG: 'warn' }
  for (const args of setup.metaArgs) {
    const meta = await spawnService(['meta', '--nats', setup.url, ...args], { env, readyTimeoutMs: 60_000 })
    stops.unshift(() => meta.stop())
  }
  const nc = await connectNats({ url: setup.url, name: 'bench-meta', ...setup.users.client })
  stops.unshift(() => nc.close())
  const m = new MetaClient(nc, { cluster: 'berth', deadlineMs: 60_000 })
  const mounts = mountDir ? { a: await mount(setup, join(mountDir, 'a'), stops), b: await mount(setup, join(mountDir, 'b'), stops) } : null
  return { label, m, mounts }
}

/** One workload at one concurrency on one target; returns ops/s. Each call works in a directory of its own. */
type Phase = { what: string; concurrency: number; run: (t: Target, count: number, tag: string) => Promise<number> }

/** Phases that go together (a create, then what reads or removes what it made), run on one target after the other. */
function phases(withMount: boolean): Phase[][] {
  const out: Phase[][] = []
  const inos = new Map<string, number[]>()
  const dirs = new Map<string, number>()
  for (const concurrency of [1, 16]) {
    const dirOf = (t: Target, tag: string) => dirs.get(`${t.label}/${tag}`)!
    out.push([
      {
        what: 'create (mknod)',
        concurrency,
        run: async (t, count, tag) => {
          const d = (await t.m.call('mkdir', { parent: ROOT_INO, name: tag, mode: 0o755, uid: 0, gid: 0 })).attr
          const got: number[] = []
          inos.set(`${t.label}/${tag}`, got)
          dirs.set(`${t.label}/${tag}`, d.ino)
          return pool(count, concurrency, async (i) => {
            got[i] = (await t.m.call('mknod', { parent: d.ino, name: `f${i}`, mode: 0o100644, uid: 0, gid: 0 })).attr.ino
          })
        },
      },
      { what: 'getattr', concurrency, run: (t, count, tag) => pool(count, concurrency, (i) => t.m.call('getattr', { ino: inos.get(`${t.label}/${tag}`)![i]! })) },
      { what: 'unlink', concurrency, run: (t, count, tag) => pool(count, concurrency, (i) => t.m.call('unlink', { parent: dirOf(t, tag), name: `f${i}` })) },
      {
        what: 'mkdir',
        concurrency,
        run: (t, count, tag) => pool(count, concurrency, (i) => t.m.call('mkdir', { parent: dirOf(t, tag), name: `d${i}`, mode: 0o755, uid: 0, gid: 0 })),
      },
      { what: 'rmdir', concurrency, run: (t, count, tag) => pool(count, concurrency, (i) => t.m.call('rmdir', { parent: dirOf(t, tag), name: `d${i}` })) },
    ])
    if (!withMount) continue
    out.push([{
      what: 'mount create',
      concurrency,
      run: async (t, count, tag) => {
        await mkdir(join(t.mounts!.a, `m${tag}`))
        return pool(count, concurrency, async (i) => (await open(join(t.mounts!.a, `m${tag}`, `f${i}`), 'wx')).close())
      },
    },
    { what: 'mount stat', concurrency, run: (t, count, tag) => pool(count, concurrency, (i) => stat(join(t.mounts!.b, `m${tag}`, `f${i}`))) }])
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/**
 * Every round runs each phase on every target in turn, the order of the
 * targets alternating between rounds, so a change of the machine's load hits
 * both shapes alike; each row is the median of its rounds. (The shape not
 * being measured sits idle meanwhile: its timers and heartbeats are small.)
 */
async function measure(targets: Target[], count: number, rounds: number, withMount: boolean, rows: Row[]): Promise<void> {
  const samples = new Map<string, number[]>()
  const groups = phases(withMount)
  const list = groups.flat()
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...targets].reverse() : targets
    for (const group of groups) {
      // a create and the reads and removals of what it made go together, on one target after the other
      for (const t of order) {
        for (const p of group) {
          const tag = `r${r}c${p.concurrency}`
          const key = `${t.label} ${p.what}|${p.concurrency}`
          samples.set(key, [...(samples.get(key) ?? []), await p.run(t, count, tag)])
        }
      }
    }
  }
  for (const t of targets) for (const p of list) {
    const key = `${t.label} ${p.what}|${p.concurrency}`
    rows.push({ what: `${t.label} ${p.what}`, concurrency: p.concurrency, opsPerSec: median(samples.get(key)!) })
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '2000' }, dir: { type: 'string' }, ha: { type: 'boolean', default: false }, mount: { type: 'boolean', default: false }, rounds: { type: 'string', default: '1' } } })
  const count = Number(values.count)
  if (!Number.isInteger(count) || count < 1) throw new Error('--count must be a positive integer')
  const rounds = Number(values.rounds)
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer')
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'berth-bench-meta-'))
  const rows: Row[] = []
  try {
    // mountpoints outside `dir`, so removing it never walks into a mount
    const mounts = values.mount ? mkdtempSync(join(tmpdir(), 'berth-bench-mnt-')) : null
    const stops: Array<() => Promise<unknown>> = []
    try {
      const targets = [await startTarget('meta', await single(join(dir, 'single')), mounts && join(mounts, 'single'), stops)]
      // --ha: replicated meta beside it, measured in the same rounds, and the ratio
      if (values.ha) targets.push(await startTarget('meta --ha', await replicated(join(dir, 'ha')), mounts && join(mounts, 'ha'), stops))
      await measure(targets, count, rounds, values.mount, rows)
    } finally {
      for (const stop of stops) await stop().catch(() => undefined)
      if (mounts) rmSync(mounts, { recursive: true, force: true })
    }

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
  process.stdout.write(`berth meta benchmark (${count} ops per row${rounds > 1 ? `, median of ${rounds} interleaved rounds` : ''}; local create+fsync ${Math.min(count, 500)})\n${lines.join('\n')}\n`)
  if (ratios.length) process.stdout.write(`--ha / single: ${ratios.join(', ')}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench meta: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
