/**
 * `berth status`: the cluster as meta sees it. Human table by default,
 * `--json` for scripts. Without --nats it reads ./.berth/client.env (written by
 * `berth up`).
 */
import { parseArgs } from 'node:util'
import { BerthError } from '../common/errors'
import type { ReplicationReport, StatusReply } from '../common/protocol'
import { CONNECTION_HELP, CONNECTION_OPTIONS, connectClient } from './client-connection'

const HELP = `usage: berth status [--json] [--watch [SECONDS]] [connection options]
${CONNECTION_HELP}
  --json               machine-readable output (with --watch: one JSON object per line)
  --watch [SECONDS]    repeat every SECONDS (default 2) until interrupted; on a
                       terminal the screen is redrawn in place

Exit status: 0 when meta answered, 1 when the cluster cannot be reached (the
reason and a hint on stderr), 2 on bad usage.
`

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...CONNECTION_OPTIONS,
      json: { type: 'boolean', default: false },
      watch: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const everyS = watchInterval(values.watch, positionals)
  const { nc, meta } = await connectClient(values, 'berth-status')
  try {
    if (everyS === null) {
      const status = await meta.call('status', {})
      process.stdout.write(values.json ? JSON.stringify(status, null, 2) + '\n' : formatStatus(status))
      return
    }
    // --watch: until SIGINT/SIGTERM; a failed poll is shown and the next one tried
    let stop = false
    let wake: () => void = () => undefined
    const quit = () => {
      stop = true
      wake()
    }
    process.once('SIGINT', quit)
    process.once('SIGTERM', quit)
    const tty = process.stdout.isTTY === true && !values.json
    while (!stop) {
      let text: string
      try {
        const status = await meta.call('status', {})
        text = values.json ? JSON.stringify({ at: Date.now(), ...status }) + '\n' : formatStatus(status)
      } catch (err) {
        text = values.json ? JSON.stringify({ at: Date.now(), error: (err as Error).message }) + '\n' : `status failed: ${(err as Error).message}\n`
      }
      // a terminal gets the screen redrawn in place; a pipe or file a stream of reports
      process.stdout.write(tty ? `\x1b[H\x1b[2J${new Date().toISOString()}  every ${everyS} s (Ctrl-C to stop)\n${text}` : values.json ? text : `--- ${new Date().toISOString()}\n${text}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, everyS * 1000)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  } finally {
    await nc.close()
  }
}

/** Seconds between reports for --watch [SECONDS], null without --watch. */
function watchInterval(watch: boolean, positionals: string[]): number | null {
  if (!watch) {
    if (positionals.length) throw new BerthError('EINVAL', `unexpected argument "${positionals[0]}"\n\n${HELP}`)
    return null
  }
  if (positionals.length > 1) throw new BerthError('EINVAL', `--watch takes one interval, got ${positionals.join(' ')}`)
  const raw = positionals[0]
  if (raw === undefined) return 2
  const s = Number(raw)
  if (!Number.isFinite(s) || s < 0.2 || s > 3600) throw new BerthError('EINVAL', `--watch SECONDS must be a number in 0.2..3600, got "${raw}"`)
  return s
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

/** The leader, its lease age, the log and snapshot, then one line per replica with its lag. */
export function formatReplication(leader: string, r: ReplicationReport): string[] {
  const log = `log ${r.logFirstSeq !== undefined ? `${r.logFirstSeq}..` : 'up to '}${r.lastLogSeq}`
  const snap = r.snapshotSeq ? `, snapshot at ${r.snapshotSeq}` : ''
  const to = r.appendsTo ? `; appends to ${r.appendsTo}` : ''
  return [
    `replicated (--ha): ${leader} leads, lease held ${(r.leaseAgeMs / 1000).toFixed(1)} s; ${log}${snap}${to}`,
    ...(r.replicas ?? []).map((p) => `  replica ${p.metaId}  ${p.role.padEnd(8)}  applied ${p.applied}  lag ${p.lag}  (reported ${(p.seenMsAgo / 1000).toFixed(1)} s ago)`),
  ]
}

export function formatStatus(s: StatusReply): string {
  const rows = [['NODE', 'ZONE', 'URL', 'STATE', 'BLOCKS', 'USED', 'CAPACITY', 'LAST SEEN']]
  const now = Date.now()
  for (const n of s.nodes) {
    // a node whose disk hangs says so in its last heartbeat: "dead" alone would send the operator to the process
    const dead = n.down ? 'down, disk hangs' : 'dead'
    rows.push([n.id, n.zone ?? '-', n.url, n.alive ? (n.admin ? `${n.admin} (${n.state})` : n.state) : n.admin ? `${dead}, ${n.admin}` : dead, String(n.blocks), bytes(n.used), bytes(n.capacity), `${((now - n.seen) / 1000).toFixed(1)}s ago`])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')
  const live = s.nodes.filter((n) => n.alive).length
  return [
    `meta ${s.metaId}, up since ${new Date(s.startedAt).toISOString()}`,
    ...(s.replication ? formatReplication(s.metaId, s.replication) : []),
    `nodes: ${live} live of ${s.nodes.length}`,
    table,
    `inodes: ${s.inodes}  blocks: ${s.blocks} (${bytes(s.bytes)})  under-replicated: ${s.underReplicated}  below R=${s.replicas}: ${s.belowR}${s.belowR > s.underReplicated ? ' (too few live nodes to hold R copies)' : ''}${s.censusAgeMs >= 5000 ? ` (counted ${Math.round(s.censusAgeMs / 1000)} s ago)` : ''}`,
    formatRepair(s),
    ...(s.rebalance ? [`rebalance: ${bytes(s.rebalance.bytes)} from ${s.rebalance.from} to ${s.rebalance.to}, ${s.rebalance.etaS === null ? 'waiting' : `ETA ${Math.ceil(s.rebalance.etaS)} s`}`] : []),
    ...(s.sameZone ? [`zones: ${s.sameZone} block(s) have every copy in one zone`] : []),
    ...s.drains.map((d) => `drain ${d.node}: ${d.blocks === 0 ? 'drained (berth node decommission ' + d.node + ')' : `${d.blocks} block(s), ${bytes(d.bytes)} left, ${d.etaS === null ? 'no progress in the last 30 s' : `ETA ${Math.ceil(d.etaS)} s`}`}`),
    `sessions: ${s.sessions}  open files: ${s.openFiles}`,
    '',
  ].join('\n')
}

function formatRepair(s: StatusReply): string {
  const r = s.repair
  if (!r.blocks && !r.parked) return 'repair: idle'
  const eta = r.etaS === null ? 'no progress in the last 30 s' : `ETA ${Math.ceil(r.etaS)} s`
  return `repair: ${r.blocks} block(s) queued (<= ${bytes(r.bytes)})  ${bytes(r.rate)}/s  ${eta}${r.parked ? `  parked below R: ${r.parked}` : ''}`
}
