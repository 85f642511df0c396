/**
 * Child processes for the write-path mount tests (issue 7): line writers,
 * an O_APPEND appender and a reader loop as small node scripts, run as
 * separate processes so the kernel sees separate openers.
 */
import { spawn } from 'node:child_process'

export const LINE = 64

/** Line `i` of writer `who`: exactly 64 bytes, newline last. */
export function line(who: string, i: number): string {
  return `${who} ${i} `.padEnd(LINE - 1, '.') + '\n'
}

// the child scripts get their parameters as argv, so one source serves all runs
export const WRITER = `
const fs = require('node:fs')
const [path, who, n, flags] = process.argv.slice(1)
const fd = fs.openSync(path, flags)
for (let i = 0; i < Number(n); i++) fs.writeSync(fd, (who + ' ' + i + ' ').padEnd(${LINE - 1}, '.') + '\\n')
fs.closeSync(fd)
`

/** Appends \`n\` lines, each with its own open(O_APPEND), write, close. */
export const APPENDER = `
const fs = require('node:fs')
const [path, who, n] = process.argv.slice(1)
for (let i = 0; i < Number(n); i++) {
  const fd = fs.openSync(path, 'a')
  fs.writeSync(fd, (who + ' ' + i + ' ').padEnd(${LINE - 1}, '.') + '\\n')
  fs.closeSync(fd)
}
`

/**
 * Reads the file whole (open, read, close) until \`stop\` exists; reports reads
 * and NUL sightings. A read that saw NULs is described (at most 5): the size
 * fstat gave, the bytes read, where the NULs were (first, last, how many, how
 * many runs of them) and when (ms since the reader started), so a rare one in
 * CI says which bytes the kernel or the mount got wrong.
 */
export const READER = `
const fs = require('node:fs')
const [path, stop] = process.argv.slice(1)
const started = Date.now()
let reads = 0, nulReads = 0, nulBytes = 0
const seen = []
while (!fs.existsSync(stop)) {
  let data, size = -1
  try {
    const fd = fs.openSync(path, 'r')
    try {
      size = fs.fstatSync(fd).size
      data = fs.readFileSync(fd)
    } finally { fs.closeSync(fd) }
  } catch { continue }
  reads++
  let n = 0, first = -1, last = -1, runs = 0
  for (let i = 0; i < data.length; i++) {
    if (data[i] !== 0) continue
    if (n === 0) first = i
    if (i === 0 || data[i - 1] !== 0) runs++
    n++
    last = i
  }
  if (n) {
    nulReads++
    nulBytes += n
    if (seen.length < 5) seen.push({ atMs: Date.now() - started, size, got: data.length, first, last, nuls: n, runs })
  }
}
process.stdout.write(JSON.stringify({ reads, nulReads, nulBytes, seen }))
`

export function runNode(script: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-4000)))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`child failed (${code ?? signal}): ${err}`))
    })
  })
}

/** Lines of `text` that are not exactly one of `expected`, and expected lines missing. */
export function compareLines(text: string, expected: string[]): { missing: number; bad: number } {
  const got = new Map<string, number>()
  let bad = 0
  for (const l of text.split(/(?<=\n)/)) {
    if (l === '') continue
    got.set(l, (got.get(l) ?? 0) + 1)
  }
  const want = new Set(expected)
  for (const [l, n] of got) if (!want.has(l)) bad += n
  let missing = 0
  for (const l of expected) if (!got.has(l)) missing++
  return { missing, bad }
}

