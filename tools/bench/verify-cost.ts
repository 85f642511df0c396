/**
 * The cost of end-to-end read verification, measured in one run on one cluster
 * (nats-server + 3 nodes in a temp dir, R=2), rounds alternating so machine
 * load hits both sides alike:
 *
 *   rand 4 KiB  unverified: a Range GET of exactly 4 KiB (the read path before
 *               verification); verified: BlockClient.get with the chunk's piece
 *               sums (the covering 64 KiB piece fetched, CRC32 checked, 4 KiB cut)
 *   seq block   unverified: GET of a whole 4 MiB block, no check; verified:
 *               BlockClient.get (SHA-256 of the block, as every whole-block read does)
 *
 * Client CPU is process.cpuUsage() (user+system) of this process over each
 * phase, per operation. Figures are medians over --rounds.
 *
 *   node dist/tools/bench/verify-cost.js [--blocks 32] [--reads 2000] [--depth 4] [--rounds 3]
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BlockClient, NodeHttp, type BlockTarget } from '../../common/block-client'
import { connectNats } from '../../common/nats-connect'
import { launchNatsServer } from '../../cli/nats-server'
import { spawnService, type ServiceHandle } from '../../cli/spawn-service'

const BLOCK = 4 * 1024 * 1024

interface Sample {
  opsPerS: number
  mbPerS: number
  cpuUsPerOp: number
}

async function pool(n: number, depth: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(depth, n) }, async () => {
      while (next < n) await fn(next++)
    }),
  )
}

async function measure(ops: number, bytesPerOp: number, depth: number, fn: (i: number) => Promise<void>): Promise<Sample> {
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  await pool(ops, depth, fn)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  return { opsPerS: ops / s, mbPerS: (ops * bytesPerOp) / 1e6 / s, cpuUsPerOp: (cpu.user + cpu.system) / ops }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      blocks: { type: 'string', default: '32' },
      reads: { type: 'string', default: '2000' },
      depth: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '3' },
    },
  })
  const nBlocks = Number(values.blocks)
  const reads = Number(values.reads)
  const depth = Number(values.depth)
  const rounds = Number(values.rounds)
  const dir = mkdtempSync(join(tmpdir(), 'berth-bench-verify-'))
  const nats = await launchNatsServer({ dir: join(dir, 'nats') })
  const secret = randomBytes(24).toString('base64url')
  const nodes: ServiceHandle[] = []
  const rows = new Map<string, Sample[]>()
  try {
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await spawnService(['node', '--nats', nats.url, '--dir', join(dir, `node${i}`), '--listen', '127.0.0.1:0', '--scrub-interval-ms', '0'], {
          env: { BERTH_NATS_USER: nats.users.node.user, BERTH_NATS_PASS: nats.users.node.pass, BERTH_SECRET: secret, BERTH_LOG: 'warn' },
        }),
      )
    }
    const nc = await connectNats({ url: nats.url, name: 'bench-verify', ...nats.users.client })
    const bc = new BlockClient(nc, { cluster: 'berth', token: secret, replicas: 2, deadlineMs: 60_000 })
    await bc.start()
    while (bc.liveNodes().size < 3) await new Promise((r) => setTimeout(r, 100))
    const raw = new NodeHttp(secret)
    const stored: Array<{ hash: string; nodes: string[]; sums: Uint8Array; first: BlockTarget }> = []
    for (let i = 0; i < nBlocks; i++) {
      const r = await bc.put(randomBytes(BLOCK))
      const id = r.nodes[0]!
      stored.push({ ...r, first: { id, url: bc.liveNodes().get(id)! } })
    }
    // the same pseudo-random offsets for both sides
    const offsets = Array.from({ length: reads }, (_, i) => ({ b: (i * 7919) % nBlocks, off: ((i * 104729) % (BLOCK / 4096)) * 4096 }))
    const phases: Array<[string, () => Promise<Sample>]> = [
      ['rand 4 KiB unverified', () => measure(reads, 4096, depth, async (i) => {
        const { b, off } = offsets[i]!
        const s = stored[b]!
        await raw.get(s.first, s.hash, { start: off, end: off + 4095 }, 60_000)
      })],
      ['rand 4 KiB verified', () => measure(reads, 4096, depth, async (i) => {
        const { b, off } = offsets[i]!
        const s = stored[b]!
        await bc.get(s.hash, s.nodes, { offset: off, length: 4096, sums: s.sums })
      })],
      ['rand 64 KiB unverified', () => measure(reads, 4096, depth, async (i) => {
        const { b, off } = offsets[i]!
        const s = stored[b]!
        const start = off - (off % 65536)
        await raw.get(s.first, s.hash, { start, end: start + 65535 }, 60_000)
      })],
      ['seq 4 MiB unverified', () => measure(nBlocks, BLOCK, depth, async (i) => {
        const s = stored[i]!
        await raw.get(s.first, s.hash, null, 60_000)
      })],
      ['seq 4 MiB verified', () => measure(nBlocks, BLOCK, depth, async (i) => {
        const s = stored[i]!
        await bc.get(s.hash, s.nodes)
      })],
    ]
    for (let round = 0; round < rounds; round++) {
      // odd rounds run each pair the other way round, so order effects cancel
      const order = round % 2 === 0 ? phases : [...phases].reverse()
      for (const [name, run] of order) rows.set(name, [...(rows.get(name) ?? []), await run()])
    }
    await raw.close()
    await bc.close()
    await nc.close()
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await nats.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  process.stdout.write(`\n${nBlocks} blocks of 4 MiB, ${reads} random reads, depth ${depth}, median of ${rounds} rounds\n\n`)
  process.stdout.write(`${'phase'.padEnd(24)} ${'ops/s'.padStart(8)} ${'MB/s'.padStart(8)} ${'CPU us/op'.padStart(10)}\n`)
  for (const [name, samples] of rows) {
    const m = (k: keyof Sample) => median(samples.map((s) => s[k]))
    process.stdout.write(`${name.padEnd(24)} ${m('opsPerS').toFixed(0).padStart(8)} ${m('mbPerS').toFixed(1).padStart(8)} ${m('cpuUsPerOp').toFixed(0).padStart(10)}\n`)
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench verify-cost: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  })
}
