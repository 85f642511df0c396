/**
 * Several large writers at once, each through its own block size, with
 * writeback pressure (a small write_mb, so writes wait for uploads while
 * others are copied into chunks): every file reads back byte for byte. It
 * also guards the copy of each write out of libfuse's receive buffer: a
 * variant that reused that copy before the write had taken it into its chunk
 * failed here on every file (tried 2026-12-01, not kept: no faster).
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

function dd(src: string, dst: string, bs: string): Promise<number> {
  return new Promise((ok) => spawn('dd', [`if=${src}`, `of=${dst}`, `bs=${bs}`, 'conv=fsync', 'status=none'], { stdio: 'ignore' }).once('exit', (code) => ok(code ?? -1)))
}

t.test('concurrent large writes through reused buffers read back intact', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2 })
  const m = await mountCluster(t, c, { args: ['-o', 'write_mb=16'] })
  const src = mkdtempSync(join(tmpdir(), 'berth-bigw-'))
  t.teardown(() => rmSync(src, { recursive: true, force: true }))
  const sizes = ['1M', '1M', '256K', '128K', '64K', '1M']
  const files = sizes.map((bs, i) => {
    const data = randomBytes(12 * 1024 * 1024 + i * 4099)
    const path = join(src, `s${i}`)
    writeFileSync(path, data)
    return { bs, path, dst: join(m.dir, `f${i}`), hash: sha(data) }
  })
  const codes = await Promise.all(files.map((f) => dd(f.path, f.dst, f.bs)))
  t.same(codes, files.map(() => 0), 'every dd exits 0')
  for (const [i, f] of files.entries()) t.equal(sha(readFileSync(f.dst)), f.hash, `f${i} (bs=${f.bs}) reads back as written`)
})
