/**
 * Local copies and FUSE passthrough (client/passthrough.ts, client/local-copies.ts):
 * a file read whole once is read again by the kernel from a copy on the local
 * disk, with no READ reaching the mount, and the copy follows every change
 * made while readers hold it open: writes and truncates through this mount,
 * a writer's shared mapping, and another client's commits.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, fstatSync, ftruncateSync, openSync, readdirSync, readFileSync, readSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { startCluster } from './helpers/cluster'
import { delta, fuseOps } from './helpers/fuse-ops'
import { mountCluster, type TestMount } from './helpers/mount'
import { PYTHON3 } from './helpers/python'
import { testDir } from './helpers/test-dir'

const root = process.getuid?.() === 0
const MiB = 1024 * 1024

/** READs the mount answered while `fn` ran. */
async function readsDuring(m: TestMount, fn: () => void | Promise<void>): Promise<number> {
  const url = String(m.client.ready.metrics)
  const before = await fuseOps(url)
  await fn()
  return delta(await fuseOps(url), before, 'read')
}

/** Drops the page cache of a file on the mount (POSIX_FADV_DONTNEED; Node has no fadvise). */
function dropPages(path: string): void {
  const r = spawnSync(PYTHON3, ['-c', 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)', path])
  if (r.status !== 0) throw new Error(`fadvise: ${r.stderr}`)
}

/**
 * Reads `path` whole (1 MiB reads, from offset 0) and, with the file still
 * open, counts its pages below `below` in the page cache (mincore of a
 * shared mapping); the drops are queued, so it looks again for up to 5 s
 * while any are left.
 */
function residentBehind(path: string, below: number): number {
  const probe = `
import ctypes, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
while os.read(fd, 1 << 20): pass
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
n = int(sys.argv[2])
addr = libc.mmap(None, n, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
if addr in (None, ctypes.c_void_p(-1).value): sys.exit('mmap failed: %d' % ctypes.get_errno())
vec = (ctypes.c_ubyte * (n // 4096))()
for _ in range(50):
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(n), vec) != 0: sys.exit('mincore failed: %d' % ctypes.get_errno())
    left = sum(b & 1 for b in vec)
    if left == 0: break
    time.sleep(0.1)
print(left)
`
  const r = spawnSync(PYTHON3, ['-c', probe, path, String(below)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`page probe: ${r.stderr}`)
  return Number(r.stdout.trim())
}

/** Reads all of `fd` from offset 0. */
function readAll(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(size)
  let at = 0
  while (at < size) {
    const n = readSync(fd, buf, at, size - at, at)
    if (n <= 0) break
    at += n
  }
  return buf.subarray(0, at)
}

/**
 * Writes `data` to `path` on mount `m`, reads it once (the copy fills), and
 * opens it again for reading: that handle is checked to be in passthrough
 * mode (no READ reaches the mount after its FUSE pages are dropped).
 */
async function heldInPassthrough(t: Test, m: TestMount, path: string, data: Buffer): Promise<number> {
  writeFileSync(path, data)
  readFileSync(path)
  const fd = openSync(path, 'r')
  dropPages(path)
  t.equal(await readsDuring(m, () => void readAll(fd, data.length)), 0, 'the reader is in passthrough mode')
  return fd
}

t.test('passthrough of re-reads to local copies', { skip: root ? false : 'FUSE passthrough needs CAP_SYS_ADMIN' }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const a = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0'] })
  const b = await mountCluster(t, c)

  await t.test('a file read once is read again with no READ to the mount', async (t) => {
    const data = randomBytes(8 * MiB + 123)
    const path = join(a.dir, 'once.bin')
    writeFileSync(path, data)
    const cold = await readsDuring(a, () => void t.ok(readFileSync(path).equals(data), 'the first read is exact'))
    t.ok(cold > 0, `the first read came to the mount (${cold} READs)`)
    // the FUSE page cache of the file goes: a cached-mode read would have to ask the mount
    dropPages(path)
    const warm = await readsDuring(a, () => void t.ok(readFileSync(path).equals(data), 'the second read is exact'))
    const small = join(a.dir, 'small.bin')
    writeFileSync(small, randomBytes(64 * 1024))
    readFileSync(small)
    dropPages(small)
    t.ok((await readsDuring(a, () => void readFileSync(small))) > 0, 'a file under 1 MiB gets no copy (the page cache keeps it)')
    t.equal(warm, 0, 'the second read came from the local copy')
    // the same on a mount without local copies: the dropped pages are asked for again
    const off = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0,local_copy_mb=0'] })
    const offPath = join(off.dir, 'once.bin')
    readFileSync(offPath)
    dropPages(offPath)
    t.ok((await readsDuring(off, () => void readFileSync(offPath))) > 0, 'without local copies the second read comes to the mount')
  })

  await t.test('the FUSE pages behind a reader filling a copy are dropped as it reads (the first passthrough open would drop them itself)', async (t) => {
    const data = randomBytes(64 * MiB)
    writeFileSync(join(a.dir, 'behind.bin'), data)
    const off = await mountCluster(t, c, { args: ['-o', 'local_copy_mb=0'] })
    const with_ = residentBehind(join(a.dir, 'behind.bin'), 32 * MiB)
    const without = residentBehind(join(off.dir, 'behind.bin'), 32 * MiB)
    t.equal(with_, 0, 'with local copies: none of the first 32 MiB stays in the FUSE page cache while the reader still holds the file')
    t.ok(without > (24 * MiB) / 4096, `without local copies they stay (${without} of ${(32 * MiB) / 4096} pages)`)
  })

  await t.test('a copy goes with the last name of its file (unlink, rename over it), or with its last passthrough reader', async (t) => {
    const dir = join(testDir(t), 'copies')
    const m = await mountCluster(t, c, { args: ['-o', `local_copy_dir=${dir}`] })
    const copies = () => readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\/\d+$/.test(f)).length
    const gone = async (what: string) => {
      for (let i = 0; i < 40 && copies() > 0; i++) await new Promise((r) => setTimeout(r, 50))
      t.equal(copies(), 0, what)
    }
    const data = randomBytes(2 * MiB)
    writeFileSync(join(m.dir, 'u.bin'), data)
    readFileSync(join(m.dir, 'u.bin'))
    t.equal(copies(), 1, 'a file read whole has a copy')
    unlinkSync(join(m.dir, 'u.bin'))
    await gone('unlinked: its copy is gone')
    writeFileSync(join(m.dir, 'r.bin'), data)
    writeFileSync(join(m.dir, 'r2.bin'), data)
    readFileSync(join(m.dir, 'r.bin'))
    renameSync(join(m.dir, 'r2.bin'), join(m.dir, 'r.bin'))
    await gone('renamed over: its copy is gone')
    writeFileSync(join(m.dir, 'h.bin'), data)
    readFileSync(join(m.dir, 'h.bin'))
    const fd = openSync(join(m.dir, 'h.bin'), 'r')
    unlinkSync(join(m.dir, 'h.bin'))
    t.ok(readAll(fd, data.length).equals(data), 'a reader that held it open reads it whole after the unlink')
    t.equal(copies(), 1, 'its copy stays while that reader holds it')
    closeSync(fd)
    await gone('and goes with that reader')
  })

  await t.test('a write through this mount while a reader holds the copy: the reader sees it, other mounts after close', async (t) => {
    const data = randomBytes(2 * MiB)
    const path = join(a.dir, 'follow.bin')
    const rfd = await heldInPassthrough(t, a, path, data)
    try {
      const wfd = openSync(path, 'r+')
      try {
        const patch = Buffer.from('written while a passthrough reader is open')
        writeSync(wfd, patch, 0, patch.length, 1000)
        patch.copy(data, 1000)
        t.ok(readAll(rfd, data.length).equals(data), 'the reader sees the write at once')
        const tail = Buffer.from('appended')
        writeSync(wfd, tail, 0, tail.length, data.length)
        const grown = Buffer.concat([data, tail])
        t.ok(readAll(rfd, grown.length).equals(grown), 'and an append')
        ftruncateSync(wfd, 4096)
        t.ok(readAll(rfd, grown.length).equals(grown.subarray(0, 4096)), 'and a truncate')
      } finally {
        closeSync(wfd)
      }
    } finally {
      closeSync(rfd)
    }
    t.ok(readFileSync(join(b.dir, 'follow.bin')).equals(data.subarray(0, 4096)), 'another mount reads what was written')
    t.ok(readFileSync(path).equals(data.subarray(0, 4096)), 'and so does a new open here')
  })

  await t.test('a punched hole and a copy_file_range into a file a reader holds in passthrough mode reach the reader', async (t) => {
    const data = randomBytes(2 * MiB)
    const path = join(a.dir, 'ranges.bin')
    const rfd = await heldInPassthrough(t, a, path, data)
    try {
      const punch = spawnSync('fallocate', ['-p', '-o', '8192', '-l', '4096', path], { encoding: 'utf8' })
      t.equal(punch.status, 0, `fallocate -p: ${punch.stderr}`)
      data.fill(0, 8192, 8192 + 4096)
      t.ok(readAll(rfd, data.length).equals(data), 'the reader reads zeros in the hole')
      const src = join(a.dir, 'ranges-src.bin')
      const piece = randomBytes(64 * 1024)
      writeFileSync(src, piece)
      // copy_file_range(2) of the piece to offset 1 MiB (Node has none; python's os.copy_file_range)
      const copy = spawnSync(PYTHON3, ['-c', `
import os, sys
s = os.open(sys.argv[1], os.O_RDONLY)
d = os.open(sys.argv[2], os.O_WRONLY)
left = int(sys.argv[3])
while left:
    n = os.copy_file_range(s, d, left, int(sys.argv[3]) - left, int(sys.argv[4]) + int(sys.argv[3]) - left)
    if n <= 0:
        raise SystemExit('short copy')
    left -= n
os.close(s)
os.close(d)
`, src, path, String(piece.length), String(MiB)], { encoding: 'utf8' })
      t.equal(copy.status, 0, `copy_file_range: ${copy.stderr}`)
      piece.copy(data, MiB)
      t.ok(readAll(rfd, data.length).equals(data), 'the reader reads the copied range')
    } finally {
      closeSync(rfd)
    }
    t.ok(readFileSync(join(b.dir, 'ranges.bin')).equals(data), 'another mount reads both changes')
  })

  await t.test('a reader that does not read from offset 0 fills no copy', async (t) => {
    const data = randomBytes(2 * MiB)
    const path = join(a.dir, 'scattered.bin')
    writeFileSync(path, data)
    // the second half first, then the first: one handle reads every byte, never as a run from 0
    const fd = openSync(path, 'r')
    try {
      const half = Buffer.alloc(MiB)
      readSync(fd, half, 0, MiB, MiB)
      t.ok(half.equals(data.subarray(MiB)), 'second half')
      readSync(fd, half, 0, MiB, 0)
      t.ok(half.equals(data.subarray(0, MiB)), 'first half')
    } finally {
      closeSync(fd)
    }
    dropPages(path)
    t.ok((await readsDuring(a, () => void readFileSync(path))) > 0, 'the next read comes to the mount: no copy was made')
    dropPages(path)
    t.equal(await readsDuring(a, () => void readFileSync(path)), 0, 'a whole read made one, and the read after it uses it')
  })

  await t.test('a writer\'s shared mapping while a reader holds the copy reaches the file at close', async (t) => {
    const data = randomBytes(2 * MiB)
    const path = join(a.dir, 'mapped.bin')
    const rfd = await heldInPassthrough(t, a, path, data)
    try {
      // python's mmap: Node has none
      const py = spawnSync(PYTHON3, ['-c', `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[5000:5012] = b'mapped write'
m.flush()
m.close()
os.close(fd)
`, path], { encoding: 'utf8' })
      t.equal(py.status, 0, `python mmap writer: ${py.stderr}`)
      Buffer.from('mapped write').copy(data, 5000)
      t.ok(readAll(rfd, data.length).equals(data), 'the reader sees the mapped write')
    } finally {
      closeSync(rfd)
    }
    t.ok(readFileSync(join(b.dir, 'mapped.bin')).equals(data), 'another mount reads the mapped write')
  })

  await t.test('another client rewrites a file a reader holds in passthrough mode: new opens read the new content', async (t) => {
    const data = randomBytes(1 * MiB)
    const path = join(a.dir, 'remote.bin')
    const rfd = await heldInPassthrough(t, a, path, data)
    try {
      const fresh = randomBytes(1 * MiB + 7)
      writeFileSync(join(b.dir, 'remote.bin'), fresh)
      // close-to-open: an open after the other client's close reads its content
      t.ok(readFileSync(path).equals(fresh), 'a new open reads the other client\'s content')
      t.ok(readAll(rfd, fresh.length).equals(fresh), 'and so does the reader opened before')
    } finally {
      closeSync(rfd)
    }
  })

  await t.test('another client shortens a file a reader holds in passthrough mode: a new open sees the new size and bytes', async (t) => {
    const v2 = randomBytes(3 * MiB)
    const path = join(a.dir, 'shorter.bin')
    const rfd = await heldInPassthrough(t, a, path, v2)
    try {
      const v3 = randomBytes(777_777)
      writeFileSync(join(b.dir, 'shorter.bin'), v3)
      const fd = openSync(path, 'r')
      try {
        t.equal(fstatSync(fd).size, v3.length, 'the new size')
        t.ok(readAll(fd, v2.length).equals(v3), 'the new bytes')
      } finally {
        closeSync(fd)
      }
    } finally {
      closeSync(rfd)
    }
  })

  await t.test('another client rewrites (O_TRUNC, write, close) a file held in passthrough mode: fstat of a new open shows the new size', async (t) => {
    // The O_TRUNC's invalidation makes the copy reread while the file is
    // empty there, a lookup meanwhile gives the kernel size 0, and the open
    // after the rewrite then found nothing changed and kept that size (10 of
    // 30 runs before the reread dropped the kernel's attributes).
    for (let run = 0; run < 8; run++) {
      const name = `rewrite-held-${run}.bin`
      writeFileSync(join(a.dir, name), randomBytes(3 * MiB))
      readFileSync(join(b.dir, name))
      const held = openSync(join(b.dir, name), 'r')
      try {
        readAll(held, 4096)
        const v3 = randomBytes(777_777)
        writeFileSync(join(a.dir, name), v3)
        const fd = openSync(join(b.dir, name), 'r')
        try {
          const size = fstatSync(fd).size
          if (size !== v3.length) t.fail(`run ${run}: fstat size ${size}, want ${v3.length}`)
          if (!readAll(fd, 4 * MiB).equals(v3)) t.fail(`run ${run}: the bytes are not the new ones`)
        } finally {
          closeSync(fd)
        }
      } finally {
        closeSync(held)
      }
    }
    t.pass('8 rewrites')
  })

  await t.test('a copy is never read for a newer content: written and closed here, then read', async (t) => {
    const path = join(a.dir, 'rewrite.bin')
    const one = randomBytes(MiB)
    writeFileSync(path, one)
    readFileSync(path)
    readFileSync(path)
    const two = randomBytes(MiB)
    writeFileSync(path, two)
    t.ok(readFileSync(path).equals(two), 'the new content, not the copy of the old')
    const three = randomBytes(MiB - 5)
    writeFileSync(join(b.dir, 'rewrite.bin'), three)
    t.ok(readFileSync(path).equals(three), 'another client\'s new content, not the copy')
  })
})


