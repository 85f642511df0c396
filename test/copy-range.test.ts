/**
 * copy_file_range inside the cluster (issue 8, docs/semantics.md#writes) on a
 * real mount: every copy runs through python3's os.copy_file_range (looping
 * on short counts, as callers must) on a local directory and on the mount
 * from the same starting files, and must leave the same bytes and return the
 * same counts or errno: chunk-aligned, at the same place in a chunk, at
 * different places, the source's last partial chunk landing past or inside
 * the destination's end, within one file, past the source's end, and the
 * errors (EINVAL, EBADF, EISDIR, EXDEV).
 *
 * Then `cp --reflink=auto` (coreutils calls copy_file_range) of a bigger file:
 * the data nodes take almost no bytes (the copy shares blocks), the copy's
 * chunk map names the source's blocks; writing into the copy leaves the
 * source as it was; the source deleted and GC run, the copy still reads back
 * from a fresh mount and fsck is clean. A file whose chunk is in slices is
 * cloned with its slices.
 *
 * Short form: 1 MiB chunks, a 24 MiB file. BERTH_CLONE_MB=1024 (4 MiB chunks)
 * for the acceptance size; the times of `cp --reflink=auto` and of a read +
 * write copy (`cp --reflink=never`) are printed, never asserted.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FsckReport } from '../cli/fsck-scan'
import type { ChunkRef } from '../common/protocol'
import { MiB, Pattern } from '../tools/bench/pattern'
import { berthCli } from './helpers/berth-cli'
import { startCluster, type TestCluster } from './helpers/cluster'
import { chunkMap } from './helpers/chunk-map'
import { diskBytes, nodeDirs, sleep } from './helpers/lifecycle'
import { mountCluster, type TestMount } from './helpers/mount'
import { testDir } from './helpers/test-dir'
import { PYTHON3 } from './helpers/python'

const BIG_MB = Number(process.env.BERTH_CLONE_MB ?? 24)
const CHUNK = Number(process.env.BERTH_CLONE_CHUNK ?? (process.env.BERTH_CLONE_MB ? 4 * MiB : MiB))
const R = 2

/** One copy_file_range copy, looping on short counts: prints {"copied": n, "calls": k} or {"errno": "EBADF"}. */
const COPY = `
import errno, json, os, sys
src, dst, off_in, off_out, length, mode = sys.argv[1:7]
off_in, off_out, length = int(off_in), int(off_out), int(length)
try:
    fin = os.open(src, {'src-wronly': os.O_WRONLY, 'same-fd': os.O_RDWR}.get(mode, os.O_RDONLY))
    out_flags = {'dst-rdonly': os.O_RDONLY, 'dst-append': os.O_WRONLY | os.O_APPEND}.get(mode, os.O_WRONLY | os.O_CREAT)
    fout = fin if src == dst and mode == 'same-fd' else os.open(dst, out_flags, 0o644)
    copied = calls = 0
    while copied < length:
        n = os.copy_file_range(fin, fout, length - copied, off_in + copied, off_out + copied)
        calls += 1
        if n == 0:
            break
        copied += n
    print(json.dumps({'copied': copied, 'calls': calls}))
except OSError as e:
    print(json.dumps({'errno': errno.errorcode.get(e.errno, str(e.errno))}))
`

type CopyResult = { copied: number; calls: number } | { errno: string }

function pyCopy(src: string, dst: string, offIn: number, offOut: number, len: number, mode = ''): CopyResult {
  const out = execFileSync(PYTHON3, ['-c', COPY, src, dst, String(offIn), String(offOut), String(len), mode], { encoding: 'utf8', timeout: 600_000 })
  return JSON.parse(out) as CopyResult
}

/** Same outcome: equal counts (call counts may differ: berth returns short counts) or the same errno. */
function outcome(r: CopyResult): string {
  return 'errno' in r ? r.errno : `copied ${r.copied}`
}

