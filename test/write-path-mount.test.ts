// The lost-writes race of issue 7 on a real mount (docs/semantics.md#writes,
// "Inside one mount"): one process writes 4,000 x 64 B lines through one fd
// while another opens, reads and closes the file in a loop. Every line must
// be there afterwards, and no reader may ever see NUL bytes (nothing here
// writes a NUL). The O_APPEND race is in write-path-append.test.ts.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'
import { compareLines, line, LINE, READER, runNode, WRITER } from './helpers/write-path-procs'
import { testDir } from './helpers/test-dir'

// WRITE_PATH_RUNS: fewer runs to measure the old code, where one run takes ~30 s
const RUNS = Number(process.env.WRITE_PATH_RUNS ?? 20)
const LINES = 4000

t.test('lost writes on one mount (issue 7)', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  await t.test(`one writer (${LINES} x ${LINE} B through one fd) and a reader loop, ${RUNS} runs`, async (t) => {
    let failedRuns = 0
    let lost = 0
    let nulReads = 0
    let reads = 0
    const scratch = testDir(t)
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
      const seen = JSON.parse(await reader) as { reads: number; nulReads: number; nulBytes: number; seen: unknown[] }
      const text = readFileSync(path, 'latin1')
      const expected = Array.from({ length: LINES }, (_, i) => line(`r${run}`, i))
      const { missing, bad } = compareLines(text, expected)
      const exact = text === expected.join('')
      if (!exact) failedRuns++
      lost += missing
      reads += seen.reads
      nulReads += seen.nulReads
      if (!exact || seen.nulReads) t.comment(`run ${run}: ${missing} lines missing, ${bad} bad lines, size ${text.length}; reader: ${seen.reads} reads, ${seen.nulReads} with NULs ${JSON.stringify(seen.seen)}`)
    }
    t.comment(`writer/reader: ${failedRuns}/${RUNS} runs lost data, ${lost} of ${RUNS * LINES} lines missing; ${nulReads} of ${reads} reads saw NUL bytes`)
    t.equal(failedRuns, 0, 'every run reads back exactly what was written')
    t.equal(nulReads, 0, 'no reader ever saw NUL bytes')
  })
})
