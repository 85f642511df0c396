/**
 * Sparse files as tools see them (docs/semantics.md): st_blocks counts the
 * bytes a file holds, holes left out, so `du`, `ls -s` and the sparse-file
 * guesses of cp and tar (st_blocks * 512 < st_size) work as on a local disk.
 * Before, st_blocks was size / 512 whatever the file held: a 1 GiB file with
 * 1 MiB written showed 1 GiB in `du`.
 *
 * Each case runs on a local directory (ext4 under /var/tmp) and on the mount;
 * for bytes in whole 4 KiB pages both count the same.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startCluster, type TestCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster, type TestMount } from './helpers/mount'
import { PYTHON3 } from './helpers/python'

const MiB = 2 ** 20

/** Writes `len` bytes of 0x61 at `at` into `path` (made if missing) and closes it. */
function writeAt(path: string, at: number, len: number): void {
  const fd = openSync(path, existsSync(path) ? 'r+' : 'w+')
  try {
    writeSync(fd, Buffer.alloc(len, 0x61), 0, len, at)
  } finally {
    closeSync(fd)
  }
}

/** A local directory (ext4 under /var/tmp) and a mount of a fresh 2-node cluster, both removed at the end. */
async function localAndBerth(t: Test): Promise<{ local: string; c: TestCluster; m: TestMount }> {
  const local = mkdtempSync('/var/tmp/berth-sparse-')
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  return { local, c, m: await mountCluster(t, c) }
}

/** The cases, run in `dir`: name -> st_blocks after it. */
function run(dir: string): Record<string, number> {
  const out: Record<string, number> = {}
  const p = (n: string) => join(dir, n)
  // 1 GiB, 1 MiB written in the middle
  closeSync(openSync(p('sparse'), 'w'))
  truncateSync(p('sparse'), 1024 * MiB)
  writeAt(p('sparse'), 512 * MiB, MiB)
  out.sparse = statSync(p('sparse')).blocks
  // written whole, 5 MiB (two chunks)
  writeAt(p('full'), 0, 5 * MiB)
  out.full = statSync(p('full')).blocks
  // cut to 1 MiB, then grown to 100 MiB by truncate (a hole after the data)
  truncateSync(p('full'), MiB)
  out.cut = statSync(p('full')).blocks
  truncateSync(p('full'), 100 * MiB)
  out.grown = statSync(p('full')).blocks
  // a hole, then 8 KiB at the end of a chunk boundary's far side
  closeSync(openSync(p('tail'), 'w'))
  writeAt(p('tail'), 8 * MiB, 8192)
  out.tail = statSync(p('tail')).blocks
  // copied with copy_file_range (on berth: the blocks are shared, not read)
  execFileSync('cp', ['--reflink=auto', '--sparse=auto', p('sparse'), p('copy')])
  out.copy = statSync(p('copy')).blocks
  out.du = Number(execFileSync('du', ['-k', p('sparse')], { encoding: 'utf8' }).split('\t')[0])
  return out
}

t.test('st_blocks counts what a file holds, holes left out, as on a local disk', async (t) => {
  const { local, c, m } = await localAndBerth(t)
  const want = run(local)
  const got = run(m.dir)
  t.same(got, want, `berth ${JSON.stringify(got)}, local ${JSON.stringify(want)}`)
  t.equal(got.sparse, 2048, 'the 1 GiB file with 1 MiB written counts 1 MiB')

  // a small file: a local disk counts a whole 4 KiB page, berth the bytes rounded to 512
  writeAt(join(m.dir, 'small'), 0, 100)
  t.equal(statSync(join(m.dir, 'small')).blocks, 1, 'a 100-byte file (stored in meta): one 512-byte unit')

  // another mount learns it from meta
  const m2 = await mountCluster(t, c)
  t.equal(statSync(join(m2.dir, 'sparse')).blocks, 2048, 'a second mount sees the same count')

  // while a writer holds unsaved bytes, the count is size / 512 (as a local disk counts delayed allocations); exact after close
  const fd = openSync(join(m.dir, 'sparse'), 'r+')
  writeSync(fd, Buffer.alloc(4096, 0x62), 0, 4096, 0)
  t.equal(fstatSync(fd).blocks, (1024 * MiB) / 512, 'while dirty: size / 512')
  ftruncateSync(fd, 1024 * MiB)
  closeSync(fd)
  t.equal(statSync(join(m.dir, 'sparse')).blocks, 2048 + 8, 'after close: 1 MiB + 4 KiB')
  // another mount's stat follows meta's invalidation (docs/semantics.md#caching), a few ms after the close
  const other = () => statSync(join(m2.dir, 'sparse')).blocks
  t.ok(await eventually(() => other() === 2048 + 8, 5000, 20), `and on the other mount once the invalidation came (${other()})`)
})

