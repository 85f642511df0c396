// The lost-writes races of issue 7 on a real mount (docs/semantics.md#writes,
// "Inside one mount"): (a) one process writes 4,000 x 64 B lines through one fd
// while another opens, reads and closes the file in a loop; (b) two processes
// append 200 lines each with O_APPEND, opening and closing the file for every
// line as a shell's `echo >> log` loop does. Every line must be there afterwards,
// and no reader may ever see NUL bytes (nothing here writes a NUL).
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

// WRITE_PATH_RUNS: fewer runs to measure the old code, where one run takes ~30 s
const RUNS = Number(process.env.WRITE_PATH_RUNS ?? 20)
const LINES = 4000
const APPEND_LINES = 200
const LINE = 64

/** Line `i` of writer `who`: exactly 64 bytes, newline last. */
function line(who: string, i: number): string {
  return `${who} ${i} `.padEnd(LINE - 1, '.') + '\n'
}

// the child scripts get their parameters as argv, so one source serves all runs
const WRITER = `
const fs = require('node:fs')
const [path, who, n, flags] = process.argv.slice(1)
const fd = fs.openSync(path, flags)
for (let i = 0; i < Number(n); i++) fs.writeSync(fd, (who + ' ' + i + ' ').padEnd(${LINE - 1}, '.') + '\\n')
fs.closeSync(fd)
`

/** Appends \`n\` lines, each with its own open(O_APPEND), write, close. */
const APPENDER = `
const fs = require('node:fs')
const [path, who, n] = process.argv.slice(1)
for (let i = 0; i < Number(n); i++) {
  const fd = fs.openSync(path, 'a')
  fs.writeSync(fd, (who + ' ' + i + ' ').padEnd(${LINE - 1}, '.') + '\\n')
  fs.closeSync(fd)
}
`

/** Reads the file whole (open, read, close) until \`stop\` exists; reports reads and NUL sightings. */
const READER = `
const fs = require('node:fs')
const [path, stop] = process.argv.slice(1)
let reads = 0, nulReads = 0, nulBytes = 0
while (!fs.existsSync(stop)) {
  let data
  try { data = fs.readFileSync(path) } catch { continue }
  reads++
  let n = 0
  for (const b of data) if (b === 0) n++
  if (n) { nulReads++; nulBytes += n }
}
process.stdout.write(JSON.stringify({ reads, nulReads, nulBytes }))
`

function runNode(script: string, args: string[], timeoutMs = 120_000): Promise<string> {
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
function compareLines(text: string, expected: string[]): { missing: number; bad: number } {
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

t.test('lost writes on one mount (issue 7)', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  await t.test(`one writer (${LINES} x ${LINE} B through one fd) and a reader loop, ${RUNS} runs`, async (t) => {
    let failedRuns = 0
    let lost = 0
    let nulReads = 0
    let reads = 0
    const scratch = t.testdir()
    for (let run = 0; run < RUNS; run++) {
      const path = join(m.dir, `wr-${run}.txt`)
      const stop = join(scratch, `stop-${run}`)
      writeFileSync(path, '')
      const reader = runNode(READER, [path, stop])
      const writer = runNode(WRITER, [path, `r${run}`, String(LINES), 'w'])
      const failed = await writer.then(
        () => undefined,
        (err: Error) => err,
      )
      writeFileSync(stop, '')
      if (failed) t.fail(`run ${run}: writer failed: ${failed.message}`)
      const seen = JSON.parse(await reader) as { reads: number; nulReads: number; nulBytes: number }
      const text = readFileSync(path, 'latin1')
      const expected = Array.from({ length: LINES }, (_, i) => line(`r${run}`, i))
      const { missing, bad } = compareLines(text, expected)
      const exact = text === expected.join('')
      if (!exact) failedRuns++
      lost += missing
      reads += seen.reads
      nulReads += seen.nulReads
      if (!exact || seen.nulReads) t.comment(`run ${run}: ${missing} lines missing, ${bad} bad lines, size ${text.length}; reader: ${seen.reads} reads, ${seen.nulReads} with NULs`)
    }
    t.comment(`writer/reader: ${failedRuns}/${RUNS} runs lost data, ${lost} of ${RUNS * LINES} lines missing; ${nulReads} of ${reads} reads saw NUL bytes`)
    t.equal(failedRuns, 0, 'every run reads back exactly what was written')
    t.equal(nulReads, 0, 'no reader ever saw NUL bytes')
  })

  await t.test(`two O_APPEND writers, ${APPEND_LINES} lines each, ${RUNS} runs`, async (t) => {
    let failedRuns = 0
    let kept = 0
    for (let run = 0; run < RUNS; run++) {
      const path = join(m.dir, `app-${run}.txt`)
      writeFileSync(path, '')
      await Promise.all(['a', 'b'].map((w) => runNode(APPENDER, [path, `${w}${run}`, String(APPEND_LINES)])))
      const text = readFileSync(path, 'latin1')
      const expected = ['a', 'b'].flatMap((w) => Array.from({ length: APPEND_LINES }, (_, i) => line(`${w}${run}`, i)))
      const { missing, bad } = compareLines(text, expected)
      kept += expected.length - missing
      const ok = missing === 0 && bad === 0 && text.length === expected.length * LINE
      if (!ok) {
        failedRuns++
        t.comment(`run ${run}: ${expected.length - missing} of ${expected.length} lines kept, ${bad} bad lines, size ${text.length}`)
      }
    }
    t.comment(`O_APPEND: ${failedRuns}/${RUNS} runs lost lines; ${kept} of ${RUNS * 2 * APPEND_LINES} lines kept`)
    t.equal(failedRuns, 0, 'all lines of both writers in every run')
  })
})
