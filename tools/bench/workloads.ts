/**
 * One function per workload, each run against one directory and timed with
 * process.hrtime.bigint(). Only the measured operations are inside the timer;
 * data generation is a buffer copy and the verification of what is read back
 * is a memcmp, both identical on either side. Every read is checked against
 * the pattern that was written: a fast wrong answer is a failure, not a figure.
 */
import { execFile } from 'node:child_process'
import { mkdir, open, readFile, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { MiB, type Pattern, seededRandom } from './pattern'

const run = promisify(execFile)
const PAGE = 4096

export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

/** Writes `mib` MiB in 1 MiB writes, fsyncs, closes; returns seconds including fsync and close. */
export async function seqWrite(path: string, mib: number, pattern: Pattern): Promise<number> {
  const buf = Buffer.allocUnsafe(MiB)
  const start = process.hrtime.bigint()
  const fh = await open(path, 'w')
  try {
    for (let i = 0; i < mib; i++) {
      pattern.piece(i, buf)
      const { bytesWritten } = await fh.write(buf, 0, MiB, null)
      if (bytesWritten !== MiB) throw new Error(`short write at piece ${i}: ${bytesWritten} bytes`)
    }
    await fh.sync()
  } finally {
    await fh.close()
  }
  return secondsSince(start)
}

/** Reads the whole file through a fresh open in 1 MiB reads; returns seconds. */
export async function seqRead(path: string, mib: number, pattern: Pattern): Promise<number> {
  const buf = Buffer.allocUnsafe(MiB)
  const want = Buffer.allocUnsafe(MiB)
  const start = process.hrtime.bigint()
  const fh = await open(path, 'r')
  try {
    for (let i = 0; i < mib; i++) {
      let got = 0
      while (got < MiB) {
        const { bytesRead } = await fh.read(buf, got, MiB - got, i * MiB + got)
        if (bytesRead === 0) throw new Error(`${path}: file ends at ${i * MiB + got} bytes, expected ${mib * MiB}`)
        got += bytesRead
      }
      if (!buf.equals(pattern.piece(i, want))) throw new Error(`${path}: wrong data in MiB ${i}`)
    }
  } finally {
    await fh.close()
  }
  return secondsSince(start)
}

/**
 * `count` 4 KiB reads at page-aligned offsets drawn from a fixed seed, `depth`
 * of them in flight on one open file. Returns seconds.
 */
export async function randomReads(path: string, mib: number, count: number, depth: number, seed: number, pattern: Pattern): Promise<number> {
  const rand = seededRandom(seed)
  const pages = (mib * MiB) / PAGE
  const offsets = Array.from({ length: count }, () => Math.floor(rand() * pages) * PAGE)
  let next = 0
  const start = process.hrtime.bigint()
  const fh = await open(path, 'r')
  try {
    const worker = async (): Promise<void> => {
      const buf = Buffer.allocUnsafe(PAGE)
      while (next < offsets.length) {
        const offset = offsets[next++]!
        const { bytesRead } = await fh.read(buf, 0, PAGE, offset)
        if (bytesRead !== PAGE || !buf.equals(pattern.expected(offset, PAGE, MiB))) {
          throw new Error(`${path}: wrong data in the 4 KiB at offset ${offset}`)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, Math.min(depth, count)) }, worker))
  } finally {
    await fh.close()
  }
  return secondsSince(start)
}

export interface SmallFileSeconds {
  create: number
  stat: number
  read: number
  delete: number
}

/**
 * One file at a time, as a build or an unpacker would: create+write+close,
 * then stat each, read each, unlink each. Returns seconds per phase.
 */
export async function smallFiles(dir: string, count: number, pattern: Pattern): Promise<SmallFileSeconds> {
  await mkdir(dir)
  const name = (i: number): string => join(dir, `f${String(i).padStart(6, '0')}`)
  const buf = Buffer.allocUnsafe(PAGE)
  try {
    let start = process.hrtime.bigint()
    for (let i = 0; i < count; i++) {
      const fh = await open(name(i), 'wx')
      try {
        await fh.write(pattern.piece(i, buf), 0, PAGE, 0)
      } finally {
        await fh.close()
      }
    }
    const create = secondsSince(start)

    start = process.hrtime.bigint()
    for (let i = 0; i < count; i++) {
      const st = await stat(name(i))
      if (st.size !== PAGE) throw new Error(`${name(i)}: size ${st.size}, expected ${PAGE}`)
    }
    const statSeconds = secondsSince(start)

    start = process.hrtime.bigint()
    for (let i = 0; i < count; i++) {
      const data = await readFile(name(i))
      if (!data.equals(pattern.piece(i, buf))) throw new Error(`${name(i)}: wrong content`)
    }
    const read = secondsSince(start)

    start = process.hrtime.bigint()
    for (let i = 0; i < count; i++) await unlink(name(i))
    const del = secondsSince(start)

    return { create, stat: statSeconds, read, delete: del }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** `tar -xf` of the tarball into a new directory; returns seconds. The tree is removed afterwards, untimed. */
export async function extract(tarball: string, dir: string): Promise<number> {
  await mkdir(dir)
  try {
    const start = process.hrtime.bigint()
    await run('tar', ['-xf', tarball, '-C', dir], { maxBuffer: 16 * 1024 * 1024 })
    return secondsSince(start)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