const D = 3 // SEEK_DATA
const H = 4 // SEEK_HOLE

/** lseek(fd, off, SEEK_DATA=3 / SEEK_HOLE=4) from Python (Node has no lseek): offset or errno name, per probe. */
function seeks(path: string, probes: Array<[number, number]>): string[] {
  const py = `import os, sys, errno, json
fd = os.open(sys.argv[1], os.O_RDONLY)
out = []
for off, whence in json.loads(sys.argv[2]):
    try: out.append(str(os.lseek(fd, off, whence)))
    except OSError as e: out.append(errno.errorcode[e.errno])
print(json.dumps(out))`
  return JSON.parse(execFileSync(PYTHON3, ['-c', py, path, JSON.stringify(probes)], { encoding: 'utf8' })) as string[]
}

t.test('SEEK_DATA and SEEK_HOLE find the holes, so cp and tar skip them; never a hole where data may be', async (t) => {
  const { local, c, m } = await localAndBerth(t)
  // 64 MiB: data in [8 MiB, 8 MiB + 4 KiB) and in the last 4 KiB; holes elsewhere (chunks of 4 MiB)
  const probes: Array<[number, number]> = [
    [0, D], [0, H], [8 * MiB, D], [8 * MiB, H], [9 * MiB, D], [12 * MiB, D], [60 * MiB, D], [64 * MiB - 1, D], [64 * MiB - 1, H], [64 * MiB, D], [64 * MiB, H],
  ]
  const make = (dir: string) => {
    const p = join(dir, 'img')
    closeSync(openSync(p, 'w'))
    truncateSync(p, 64 * MiB)
    writeAt(p, 8 * MiB, 4096)
    writeAt(p, 64 * MiB - 4096, 4096)
    return p
  }
  const onLocal = seeks(make(local), probes)
  const onBerth = seeks(make(m.dir), probes)
  t.same(onBerth, ['8388608', '0', '8388608', '8392704', '62914560', '62914560', '62914560', '67108863', '67108864', 'ENXIO', 'ENXIO'], `berth: ${onBerth.join(' ')} (local ext4: ${onLocal.join(' ')})`)
  // the last 4 KiB are stored with the zeros before them to the chunk's start (a block begins at its
  // chunk's start): berth's data there is the whole chunk, ext4's the page; never less than ext4's
  for (const [i, [off, whence]] of probes.entries()) {
    if (whence === D && onLocal[i] !== 'ENXIO') t.ok(Number(onBerth[i]) <= Number(onLocal[i]), `SEEK_DATA from ${off}: berth ${onBerth[i]} is not past the data (local ${onLocal[i]})`)
    if (whence === H && onLocal[i] !== 'ENXIO') t.ok(Number(onBerth[i]) >= Number(onLocal[i]) || onBerth[i] === onLocal[i], `SEEK_HOLE from ${off}: berth ${onBerth[i]} is not before the data ends (local ${onLocal[i]})`)
  }

  // a handle open for writing (mmap pages may not have reached the mount): the whole file is data
  const w = openSync(join(m.dir, 'img'), 'r+')
  t.same(seeks(join(m.dir, 'img'), [[0, D], [0, H]]), ['0', String(64 * MiB)], 'while a writer holds it open: all data')
  closeSync(w)
  t.same(seeks(join(m.dir, 'img'), [[0, D]]), ['8388608'], 'after it closed: the holes again')

  // a reader's handle, open while another handle of this mount writes into a hole and closes: it finds the new bytes
  const py = `import os, sys
r = os.open(sys.argv[1], os.O_RDONLY)
w = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(w, b'x' * 100, 20 * 1048576 + 5)
print(os.lseek(r, 12 * 1048576, 3), end=' ')
os.close(w)
print(os.lseek(r, 12 * 1048576, 3), os.lseek(r, 20 * 1048576, 4))`
  t.equal(execFileSync(PYTHON3, ['-c', py, join(m.dir, 'img')], { encoding: 'utf8' }).trim(), `12582912 ${20 * MiB} ${20 * MiB + 105}`, 'a write into a hole through another handle: data at once, and after its close')
  // cp reads only the data: the copy out to the local disk is sparse and equal
  execFileSync('cp', ['--sparse=auto', join(m.dir, 'img'), join(local, 'out')])
  t.equal(statSync(join(local, 'out')).blocks, 24, 'cp to the local disk: 12 KiB stored of 64 MiB')
  t.equal(execFileSync('cmp', [join(m.dir, 'img'), join(local, 'out')], { encoding: 'utf8' }), '', 'and the bytes are the same')
  // and into berth from the local disk: holes stay holes
  execFileSync('cp', ['--sparse=auto', join(local, 'img'), join(m.dir, 'in')])
  const stored = statSync(join(m.dir, 'img')).blocks
  t.equal(stored, 8 + 8192 + 1, 'the file made on berth holds 4 KiB + 4 MiB (the tail chunk from its start) + 105 bytes')
  t.equal(statSync(join(m.dir, 'in')).blocks, 8 + 8192, 'cp from the local disk: 4 KiB + 4 MiB, not 64 MiB')
  t.equal(execFileSync('cmp', [join(local, 'img'), join(m.dir, 'in')], { encoding: 'utf8' }), '', 'and the bytes are the same')
  // tar keeps them too
  execFileSync('tar', ['-C', m.dir, '-cSf', join(local, 'img.tar'), 'img'])
  t.ok(statSync(join(local, 'img.tar')).size < 5 * MiB, `tar -S of the 64 MiB file: ${statSync(join(local, 'img.tar')).size} bytes`)
})

