/**
 * `berth warmup PATH...`: read files (directories recursively) through their
 * berth mount, so later reads are served from the mount's block cache and the
 * kernel's page cache instead of the data nodes.
 *
 * Design: reading through the mount is the one path that fills exactly the
 * caches later reads use, checks every byte like any read (verified reads),
 * and needs no credentials beyond access to the files. What stays warm is
 * bounded by the mount's block cache (`-o cache_mb=N`): warming more than that
 * keeps the last part read.
 */
import { lstat, open, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { BerthError } from '../common/errors'
import { intFlag } from '../common/flags'
import { berthMountOf } from './berth-mounts'
import { Progress } from './progress'
import { bytes } from './status'

const HELP = `usage: berth warmup PATH... [--concurrency N] [--json] [--no-progress]
Reads every file under each PATH (directories recursively, symlinks not
followed) through its berth mount, so later reads come from the mount's block
cache (as large as the mount's -o cache_mb) and the kernel page cache.
  --concurrency N      files read at once (4)
  --json               a summary on stdout: {files, bytes, seconds, failed}
  --no-progress        no progress on stderr (a bar on a terminal, lines otherwise)

Exit status: 0 when every file was read, 1 when a file could not be read or a
PATH is not on a berth mount (nothing is read then), 2 on bad usage.
`

export interface WarmupSummary {
  paths: string[]
  files: number
  bytes: number
  seconds: number
  /** Files that could not be read, with the reason. */
  failed: Array<{ path: string; error: string }>
}

const READ_SIZE = 1024 * 1024

/** Regular files under `root` (or root itself), each inode once. */
async function collect(root: string, seen: Set<string>, out: Array<{ path: string; size: number }>): Promise<void> {
  const st = await lstat(root)
  if (st.isDirectory()) {
    for (const name of (await readdir(root)).sort()) await collect(join(root, name), seen, out)
  } else if (st.isFile()) {
    const key = `${st.dev}:${st.ino}`
    if (seen.has(key)) return
    seen.add(key)
    out.push({ path: root, size: st.size })
  }
}

async function readAll(path: string, buf: Buffer, onBytes: (n: number) => void): Promise<void> {
  const f = await open(path, 'r')
  try {
    for (;;) {
      const { bytesRead } = await f.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      onBytes(bytesRead)
    }
  } finally {
    await f.close()
  }
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      concurrency: { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-progress': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP)
    if (!values.help) process.exitCode = 2
    return
  }
  const concurrency = intFlag('--concurrency', values.concurrency, 4, 1, 64)
  // every PATH is checked before anything is read
  for (const p of positionals) {
    try {
      await lstat(p)
    } catch (err) {
      throw new BerthError('ENOENT', `${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (!berthMountOf(p)) throw new BerthError('EINVAL', `${p} is not on a berth mount (warmup reads through a mount; see \`berth mount\`)`)
  }
  const files: Array<{ path: string; size: number }> = []
  const seen = new Set<string>()
  for (const p of positionals) await collect(p, seen, files)
  const total = { files: files.length, bytes: files.reduce((a, f) => a + f.size, 0) }

  const started = Date.now()
  const done = { files: 0, bytes: 0 }
  const failed: WarmupSummary['failed'] = []
  const progress = new Progress({ label: 'warmup', enabled: !values['no-progress'], total })
  let next = 0
  const worker = async () => {
    const buf = Buffer.allocUnsafe(READ_SIZE)
    while (next < files.length) {
      const f = files[next++]!
      try {
        await readAll(f.path, buf, (n) => {
          done.bytes += n
          progress.update(done)
        })
      } catch (err) {
        failed.push({ path: f.path, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message })
      }
      done.files++
      progress.update(done)
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, files.length)) }, worker))
  } finally {
    progress.done()
  }
  const summary: WarmupSummary = { paths: positionals, files: done.files, bytes: done.bytes, seconds: (Date.now() - started) / 1000, failed }
  if (values.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n')
  else {
    for (const f of failed) process.stderr.write(`warmup: ${f.path}: ${f.error}\n`)
    const rate = summary.seconds > 0 ? ` (${bytes(summary.bytes / summary.seconds)}/s)` : ''
    process.stdout.write(`warmup: ${summary.files - failed.length} file(s), ${bytes(summary.bytes)} read in ${summary.seconds.toFixed(1)} s${rate}${failed.length ? `; ${failed.length} failed` : ''}\n`)
  }
  if (failed.length) process.exitCode = 1
}
