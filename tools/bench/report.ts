/** Human table for `berth bench`: one row per workload, both figures, and DIR/local. */
import type { BenchResult } from './fs'

function figure(n: number): string {
  if (!Number.isFinite(n)) return String(n)
  if (n >= 100) return n.toFixed(0)
  if (n >= 10) return n.toFixed(1)
  return n.toPrecision(3)
}

/** Two decimals, but never a bare 0.00x (or 2648.95x) when one side is hundreds of times slower. */
function ratio(n: number): string {
  if (!Number.isFinite(n)) return String(n)
  if (n >= 100) return n.toFixed(0)
  return n >= 0.1 ? n.toFixed(2) : n.toPrecision(2)
}

export function formatTable(r: BenchResult): string {
  const head = ['workload', 'unit', 'DIR', 'local', 'DIR/local']
  const body = r.rows.map((row) => [
    row.label,
    row.better === 'lower' ? `${row.unit} (lower is better)` : row.unit,
    figure(row.dir),
    figure(row.local),
    `${ratio(row.ratio)}x`,
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd()
  const out = [
    `DIR:   ${r.dir}`,
    `local: ${r.local}`,
    ...(r.tree ? [`tree:  ${r.tree.entries} entries (${r.tree.files} files) from ${r.tree.source}`] : []),
    `cold:  ${r.cold.note}`,
    '',
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...body.map(line),
  ]
  return out.join('\n') + '\n'
}