function bytes(seed: number, len: number): Buffer {
  const p = new Pattern(BigInt(seed) << 32n)
  const out = Buffer.alloc(len)
  const piece = Buffer.alloc(MiB)
  for (let at = 0, i = 0; at < len; at += MiB, i++) p.piece(i, piece).copy(out, at, 0, Math.min(MiB, len - at))
  return out
}

async function bytesIn(c: TestCluster): Promise<number> {
  let sum = 0
  for (const n of c.nodes) {
    const res = await fetch(`${n.ready.url as string}/metrics`, { headers: { authorization: `Bearer ${c.secret}` } })
    const m = /^berth_node_http_bytes_in_total (\S+)$/m.exec(await res.text())
    sum += m ? Number(m[1]) : 0
  }
  return sum
}

/** A chunk as its blocks: what two chunk maps must share after a clone. */
const blocksOf = (ch: ChunkRef) => [ch.hash, ch.len, ...(ch.slices ?? []).map((s) => `${s.hash}:${s.len}`)].join(' ')

function writeBig(path: string, data: Buffer): void {
  const fd = openSync(path, 'w')
  for (let at = 0; at < data.length; at += 4 * MiB) writeSync(fd, data, at, Math.min(4 * MiB, data.length - at), at)
  closeSync(fd)
}

/** The copies every run makes on both sides: [name, src, dst, offIn, offOut, len, dst's starting content]. */
const A = bytes(1, 5 * CHUNK + CHUNK / 2)
const B = bytes(2, 3 * CHUNK + CHUNK / 3)
const SMALL = bytes(3, 300 * 1024)
const HUGE = 1 << 30
const CASES: Array<[string, number, number, number, Buffer | null]> = [
  ['the whole file into a new file', 0, 0, HUGE, null],
  ['whole chunks into the middle of a file', CHUNK, CHUNK, 2 * CHUNK, B],
  ['both at the same place in a chunk', 100_000, CHUNK + 100_000, 2.5 * CHUNK, B],
  ['at different places in a chunk', 12_345, 777, 3 * CHUNK, B],
  ["the source's last partial chunk past the destination's end", 4 * CHUNK, CHUNK, HUGE, SMALL],
  ["the source's last partial chunk inside the destination", 4 * CHUNK, CHUNK, HUGE, B],
  ["from past the source's end", 10 * CHUNK, 0, CHUNK, B],
]

