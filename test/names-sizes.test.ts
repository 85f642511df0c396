/**
 * Input a local disk takes and berth cannot store must get a clear error and
 * change nothing (docs/semantics.md#limits):
 * - sizes and offsets past 2^53 - 1 (a JavaScript number's exact integers).
 * (Names that are not UTF-8 were refused with EILSEQ here; they are stored
 * as bytes now: test/raw-names.)
 *   A truncate there gave EIO, and a write there was stored at a rounded
 *   offset. Local file systems answer EFBIG past their largest file.
 */
import { spawnSync } from 'node:child_process'
import { closeSync, ftruncateSync, fstatSync, openSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { PYTHON3 } from './helpers/python'

const MAX = Number.MAX_SAFE_INTEGER // 2^53 - 1, berth's largest file size

t.test('sizes and offsets past 2^53 - 1: EFBIG, and the file stays as it was', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const f = join(m.dir, 'big')
  writeFileSync(f, 'head')
  const truncate = (size: string) => spawnSync('truncate', ['-s', size, f], { encoding: 'utf8' })
  const over = truncate(String(2n ** 53n))
  t.match(over.stderr, /File too large/, `truncate to 2^53: ${over.stderr.trim()}`)
  const far = truncate(String(2n ** 63n - 1n))
  t.match(far.stderr, /File too large/, 'truncate to 2^63 - 1')
  t.equal(statSync(f).size, 4, 'size unchanged')

  const fd = openSync(f, 'r+')
  t.teardown(() => closeSync(fd))
  // dd seeks, then writes: offsets past what a JavaScript number holds exactly
  const writeAt = (offset: bigint) => spawnSync('dd', [`of=${f}`, 'bs=2', `seek=${offset}`, 'oflag=seek_bytes', 'conv=notrunc', 'status=none'], { input: 'xy', encoding: 'utf8' })
  t.match(writeAt(2n ** 53n).stderr, /File too large/, 'a write at 2^53')
  t.match(writeAt(2n ** 62n + 1n).stderr, /File too large/, 'a write at 2^62 + 1')
  t.equal(fstatSync(fd).size, 4, 'size unchanged')
  // up to the limit it works: a sparse file of the largest size, written at its last byte
  ftruncateSync(fd, MAX - 1)
  t.equal(writeSync(fd, Buffer.from('xy'), 0, 2, MAX - 1), 1, 'a write across the limit is cut at it (as on a local disk)')
  t.equal(fstatSync(fd, { bigint: true }).size, BigInt(MAX), 'size 2^53 - 1')
  const r = spawnSync('dd', [`if=${f}`, 'bs=1', `skip=${MAX - 3}`, 'count=3', 'status=none'], { encoding: 'latin1' })
  t.same(Buffer.from(r.stdout, 'latin1'), Buffer.from([0, 0, 0x78]), 'the last byte reads back, the hole before it as zeros')
  // copy_file_range into the same file's end: Python passes the offsets as 64-bit integers
  const copy = (dst: bigint) =>
    spawnSync(PYTHON3, ['-c', `import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry: print(os.copy_file_range(fd, fd, 2, 0, ${dst}))\nexcept OSError as e: print(os.strerror(e.errno))`, f], { encoding: 'utf8' }).stdout.trim()
  t.equal(copy(2n ** 53n), 'File too large', 'copy_file_range to 2^53: EFBIG')
  t.equal(copy(BigInt(MAX - 1)), '1', 'copy_file_range across the limit stops at it')
  t.equal(fstatSync(fd, { bigint: true }).size, BigInt(MAX), 'size unchanged')
  const fa = spawnSync('fallocate', ['-o', String(MAX - 1), '-l', '2', f], { encoding: 'utf8' })
  t.match(fa.stderr, /File too large/, `fallocate across the limit: ${fa.stderr.trim()}`)
  t.equal(fstatSync(fd, { bigint: true }).size, BigInt(MAX), 'size unchanged')
})