t.test('fallocate PUNCH_HOLE over whole chunks leaves holes (st_blocks drops); the bytes read back as on a local disk', async (t) => {
  const { local, c, m } = await localAndBerth(t)
  const m2 = await mountCluster(t, c)
  const punch = (p: string, off: number, len: number) => execFileSync('fallocate', ['-p', '-o', String(off), '-l', String(len), p])
  const blocks: Record<string, number[]> = { local: [], berth: [] }
  for (const [where, dir] of [['local', local], ['berth', m.dir]] as const) {
    const p = join(dir, 'f')
    writeAt(p, 0, 20 * MiB)
    // [3, 13) MiB: chunks 1 and 2 whole, zeros into chunks 0 and 3
    punch(p, 3 * MiB, 10 * MiB)
    blocks[where]!.push(statSync(p).blocks)
    // from 16 MiB past the end: the last chunk whole
    punch(p, 16 * MiB, 100 * MiB)
    blocks[where]!.push(statSync(p).blocks)
    t.equal(statSync(p).size, 20 * MiB, `${where}: the size is kept`)
  }
  t.same(blocks.local, [20480, 12288], 'ext4: 10 MiB, then 6 MiB stored')
  t.same(blocks.berth, [24576, 16384], 'berth: chunks 0, 3 (zeros written into both) and 4, then 0 and 3: 12 MiB, then 8 MiB (before: 20 MiB both times)')
  t.equal(execFileSync('cmp', [join(local, 'f'), join(m.dir, 'f')], { encoding: 'utf8' }), '', 'the bytes equal the local file')
  t.equal(execFileSync('cmp', [join(local, 'f'), join(m2.dir, 'f')], { encoding: 'utf8' }), '', 'and through another mount')
  t.same(seeks(join(m.dir, 'f'), [[3 * MiB, H], [4 * MiB, D], [13 * MiB, H], [16 * MiB, D]]), [String(4 * MiB), String(12 * MiB), String(16 * MiB), 'ENXIO'], 'SEEK_HOLE/SEEK_DATA see the punched chunks')
})