async function sameAsLocal(t: Test, c: TestCluster, m: TestMount): Promise<void> {
  // not testDir(t): the cluster lives there, and a second call would empty it
  const local = mkdtempSync(join(tmpdir(), 'berth-local-'))
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  for (const [root, name] of [[local, 'local'], [m.dir, 'mount']] as const) {
    writeBig(join(root, 'a'), A)
    mkdirSync(join(root, 'dir'))
    t.comment(`${name}: ${root}`)
  }
  for (const root of [local, m.dir]) {
    CASES.forEach(([, , , , start], i) => start && writeBig(join(root, `dst${i}`), start))
    writeBig(join(root, 'one'), A)
  }
  const before = await bytesIn(c)
  let copied = 0
  for (const [i, [what, offIn, offOut, len]] of CASES.entries()) {
    const results = [local, m.dir].map((root) => pyCopy(join(root, 'a'), join(root, `dst${i}`), offIn, offOut, len))
    t.equal(outcome(results[1]!), outcome(results[0]!), `${what}: ${outcome(results[0]!)}`)
    t.ok(readFileSync(join(m.dir, `dst${i}`)).equals(readFileSync(join(local, `dst${i}`))), `${what}: same bytes`)
    copied += 'copied' in results[0]! ? results[0].copied : 0
  }
  // one file, two ranges apart (the copy grows it past a hole)
  const same = [local, m.dir].map((root) => pyCopy(join(root, 'one'), join(root, 'one'), 0, 6 * CHUNK, 2 * CHUNK))
  t.equal(outcome(same[1]!), outcome(same[0]!), 'one file, ranges apart')
  t.ok(readFileSync(join(m.dir, 'one')).equals(readFileSync(join(local, 'one'))), 'one file, ranges apart: same bytes')
  const sent = (await bytesIn(c)) - before
  t.comment(`the copies above moved ${((copied + 2 * CHUNK) / MiB).toFixed(2)} MiB; the nodes took ${(sent / R / MiB).toFixed(2)} MiB per replica (the parts not cloned)`)
  t.ok(sent / R < copied, 'the nodes took less than was copied: aligned chunks were cloned')

  // errors: the kernel answers most itself; berth must not answer otherwise
  const errors: Array<[string, (root: string) => CopyResult]> = [
    ['overlapping ranges of one file', (root) => pyCopy(join(root, 'a'), join(root, 'a'), 0, CHUNK / 2, CHUNK, 'same-fd')],
    ['a write-only source', (root) => pyCopy(join(root, 'a'), join(root, 'e1'), 0, 0, CHUNK, 'src-wronly')],
    ['a read-only destination', (root) => pyCopy(join(root, 'a'), join(root, 'dst1'), 0, 0, CHUNK, 'dst-rdonly')],
    ['an O_APPEND destination', (root) => pyCopy(join(root, 'a'), join(root, 'dst1'), 0, 0, CHUNK, 'dst-append')],
    ['a directory as the source', (root) => pyCopy(join(root, 'dir'), join(root, 'e2'), 0, 0, CHUNK)],
  ]
  for (const [what, run] of errors) t.equal(outcome(run(m.dir)), outcome(run(local)), `${what}: ${outcome(run(local))}`)
  t.equal(outcome(pyCopy(join(m.dir, 'a'), join(local, 'x'), 0, 0, CHUNK)), 'EXDEV', 'from the mount to another filesystem: EXDEV (cp falls back to read + write)')
}

