/**
 * `berth bench DIR`: the filesystem benchmark (tools/bench/fs.ts). Runs every
 * workload on DIR and on a local directory and prints both with their ratio.
 */
import { parseArgs } from 'node:util'
import { runFsBench, WORKLOADS, type WorkloadName } from '../tools/bench/fs'
import { formatTable } from '../tools/bench/report'
import { intFlag } from '../common/flags'

const HELP = `usage: berth bench DIR [options]
Runs the same workloads on DIR (e.g. a berth mount) and on a local directory
and prints both figures and the ratio DIR/local. See docs/bench.md.
  --local DIR2          local comparison directory (default: a fresh dir under the OS temp dir)
  --size-mb N           size of the sequential/random-read file in MiB (default 1024)
  --files N             number of 4 KiB files for create/stat/read/delete (default 5000)
  --tree-files N        regular files in the extract tarball (default 5000)
  --tree-src DIR        tree to build the tarball from (default: berth's node_modules)
  --random-reads N      number of random 4 KiB reads (default 2000)
  --depth N             random reads in flight (default 8)
  --seed N              seed for the random offsets (default 1)
  --evict-mb N          before each cold read on DIR, write and read N MiB of other data
                        so the berth client's block cache no longer holds the file (default 0)
  --repeat N            run every workload N times and report the medians (default 1)
  --only w1,w2          run only these workloads: ${WORKLOADS.join(', ')}
  --json                print a JSON object instead of the table

Exit status: 0 when every workload ran, 1 otherwise, 2 on bad usage.
`

function parseOnly(raw: string | undefined): WorkloadName[] {
  if (raw === undefined) return [...WORKLOADS]
  const names = raw.split(',').map((s) => s.trim()).filter(Boolean)
  const known = new Set<string>(WORKLOADS)
  const bad = names.filter((n) => !known.has(n))
  if (bad.length > 0 || names.length === 0) {
    throw new Error(`--only: unknown workload ${bad.map((b) => `"${b}"`).join(', ') || '(none)'}; known: ${WORKLOADS.join(', ')}`)
  }
  return names as WorkloadName[]
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      local: { type: 'string' },
      'size-mb': { type: 'string' },
      files: { type: 'string' },
      'tree-files': { type: 'string' },
      'tree-src': { type: 'string' },
      'random-reads': { type: 'string' },
      depth: { type: 'string' },
      seed: { type: 'string' },
      'evict-mb': { type: 'string' },
      repeat: { type: 'string' },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  if (positionals.length !== 1) throw new Error(`expected one DIR, got ${positionals.length}\n\n${HELP}`)
  const result = await runFsBench({
    dir: positionals[0]!,
    local: values.local ?? null,
    sizeMb: intFlag('--size-mb', values['size-mb'], 1024, 1),
    files: intFlag('--files', values.files, 5000, 1),
    treeFiles: intFlag('--tree-files', values['tree-files'], 5000, 1),
    treeSource: values['tree-src'] ?? null,
    randomReads: intFlag('--random-reads', values['random-reads'], 2000, 1),
    depth: intFlag('--depth', values.depth, 8, 1),
    seed: intFlag('--seed', values.seed, 1, 0),
    evictMb: intFlag('--evict-mb', values['evict-mb'], 0, 0),
    repeat: intFlag('--repeat', values.repeat, 1, 1),
    only: parseOnly(values.only),
    progress: process.stderr.isTTY ? (line) => process.stderr.write(`${line}\n`) : undefined,
  })
  process.stdout.write(values.json ? JSON.stringify(result, null, 2) + '\n' : formatTable(result))
}
