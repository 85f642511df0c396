/**
 * Block data-plane benchmark: PUT and GET throughput through BlockClient with
 * R=2 over 3 data nodes on a cluster it starts itself (nats-server + nodes in a
 * temp dir), next to the same machine's local disk doing the same bytes
 * (write + fsync per block, then read back).
 *
 *   node dist/tools/bench/blocks.js [--total-mib 256] [--block-mib 4] [--inflight 4] [--replicas 2] [--dir DIR]
 *
 * Every byte goes through the kernel page cache on both sides, so GET and local
 * read figures are warm-cache numbers; PUT counts logical bytes (R=2 writes each
 * block twice on this one disk). The berth rows also say what CPU the client
 * (this process) and the three nodes together spent per GiB moved: on a host
 * where all of them share the cores, that is what bounds the rate.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BlockClient } from '../../common/block-client'
import { connectNats } from '../../common/nats-connect'
import { launchNatsServer } from '../../cli/nats-server'
import { spawnService, type ServiceHandle } from '../../cli/spawn-service'

interface Result {
  what: string
  mbps: number
  seconds: number
  /** CPU seconds per GiB moved: this process (the client) and the data nodes together; absent for the local rows. */
  clientCpu?: number
  nodesCpu?: number
}

/** User + system CPU seconds a process has used so far (all its threads), from /proc. */
function procCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ 100)
}

/** `timed`, with the CPU the client and `pids` spent, per GiB. */
async function timedCpu(what: string, bytes: number, pids: number[], fn: () => Promise<void>): Promise<Result> {
  const client0 = process.cpuUsage()
  const nodes0 = pids.reduce((sum, pid) => sum + procCpu(pid), 0)
  const r = await timed(what, bytes, fn)
  const client = process.cpuUsage(client0)
  const gib = bytes / 2 ** 30
  r.clientCpu = (client.user + client.system) / 1e6 / gib
  r.nodesCpu = (pids.reduce((sum, pid) => sum + procCpu(pid), 0) - nodes0) / gib
  return r
}

async function pool<T>(items: T[], inflight: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(inflight, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!)
    }),
  )
}

async function timed(what: string, bytes: number, fn: () => Promise<void>): Promise<Result> {
  const t0 = process.hrtime.bigint()
  await fn()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  return { what, seconds, mbps: bytes / 1e6 / seconds }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'total-mib': { type: 'string', default: '256' },
      'block-mib': { type: 'string', default: '4' },
      inflight: { type: 'string', default: '4' },
      replicas: { type: 'string', default: '2' },
      dir: { type: 'string' },
    },
  })
  const blockBytes = Number(values['block-mib']) * 1024 * 1024
  const count = Math.max(1, Math.round((Number(values['total-mib']) * 1024 * 1024) / blockBytes))
  const inflight = Number(values.inflight)
  const replicas = Number(values.replicas)
  const dir = values.dir ?? mkdtempSync(join(tmpdir(), 'berth-bench-blocks-'))
  const total = count * blockBytes

  const blocks = Array.from({ length: count }, () => randomBytes(blockBytes))
  const hashes = blocks.map((b) => createHash('sha256').update(b).digest('hex'))
  const results: Result[] = []

  // Local disk: the same bytes, one file per block, write + fsync, then read.
  const localDir = mkdtempSync(join(dir, 'local-'))
  results.push(
    await timed('local disk write+fsync', total, () =>
      pool(blocks.map((b, i) => [b, i] as const), inflight, async ([b, i]) => {
        const fh = await open(join(localDir, String(i)), 'w')
        await fh.writeFile(b)
        await fh.sync()
        await fh.close()
      }),
    ),
  )
  results.push(
    await timed('local disk read', total, () =>
      pool(blocks.map((_, i) => i), inflight, async (i) => {
        await readFile(join(localDir, String(i)))
      }),
    ),
  )
  rmSync(localDir, { recursive: true, force: true })

  const nats = await launchNatsServer({ dir: join(dir, 'nats') })
  const secret = randomBytes(24).toString('base64url')
  const nodes: ServiceHandle[] = []
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await spawnService(['node', '--nats', nats.url, '--dir', join(dir, `node${i}`), '--listen', '127.0.0.1:0', '--scrub-interval-ms', '0'], {
          env: { BERTH_NATS_USER: nats.users.node.user, BERTH_NATS_PASS: nats.users.node.pass, BERTH_SECRET: secret, BERTH_LOG: 'warn' },
        }),
      )
    }
    const nc = await connectNats({ url: nats.url, name: 'bench-blocks', ...nats.users.client })
    const bc = new BlockClient(nc, { cluster: 'berth', token: secret, replicas, deadlineMs: 60_000 })
    await bc.start()
    while (bc.liveNodes().size < 3) await new Promise((r) => setTimeout(r, 100))
    const pids = nodes.map((n) => n.pid)
    const where: string[][] = new Array(count)
    results.push(
      await timedCpu(`berth PUT (R=${replicas}, 3 nodes)`, total, pids, () =>
        pool(blocks.map((b, i) => [b, i] as const), inflight, async ([b, i]) => {
          where[i] = (await bc.put(b, hashes[i])).nodes
        }),
      ),
    )
    results.push(
      await timedCpu('berth GET (hash verified)', total, pids, () =>
        pool(hashes.map((h, i) => [h, i] as const), inflight, async ([h, i]) => {
          await bc.get(h, where[i]!)
        }),
      ),
    )
    await bc.close()
    await nc.close()
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await nats.stop()
    if (!values.dir) rmSync(dir, { recursive: true, force: true })
  }

  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`
  process.stdout.write(`\nblocks: ${count} x ${mib(blockBytes)} = ${mib(total)}, ${inflight} in flight\n\n`)
  process.stdout.write(`${'operation'.padEnd(34)} ${'MB/s'.padStart(8)} ${'seconds'.padStart(8)} ${'client CPU-s/GiB'.padStart(17)} ${'nodes CPU-s/GiB'.padStart(16)}\n`)
  const cpu = (v: number | undefined, width: number) => (v === undefined ? '' : v.toFixed(2)).padStart(width)
  for (const r of results) {
    process.stdout.write(`${r.what.padEnd(34)} ${r.mbps.toFixed(0).padStart(8)} ${r.seconds.toFixed(2).padStart(8)} ${cpu(r.clientCpu, 17)} ${cpu(r.nodesCpu, 16)}\n`)
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench blocks: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  })
}
