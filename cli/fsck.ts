/**
 * `berth fsck`: is every block the namespace uses stored, intact, on the nodes
 * meta says hold it? Exit 0 when everything is, 1 when a replica is missing,
 * corrupt or unreachable (or the check could not run). Progress goes to stderr
 * so `--json` output on stdout stays clean for scripts.
 */
import { parseArgs } from 'node:util'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'
import { fsck, type FsckProgress, type FsckReport } from './fsck-scan'
import { intFlag } from '../common/flags'

const HELP = `usage: berth fsck [--json] [--quick] [--concurrency N] [connection options]
Checks every chunk's block on each of its replicas: present, and its content
hashes to its name; then pages every live node's inventory for orphans (copies
of blocks meta does not know) and copies meta does not list. Exit status 0 when
all is well, 1 otherwise (orphans alone are reported, not an error).
${CONNECTION_HELP}
  --quick              only ask whether each replica exists (HEAD), do not read and hash it
  --concurrency N      replicas checked at once (4)
  --json               machine-readable report on stdout
  --no-progress        no progress lines on stderr
`

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...CONNECTION_OPTIONS,
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      concurrency: { type: 'string', default: '4' },
      'no-progress': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const concurrency = intFlag('--concurrency', values.concurrency, 4, 1, 64)
  const { nc, meta } = await connectClient(values, 'berth-fsck', 30_000)
  const reporter = progressReporter(!values['no-progress'])
  let report: FsckReport
  try {
    report = await fsck(meta, { quick: values.quick, concurrency, timeoutMs: 60_000, onProgress: reporter.update })
  } finally {
    reporter.done()
    await nc.close()
  }
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report))
  if (!report.ok) process.exitCode = 1
}

/** A progress line on stderr at most every second (rewritten in place on a terminal). */
function progressReporter(enabled: boolean): { update: (p: FsckProgress) => void; done: () => void } {
  const tty = process.stderr.isTTY === true
  let last: FsckProgress | undefined
  let printed = false
  const print = () => {
    if (!last) return
    const p = last
    const line = p.phase === 'scan' ? `fsck: scanning: ${p.files} files, ${p.blocks} blocks` : `fsck: checking replicas: ${p.checked} done (${p.files} files, ${p.blocks} blocks)`
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`)
    printed = true
  }
  const timer = enabled ? setInterval(print, 1000) : undefined
  timer?.unref()
  return {
    update: (p) => {
      last = { ...p }
    },
    done: () => {
      if (timer) clearInterval(timer)
      if (printed && tty) process.stderr.write('\n')
    },
  }
}

export function formatReport(r: FsckReport): string {
  const lines = [
    `checked ${r.files} files in ${r.dirs} directories: ${r.chunks} chunks, ${r.blocks} blocks, ${r.replicasGood}/${r.replicasChecked} replicas good${r.quick ? ' (quick: existence only)' : ''}`,
  ]
  for (const p of r.problems) {
    lines.push(`${p.state.toUpperCase()} block ${p.hash} on node ${p.node}${p.url ? ` (${p.url})` : ''}: ${p.detail}; used by ${p.files.join(', ')}`)
  }
  if (r.lost.length > 0) lines.push(`LOST: ${r.lost.length} block(s) have no good replica; files using them cannot be read`)
  if (r.degraded.length > 0) lines.push(`DEGRADED: ${r.degraded.length} block(s) have fewer than ${r.replicas} good replicas`)
  for (const w of r.wrongRows.filter((w) => w.kind === 'no-row')) lines.push(`UNLISTED copy of block ${w.hash} on node ${w.node}: meta does not list it (reconciliation adds the row)`)
  if (r.wrongRows.length > 0) lines.push(`WRONG ROWS: ${r.wrongRows.length} replica row(s) do not match the nodes`)
  if (r.orphanCount > 0) lines.push(`orphans: ${r.orphanCount} copy(ies), ${r.orphanBytes} bytes of blocks meta does not know (collected after meta's --orphan-age-ms)`)
  lines.push(r.ok ? 'fsck: clean' : 'fsck: PROBLEMS FOUND', '')
  return lines.join('\n')
}
