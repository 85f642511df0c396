/**
 * Input a local disk takes and berth cannot store must get a clear error and
 * change nothing (docs/semantics.md#limits):
 * - names that are not UTF-8 (meta keeps names as text). The binding turned
 *   each bad byte into U+FFFD, so "caf\xe9" and "caf\xe8" were one file: a
 *   second create opened the first one's inode.
 * - sizes and offsets past 2^53 - 1 (a JavaScript number's exact integers).
 *   A truncate there gave EIO, and a write there was stored at a rounded
 *   offset. Local file systems answer EFBIG past their largest file.
 */
import { spawnSync } from 'node:child_process'
import { closeSync, ftruncateSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const MAX = Number.MAX_SAFE_INTEGER // 2^53 - 1, berth's largest file size

function code(fn: () => unknown): string {
  try {
    fn()
    return 'ok'
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err)
  }
}

/** A path whose last component is raw bytes (Node passes Buffer paths through as they are). */
const raw = (dir: string, ...bytes: number[]) => Buffer.concat([Buffer.from(dir + '/'), Buffer.from(bytes)])

t.test('names that are not UTF-8: EILSEQ to make one, ENOENT to find one, nothing changed', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const d = join(m.dir, 'd')
  mkdirSync(d)
  writeFileSync(join(d, 'ok'), 'ok\n')
  const cafE9 = raw(d, 0x63, 0x61, 0x66, 0xe9) // Latin-1 "café"
  const cafE8 = raw(d, 0x63, 0x61, 0x66, 0xe8) // Latin-1 "cafè"
  t.equal(code(() => writeFileSync(cafE9, 'one\n')), 'EILSEQ', 'create')
  t.equal(code(() => writeFileSync(cafE8, 'two\n')), 'EILSEQ', 'create of another such name')
  t.equal(code(() => mkdirSync(raw(d, 0xff))), 'EILSEQ', 'mkdir')
  t.equal(code(() => symlinkSync('ok', raw(d, 0xc0, 0xaf))), 'EILSEQ', 'symlink named with an overlong encoding')
  t.equal(code(() => symlinkSync(Buffer.from([0x61, 0xed, 0xa0, 0x80]), join(d, 'sl'))), 'EILSEQ', 'symlink to a target with a UTF-16 surrogate')
  t.equal(code(() => linkSync(join(d, 'ok'), raw(d, 0x80))), 'EILSEQ', 'link')
  t.equal(code(() => renameSync(join(d, 'ok'), raw(d, 0xfe))), 'EILSEQ', 'rename to such a name')
  t.equal(code(() => statSync(cafE9)), 'ENOENT', 'lookup')
  t.equal(code(() => unlinkSync(cafE9)), 'ENOENT', 'unlink')
  t.equal(code(() => renameSync(cafE9, join(d, 'x'))), 'ENOENT', 'rename from such a name')
  // renameat2 through Python's ctypes (Node has no rename flags): 1 RENAME_NOREPLACE, 2 RENAME_EXCHANGE
  const renameat2 = (flags: number) =>
    spawnSync('python3', ['-c', `import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[1].encode()[:-2] + b'\\xfe', ${flags})\nprint(os.strerror(ctypes.get_errno()) if r else 'ok')`, join(d, 'ok')], { encoding: 'utf8' }).stdout.trim()
  t.equal(renameat2(1), 'Invalid or incomplete multibyte or wide character', 'rename with RENAME_NOREPLACE to such a name: EILSEQ')
  t.equal(renameat2(2), 'No such file or directory', 'rename with RENAME_EXCHANGE with such a name: ENOENT (it cannot exist)')
  // an xattr name of raw bytes: Node's own arguments are UTF-8, so Python (node-gyp's, always there) makes the call
  const xattr = (op: string) => spawnSync('python3', ['-c', `import os, sys\ntry:\n  ${op}\nexcept OSError as e: print(os.strerror(e.errno))`, join(d, 'ok')], { encoding: 'utf8' }).stdout.trim()
  t.equal(xattr("os.setxattr(sys.argv[1], b'user.\\xff', b'1')"), 'Invalid or incomplete multibyte or wide character', 'setxattr: EILSEQ')
  t.equal(xattr("os.getxattr(sys.argv[1], b'user.\\xff')"), 'No data available', 'getxattr: ENODATA')
  t.equal(xattr("os.removexattr(sys.argv[1], b'user.\\xff')"), 'No data available', 'removexattr: ENODATA')
  t.same(readdirSync(d).sort(), ['ok'], 'the directory holds only what it held')
  t.equal(readFileSync(join(d, 'ok'), 'utf8'), 'ok\n')
  // valid UTF-8 of every length still works, U+FFFD itself included
  for (const name of ['café', 'ĀĂ', '€uro', '🙂', '\ufffd']) writeFileSync(join(d, name), name)
  t.same(readdirSync(d).sort(), ['ok', 'café', 'ĀĂ', '€uro', '🙂', '\ufffd'].sort(), 'UTF-8 names of 2, 3 and 4 bytes per character')
  for (const name of ['café', 'ĀĂ', '€uro', '🙂', '\ufffd']) t.equal(readFileSync(join(d, name), 'utf8'), name)
})

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
    spawnSync('python3', ['-c', `import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry: print(os.copy_file_range(fd, fd, 2, 0, ${dst}))\nexcept OSError as e: print(os.strerror(e.errno))`, f], { encoding: 'utf8' }).stdout.trim()
  t.equal(copy(2n ** 53n), 'File too large', 'copy_file_range to 2^53: EFBIG')
  t.equal(copy(BigInt(MAX - 1)), '1', 'copy_file_range across the limit stops at it')
  t.equal(fstatSync(fd, { bigint: true }).size, BigInt(MAX), 'size unchanged')
  const fa = spawnSync('fallocate', ['-o', String(MAX - 1), '-l', '2', f], { encoding: 'utf8' })
  t.match(fa.stderr, /File too large/, `fallocate across the limit: ${fa.stderr.trim()}`)
  t.equal(fstatSync(fd, { bigint: true }).size, BigInt(MAX), 'size unchanged')
})