async function sharesBlocks(t: Test, c: TestCluster, m: TestMount): Promise<void> {
  const size = BIG_MB * MiB + 12_345
  const data = bytes(4, size)
  writeBig(join(m.dir, 'big'), data)
  const trace = spawnSync('strace', ['-f', '-e', 'trace=copy_file_range', 'cp', '--reflink=auto', join(m.dir, 'big'), join(m.dir, 'probe')], { encoding: 'utf8' })
  if (trace.status === 0) t.match(trace.stderr, /copy_file_range\(.*\) = \d+/, 'cp --reflink=auto calls copy_file_range on the mount')
  rmSync(join(m.dir, 'probe'))
  const always = spawnSync('cp', ['--reflink=always', join(m.dir, 'big'), join(m.dir, 'probe')], { encoding: 'utf8' })
  t.match(always.stderr, /Operation not supported/, 'cp --reflink=always (FICLONE): EOPNOTSUPP, the kernel has no FUSE reflink')
  rmSync(join(m.dir, 'probe'), { force: true })

  const disk0 = nodeDirs(c).map((d) => diskBytes(d).blocks)
  const in0 = await bytesIn(c)
  const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  let t0 = process.hrtime.bigint()
  execFileSync('cp', ['--reflink=auto', join(m.dir, 'big'), join(m.dir, 'copy')])
  const cloneS = Number(process.hrtime.bigint() - t0) / 1e9
  const took = (await bytesIn(c)) - in0
  const disk1 = nodeDirs(c).map((d) => diskBytes(d).blocks)
  t.comment(`cp --reflink=auto of ${(size / MiB).toFixed(0)} MiB: ${cloneS.toFixed(3)} s (load ${load()}); the nodes took ${(took / MiB).toFixed(2)} MiB`)
  t.ok(took < CHUNK * R * 2, 'the data nodes took less than two chunks per replica: the copy shares blocks')
  disk1.forEach((b, i) => t.ok(b - disk0[i]! < CHUNK * 2, `node ${i}'s blocks grew by ${((b - disk0[i]!) / MiB).toFixed(2)} MiB, not by the copy's size`))

  t0 = process.hrtime.bigint()
  execFileSync('cp', ['--reflink=never', join(m.dir, 'big'), join(m.dir, 'plain')])
  const plainS = Number(process.hrtime.bigint() - t0) / 1e9
  t.comment(`cp --reflink=never (read + write through the mount) of the same file: ${plainS.toFixed(3)} s (load ${load()})`)
  rmSync(join(m.dir, 'plain'))

  const src = await chunkMap(c, statSync(join(m.dir, 'big')).ino)
  const dst = await chunkMap(c, statSync(join(m.dir, 'copy')).ino)
  t.same(dst.map(blocksOf), src.map(blocksOf), 'the copy names the same blocks as the source, chunk for chunk')

  // writing into the copy leaves the source alone
  const fd = openSync(join(m.dir, 'copy'), 'r+')
  writeSync(fd, Buffer.alloc(1000, 0x5a), 0, 1000, CHUNK + 500)
  closeSync(fd)
  const fresh = await mountCluster(t, c)
  t.ok(readFileSync(join(fresh.dir, 'big')).equals(data), 'the source reads back unchanged after a write into the copy (fresh mount)')
  const changed = Buffer.from(data)
  changed.fill(0x5a, CHUNK + 500, CHUNK + 1500)
  t.ok(readFileSync(join(fresh.dir, 'copy')).equals(changed), 'the copy has the write')

  // the source goes; its blocks stay referenced by the copy
  rmSync(join(m.dir, 'big'))
  await sleep(1000)
  const gc = await berthCli(c, ['gc', '--run'], { timeoutMs: 600_000 })
  t.equal(gc.code, 0, `gc --run ${gc.code ? gc.stderr.slice(-500) : ''}`)
  const third = await mountCluster(t, c)
  t.ok(readFileSync(join(third.dir, 'copy')).equals(changed), 'the copy reads back whole from a fresh mount after the source was deleted and GC ran')
  const fsck = await berthCli(c, ['fsck', '--json', '--no-progress'])
  t.equal((JSON.parse(fsck.stdout) as FsckReport).ok, true, 'fsck clean')

  // a chunk in slices (a base block and appends) is cloned with its slices
  const sliced = join(m.dir, 'sliced')
  writeFileSync(sliced, bytes(5, 200 * 1024))
  for (let i = 0; i < 5; i++) {
    const afd = openSync(sliced, 'a')
    writeSync(afd, bytes(6 + i, 4096))
    closeSync(afd)
  }
  const slicedMap = await chunkMap(c, statSync(sliced).ino)
  t.ok(slicedMap.some((ch) => (ch.slices?.length ?? 0) > 0), `the file is in slices (${slicedMap.map((ch) => ch.slices?.length ?? 0).join(', ')})`)
  execFileSync('cp', ['--reflink=auto', sliced, join(m.dir, 'sliced-copy')])
  const copyMap = await chunkMap(c, statSync(join(m.dir, 'sliced-copy')).ino)
  t.same(copyMap.map(blocksOf), slicedMap.map(blocksOf), 'the copy has the same base and slices')
  t.ok(readFileSync(join(third.dir, 'sliced-copy')).equals(readFileSync(sliced)), 'and reads back the same bytes from another mount')
}

t.test('copy_file_range inside the cluster', { timeout: Math.max(400_000, BIG_MB * 2000) }, async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: R, metaArgs: ['--chunk-size', String(CHUNK), '--gc-grace-ms', '500'] })
  const m = await mountCluster(t, c)
  await t.test('the mount gives what a local disk gives', (t) => sameAsLocal(t, c, m))
  await t.test('cp --reflink=auto shares blocks; the copy outlives its source', (t) => sharesBlocks(t, c, m))
})
