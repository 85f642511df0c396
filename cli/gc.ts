/**
 * `berth gc`: what block GC and orphan collection would reclaim now, from
 * meta's own accounting (gcPlan) and every live node's inventory as meta
 * classifies it (the `inventory` operation fsck uses); `--run` has meta run
 * its GC pass and a full reconciliation pass now (gcRun) and reports what
 * they removed. No GC logic lives here.
 */
import { parseArgs } from 'node:util'
import type { MetaClient } from '../common/meta-client'
import { MAX_PAGE, type GcPlan, type GcRunReport } from '../common/protocol'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'
import { Progress } from './progress'
import { bytes } from './status'

const HELP = `usage: berth gc [--run] [--quick] [--json] [--no-progress] [connection options]
Shows what meta's block GC would delete now (unreferenced, unpinned blocks past
--gc-grace-ms), what waits in the grace period or is pinned by uploads, and
orphan copies on the nodes (blocks meta does not know; collected once idle
longer than meta's --orphan-age-ms). Deleted copies go to each node's trash
(kept --trash-hours).
  --run                run a GC pass and a full reconciliation pass now, and report what they removed
  --quick              skip the scan of the nodes' inventories for orphans
  --json               machine-readable report on stdout
  --no-progress        no progress on stderr while scanning inventories
${CONNECTION_HELP}

Exit status: 0 on success, 1 when the cluster cannot be reached or the pass failed, 2 on bad usage.
`

export interface OrphanScan {
  /** Copies of blocks meta does not know, on live nodes. */
  copies: number
  bytes: number
  /** Those idle longer than the orphan age: the next reconciliation pass deletes them. */
  due: { copies: number; bytes: number }
  nodes: number
}

export interface GcReport {
  plan: GcPlan
  orphans: OrphanScan | null
  run: GcRunReport | null
}

async function scanOrphans(meta: MetaClient, orphanAgeMs: number, showProgress: boolean): Promise<OrphanScan> {
  const hello = await meta.call('hello', {})
  const live = hello.nodes.filter((n) => n.alive)
  const total = { files: live.reduce((a, n) => a + n.blocks, 0), bytes: live.reduce((a, n) => a + n.used, 0) }
  const progress = new Progress({ label: 'gc: scanning inventories', enabled: showProgress, total, unit: 'copies' })
  const scan: OrphanScan = { copies: 0, bytes: 0, due: { copies: 0, bytes: 0 }, nodes: live.length }
  const seen = { files: 0, bytes: 0 }
  try {
    for (const node of live) {
      let after = ''
      for (;;) {
        const page = await meta.call('inventory', { node: node.id, after, limit: MAX_PAGE })
        for (const e of page.entries) {
          seen.files++
          seen.bytes += e.size
          if (e.state !== 'orphan') continue
          scan.copies++
          scan.bytes += e.size
          if (e.age >= orphanAgeMs) {
            scan.due.copies++
            scan.due.bytes += e.size
          }
        }
        progress.update(seen)
        const last = page.entries[page.entries.length - 1]
        if (!page.more || !last) break
        after = last.hash
      }
    }
  } finally {
    progress.done()
  }
  return scan
}

function duration(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`
  return `${(ms / 3_600_000).toFixed(1)} h`
}

export function formatGc(r: GcReport): string {
  const p = r.plan
  const lines = [
    `block GC (grace ${duration(p.graceMs)}): ${p.due.blocks} block(s), ${bytes(p.due.bytes)} due now`,
    `  in grace: ${p.inGrace.blocks} block(s), ${bytes(p.inGrace.bytes)}${p.inGrace.nextDueAt ? `, first due in ${duration(Math.max(0, p.inGrace.nextDueAt - Date.now()))}` : ''}`,
    `  pinned by uploads not committed yet: ${p.pinned.blocks} block(s), ${bytes(p.pinned.bytes)}`,
  ]
  if (r.orphans) {
    const o = r.orphans
    lines.push(`orphans (age limit ${duration(p.orphanAgeMs)}) on ${o.nodes} live node(s): ${o.copies} copy(ies), ${bytes(o.bytes)}; past the age limit: ${o.due.copies}, ${bytes(o.due.bytes)}`)
  } else lines.push('orphans: not scanned (--quick)')
  if (r.run) {
    const x = r.run
    lines.push(
      `run: GC removed ${x.blocks} block(s), ${bytes(x.bytes)}; reconciliation moved ${x.orphansDeleted} orphan copy(ies) to trash` +
        `${x.orphansKept ? ` (${x.orphansKept} kept: PUT since)` : ''}, replica rows -${x.rowsRemoved} +${x.rowsAdded}`,
    )
  }
  return lines.join('\n') + '\n'
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      run: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'no-progress': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help || positionals.length > 0) {
    process.stdout.write(HELP)
    if (!values.help) process.exitCode = 2
    return
  }
  const { nc, meta } = await connectClient(values, 'berth-gc', 30_000)
  try {
    const report: GcReport = { plan: await meta.call('gcPlan', {}), orphans: null, run: null }
    if (!values.quick) report.orphans = await scanOrphans(meta, report.plan.orphanAgeMs, !values['no-progress'])
    // a pass over big inventories takes a while: the call waits for it (retries join the same run)
    if (values.run) report.run = await meta.call('gcRun', {}, { deadlineMs: 30 * 60_000 })
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatGc(report))
  } finally {
    await nc.close()
  }
}