t.test('fallocate ZERO_RANGE zeros the range, grows the size unless KEEP_SIZE, as on a local disk', async (t) => {
  const { local, c, m } = await localAndBerth(t)
  const m2 = await mountCluster(t, c)
  const sizes: Record<string, number[]> = { local: [], berth: [] }
  for (const [where, dir] of [['local', local], ['berth', m.dir]] as const) {
    const p = join(dir, 'z')
    writeAt(p, 0, 10 * MiB)
    // read it once, so the kernel holds its pages: they must not be what the next read returns
    execFileSync('cat', [p], { maxBuffer: 64 * MiB })
    execFileSync('fallocate', ['-z', '-o', String(MiB + 5), '-l', String(8 * MiB), p])
    sizes[where]!.push(statSync(p).size)
    execFileSync('fallocate', ['-z', '-o', String(9 * MiB), '-l', String(3 * MiB), p])
    sizes[where]!.push(statSync(p).size)
    execFileSync('fallocate', ['-z', '-n', '-o', String(11 * MiB), '-l', String(5 * MiB), p])
    sizes[where]!.push(statSync(p).size)
  }
  t.same(sizes.berth, sizes.local, `sizes after each: ${sizes.berth.join(', ')} (local ${sizes.local.join(', ')})`)
  t.equal(execFileSync('cmp', [join(local, 'z'), join(m.dir, 'z')], { encoding: 'utf8' }), '', 'the bytes equal the local file')
  t.equal(execFileSync('cmp', [join(local, 'z'), join(m2.dir, 'z')], { encoding: 'utf8' }), '', 'and through another mount')
  t.ok(statSync(join(m.dir, 'z')).blocks < 10 * 2048, `the zeroed whole chunk is a hole: ${statSync(join(m.dir, 'z')).blocks} blocks`)
})

t.test('fallocate of more than the cluster has free: ENOSPC at once, nothing changed (nothing is reserved otherwise)', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  const m = await mountCluster(t, c)
  const p = join(m.dir, 'big')
  writeAt(p, 0, MiB)
  const [avail, bsize] = execFileSync('stat', ['-f', '-c', '%a %S', m.dir], { encoding: 'utf8' }).trim().split(' ').map(Number)
  const free = avail! * bsize!
  const fa = (...args: string[]) => spawnSync('fallocate', [...args, p], { encoding: 'utf8' })
  for (const keep of [[], ['-n']]) {
    const r = fa(...keep, '-l', String(free + 2 ** 30))
    t.match(r.stderr, /No space left on device/, `fallocate ${keep.join(' ')} -l free + 1 GiB: ${r.stderr.trim()}`)
  }
  t.equal(statSync(p).size, MiB, 'the size is unchanged')
  t.equal(fa('-l', String(64 * MiB)).status, 0, 'fallocate -l 64 MiB: done')
  t.equal(statSync(p).size, 64 * MiB, 'and the size grew')
  t.equal(statSync(p).blocks, 2048, 'with nothing stored for it (no space reserved)')
  // a punch over a petabyte of holes walks the chunks that exist, not 2^28 of them
  truncateSync(p, 2 ** 50)
  execFileSync('fallocate', ['-p', '-o', '0', '-l', String(2 ** 50), p])
  t.equal(statSync(p).blocks, 0, 'a 1 PiB punch: nothing stored')
  t.equal(statSync(p).size, 2 ** 50, 'the size kept')
})
