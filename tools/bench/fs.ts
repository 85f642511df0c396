/**
 * `berth bench`: the same workloads on a target directory (normally a berth
 * mount) and on a local directory, in one run, so the ratio compares like with
 * like on the same machine at the same moment. Each workload group runs on the
 * target, then on the local side, and cleans up after itself. What "cold"
 * means on each side is written down in docs/bench.md.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { dropPageCache, evictClientCache, type DropResult } from './cold'
import { MiB, Pattern } from './pattern'
import { buildTreeTarball, defaultTreeSource, type TreeTarball } from './tree-tarball'
import { extract, randomReads, seqRead, seqWrite, smallFiles, type SmallFileSeconds } from './workloads'

export const WORKLOADS = ['seq-write', 'seq-read', 'rand-read', 'create', 'stat', 'read', 'delete', 'extract'] as const
export type WorkloadName = (typeof WORKLOADS)[number]

export interface BenchOptions {
  /** directory under test, e.g. a berth mount; must exist */
  dir: string
  /** local comparison directory; must exist. null: a fresh one under os.tmpdir(), removed afterwards */
  local: string | null
  sizeMb: number
  files: number
  treeFiles: number
  treeSource: string | null
  randomReads: number
  depth: number
  seed: number
  /** MiB of other data read through the target before each cold read; 0 = none */
  evictMb: number
  /** rounds of every workload; each row reports the median */
  repeat: number
  only: readonly WorkloadName[]
  /** progress lines (stderr); no-op by default */
  progress?: (line: string) => void
}

export interface BenchRow {
  name: WorkloadName
  label: string
  unit: 'MB/s' | 'files/s' | 'IOPS' | 's'
  better: 'higher' | 'lower'
  dir: number
  local: number
  /** dir / local, of the medians */
  ratio: number
  /** every round's figure; `dir` and `local` are their medians */
  samples: { dir: number[]; local: number[] }
}

export interface BenchResult {
  dir: string
  local: string
  options: { sizeMb: number; files: number; treeFiles: number; randomReads: number; depth: number; seed: number; evictMb: number; repeat: number }
  cold: { pageCacheDropped: boolean; note: string }
  tree: { source: string; entries: number; files: number } | null
  rows: BenchRow[]
}

type Side = 'dir' | 'local'

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

async function requireDir(path: string, what: string): Promise<string> {
  const abs = resolve(path)
  let st
  try {
    st = await stat(abs)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(code === 'ENOENT' ? `${what} ${abs} does not exist` : `${what} ${abs}: ${code ?? String(err)}`)
  }
  if (!st.isDirectory()) throw new Error(`${what} ${abs} is not a directory`)
  return abs
}

/**
 * Untimed, before any side runs: JIT warm-up of every code path, and one
 * `sizeMb` write (no fsync, then unlinked) so the kernel has recently used free
 * pages for the first side's page cache too. On VMs, pages that stayed free for
 * a while (e.g. after drop_caches) are handed back to the host and are slow to
 * touch again; without this, the first seq-write measured ~0.3x of the second
 * one on the same disk.
 */
async function warmUp(scratch: string, sizeMb: number, big: Pattern, small: Pattern): Promise<void> {
  const file = join(scratch, 'warm.bin')
  const buf = Buffer.allocUnsafe(MiB)
  const fh = await open(file, 'w')
  try {
    for (let i = 0; i < sizeMb; i++) await fh.write(big.piece(i, buf), 0, MiB, null)
  } finally {
    await fh.close()
  }
  await rm(file)
  await seqWrite(file, 2, big)
  await seqRead(file, 2, big)
  await randomReads(file, 2, 32, 4, 7, big)
  await rm(file)
  await smallFiles(join(scratch, 'warm'), 32, small)
}

