// A buffered write racing a page-cache invalidation on one mount: the NUL
// bytes a reader once saw in test/write-path-mount (CI at 1806644).
//
// The kernel (fs/fuse/file.c, fuse_fill_write_pages) copies a write into a
// page that is already uptodate and unlocks that page *before* it sends the
// WRITE. Anything that drops the inode's pages in that window drops the
// write's bytes with them; a READ of that page then reaches the mount before
// the WRITE, is answered from the old content, and the kernel caches the
// page with zeros past the old end of file. When the WRITE's reply moves
// the size past them, readers see NULs until the next invalidation.
//
// The window is microseconds long in real use. Here uffd-writer holds it
// open: the second page of its write comes from a userfaultfd page answered
// only when the test says so. While it is held, the test does what a reader
// loop does (fstat, then read the file whole) and then lets the write finish.
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const PAGE = 4096

/** Compiles test/helpers/uffd-writer.c into `dir`. */
function buildWriter(dir: string): string {
  const bin = join(dir, 'uffd-writer')
  const src = join(__dirname, '..', '..', 'test', 'helpers', 'uffd-writer.c')
  const cc = spawnSync('gcc', ['-O1', '-Wall', '-Werror', '-pthread', '-o', bin, src], { encoding: 'utf8' })
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`)
  return bin
}

interface HeldWrite {
  /** Resolves once the write is held inside the kernel (its page is copied and unlocked). */
  held: Promise<void>
  /** Lets the write go on; resolves with the bytes it wrote. */
  release(): Promise<number>
}

function holdWrite(bin: string, path: string, offset: number, head: number, tail: number, go: string): HeldWrite {
  const child = spawn(bin, [path, String(offset), String(head), String(tail), go], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const lines = createInterface({ input: child.stdout })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  let wrote = -1
  const held = new Promise<void>((resolve, reject) => {
    lines.on('line', (l) => {
      if (l === 'fault') resolve()
      const m = /^wrote (\d+)$/.exec(l)
      if (m) wrote = Number(m[1])
    })
    void exited.then((code) => reject(new Error(`uffd-writer exited (${code}) before its write was held: ${stderr}`)))
  })
  return {
    held,
    release: async () => {
      writeFileSync(go, '')
      const code = await exited
      if (code !== 0) throw new Error(`uffd-writer failed (${code}): ${stderr}`)
      return wrote
    },
  }
}

/** Where the NULs are in `buf`: first, last and how many, or undefined. */
function nuls(buf: Buffer): { first: number; last: number; count: number } | undefined {
  const first = buf.indexOf(0)
  if (first < 0) return undefined
  let count = 0
  for (const b of buf) if (b === 0) count++
  return { first, last: buf.lastIndexOf(0), count }
}

t.test('a write held after its page is filled, while a reader fstats and reads the file', async (t) => {
  // not t.testdir(): startCluster's own test folder is the same path
  const scratch = mkdtempSync(join(tmpdir(), 'berth-uffd-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  const bin = buildWriter(scratch)
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)

  // Each case: the file's first 1,000 bytes committed, then a write W1 of 100
  // bytes through a handle kept open (the mount now holds a new mtime the
  // kernel has not seen), then the held write W2 fills the rest of page 0
  // and 500 bytes of page 1.
  const cases: Array<{ name: string; fsync: boolean; between: (path: string) => void }> = [
    // the reader loop of test/write-path-mount: fstat (a GETATTR showing W1's mtime) and read
    { name: 'fstat then read', fsync: false, between: (path) => void (statSync(path), readFileSync(path)) },
    // a reader that only opens and reads
    { name: 'read only', fsync: false, between: (path) => void (writeFileSync('/tmp/berth-inval-once', ''), readFileSync(path)) },
    // W1 committed first: the reader's open revalidates the file with meta
    { name: 'W1 fsynced, then fstat and read', fsync: true, between: (path) => void (statSync(path), readFileSync(path)) },
  ]
  for (const [i, k] of cases.entries()) {
    await t.test(k.name, async (t) => {
      const path = join(m.dir, `race-${i}.txt`)
      writeFileSync(path, 'A'.repeat(1000))
      t.equal(readFileSync(path, 'latin1'), 'A'.repeat(1000), 'page 0 is in the page cache, uptodate')
      const fd = openSync(path, 'r+')
      try {
        writeSync(fd, Buffer.from('W'.repeat(100)), 0, 100, 1000)
        if (k.fsync) fsyncSync(fd)
        const head = PAGE - 1100
        const w = holdWrite(bin, path, 1100, head, 500, join(scratch, `go-${i}`))
        await w.held
        k.between(path)
        t.equal(await w.release(), head + 500, 'the held write wrote all its bytes')
        const want = Buffer.from('A'.repeat(1000) + 'W'.repeat(100) + 'B'.repeat(head) + 'C'.repeat(500), 'latin1')
        const got = readFileSync(path)
        t.same(nuls(got), undefined, 'no NUL bytes read back')
        t.ok(got.equals(want), `the file reads back as written (${got.length} bytes, want ${want.length})`)
      } finally {
        closeSync(fd)
      }
      const after = readFileSync(path)
      t.same(nuls(after), undefined, 'no NUL bytes after the last close')
    })
  }
})