export async function runFsBench(opts: BenchOptions): Promise<BenchResult> {
  const say = opts.progress ?? (() => {})
  const dir = await requireDir(opts.dir, 'DIR')
  const ownLocal = opts.local === null
  const local = ownLocal ? await mkdtemp(join(tmpdir(), 'berth-bench-local-')) : await requireDir(opts.local!, '--local')
  const tag = `berth-bench-${process.pid}-${randomBytes(3).toString('hex')}`
  const work: Record<Side, string> = { dir: join(dir, `${tag}-dir`), local: join(local, `${tag}-local`) }
  const scratch = await mkdtemp(join(tmpdir(), 'berth-bench-tree-'))
  const only = new Set<WorkloadName>(opts.only)
  const want = (...names: WorkloadName[]): boolean => names.some((n) => only.has(n))
  const samples = new Map<WorkloadName, { label: string; unit: BenchRow['unit']; dir: number[]; local: number[] }>()
  const drops: DropResult[] = []
  let tree: BenchResult['tree'] = null

  const big = new Pattern(0n)
  const smallPattern = big.withSalt(1n << 40n)
  const fillerPattern = big.withSalt(2n << 40n)

  const add = (name: WorkloadName, label: string, unit: BenchRow['unit'], values: Record<Side, number>): void => {
    if (!only.has(name)) return
    const entry = samples.get(name) ?? { label, unit, dir: [], local: [] }
    entry.dir.push(values.dir)
    entry.local.push(values.local)
    samples.set(name, entry)
  }

  /** Page cache dropped on both sides; the client block cache cycled on the target when asked. */
  const makeCold = async (side: Side): Promise<void> => {
    if (side === 'dir' && opts.evictMb > 0) {
      say(`  cycling the client cache with ${opts.evictMb} MiB on ${dir}`)
      await evictClientCache(join(work.dir, 'evict.bin'), opts.evictMb, fillerPattern)
    }
    drops.push(await dropPageCache())
  }

  try {
    await mkdir(work.dir)
    await mkdir(work.local)
    // Whichever side ran first would otherwise also pay for JIT warm-up.
    if (want('seq-write', 'seq-read', 'rand-read')) say(`warm-up (${opts.sizeMb} MiB, untimed)`)
    await warmUp(scratch, want('seq-write', 'seq-read', 'rand-read') ? opts.sizeMb : 0, big, smallPattern)
    const sides: [Side, string][] = [['dir', work.dir], ['local', work.local]]
    let tarball: TreeTarball | null = null
    if (want('extract')) {
      const source = opts.treeSource ?? defaultTreeSource()
      say(`building the tree tarball from ${source}`)
      tarball = await buildTreeTarball(await requireDir(source, 'tree source'), opts.treeFiles, scratch)
      tree = { source: tarball.source, entries: tarball.entries, files: tarball.files }
    }

    for (let round = 1; round <= opts.repeat; round++) {
      if (opts.repeat > 1) say(`round ${round} of ${opts.repeat}`)
      // Alternating which side goes first keeps order effects out of the medians.
      const order = round % 2 === 1 ? sides : [...sides].reverse()
      if (want('seq-write', 'seq-read', 'rand-read')) {
        const mb = opts.sizeMb
        const write: Record<Side, number> = { dir: 0, local: 0 }
        const read: Record<Side, number> = { dir: 0, local: 0 }
        const rand: Record<Side, number> = { dir: 0, local: 0 }
        for (const [side, root] of order) {
          const file = join(root, 'big.bin')
          try {
            say(`seq-write ${mb} MiB on ${side}`)
            write[side] = await seqWrite(file, mb, big)
            if (want('seq-read')) {
              await makeCold(side)
              say(`seq-read (cold) on ${side}`)
              read[side] = await seqRead(file, mb, big)
            }
            if (want('rand-read')) {
              await makeCold(side)
              say(`rand-read ${opts.randomReads} x 4 KiB on ${side}`)
              rand[side] = await randomReads(file, mb, opts.randomReads, opts.depth, opts.seed, big)
            }
          } finally {
            await rm(file, { force: true })
          }
        }
        const mbps = (s: number): number => (mb * MiB) / 1e6 / s
        add('seq-write', `sequential write ${mb} MiB (1 MiB writes + fsync)`, 'MB/s', { dir: mbps(write.dir), local: mbps(write.local) })
        add('seq-read', `cold sequential read ${mb} MiB`, 'MB/s', { dir: mbps(read.dir), local: mbps(read.local) })
        add('rand-read', `cold random 4 KiB reads x${opts.randomReads}, depth ${opts.depth}`, 'IOPS', {
          dir: opts.randomReads / rand.dir,
          local: opts.randomReads / rand.local,
        })
      }

      if (want('create', 'stat', 'read', 'delete')) {
        const secs = {} as Record<Side, SmallFileSeconds>
        for (const [side, root] of order) {
          say(`small files: ${opts.files} x 4 KiB on ${side}`)
          secs[side] = await smallFiles(join(root, 'small'), opts.files, smallPattern)
        }
        const n = opts.files
        for (const phase of ['create', 'stat', 'read', 'delete'] as const) {
          add(phase, `${phase} ${n} files of 4 KiB`, 'files/s', { dir: n / secs.dir[phase], local: n / secs.local[phase] })
        }
      }

      if (tarball) {
        const tar = tarball
        const secs: Record<Side, number> = { dir: 0, local: 0 }
        for (const [side, root] of order) {
          say(`extract ${tar.entries} entries on ${side}`)
          secs[side] = await extract(tar.path, join(root, 'tree'))
        }
        add('extract', `tar -xf of ${tar.entries} entries (${tar.files} files)`, 's', secs)
      }
    }
  } finally {
    await rm(work.dir, { recursive: true, force: true })
    await rm(ownLocal ? local : work.local, { recursive: true, force: true })
    await rm(scratch, { recursive: true, force: true })
  }

  const failed = drops.find((d) => !d.dropped)
  const cold = drops.length === 0
    ? { pageCacheDropped: false, note: 'no cold reads in this run' }
    : failed
      ? { pageCacheDropped: false, note: `page cache NOT dropped: ${failed.reason}; "cold" reads may be served from memory` }
      : {
          pageCacheDropped: true,
          note: opts.evictMb > 0
            ? `page cache dropped before each cold read; client cache cycled with ${opts.evictMb} MiB on DIR`
            : 'page cache dropped before each cold read; berth client block cache not cycled (use --evict-mb)',
        }

  const rows: BenchRow[] = [...samples].map(([name, e]) => {
    const d = median(e.dir)
    const l = median(e.local)
    return { name, label: e.label, unit: e.unit, better: e.unit === 's' ? 'lower' : 'higher', dir: d, local: l, ratio: d / l, samples: { dir: e.dir, local: e.local } }
  })

  return {
    dir,
    local,
    options: {
      sizeMb: opts.sizeMb,
      files: opts.files,
      treeFiles: opts.treeFiles,
      randomReads: opts.randomReads,
      depth: opts.depth,
      seed: opts.seed,
      evictMb: opts.evictMb,
      repeat: opts.repeat,
    },
    cold,
    tree,
    rows,
  }
}
