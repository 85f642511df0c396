/**
 * How soon a change made through one mount shows on another mount of the same
 * cluster (issue 8's acceptance: within 200 ms, never after the kernel's TTL).
 * Each trial changes one thing on A (chmod, write+close, rename or unlink, in
 * turn) and polls B with what users run (stat, read, exists) until B sees it.
 *
 *   node dist/tools/bench/inval-latency.js MOUNT_A MOUNT_B [TRIALS=1000]
 *
 * Prints one JSON line: per kind and overall, p50/p99/max in ms.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `seen` every ~1 ms; the ms until it held, or Infinity after `limitMs`. */
async function until(seen: () => boolean, limitMs: number): Promise<number> {
  const start = process.hrtime.bigint()
  for (;;) {
    if (seen()) return Number(process.hrtime.bigint() - start) / 1e6
    if (Number(process.hrtime.bigint() - start) / 1e6 > limitMs) return Infinity
    await sleep(1)
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}

export async function measure(a: string, b: string, trials: number, limitMs = 5000): Promise<Record<string, { n: number; p50: number; p99: number; max: number }>> {
  const da = join(a, `inval-${process.pid}`)
  const db = join(b, `inval-${process.pid}`)
  mkdirSync(da)
  const times: Record<string, number[]> = { chmod: [], write: [], rename: [], unlink: [] }
  try {
    writeFileSync(join(da, 'f'), 'v0')
    // B knows every name first: stale entries and attributes are in play
    await until(() => existsSync(join(db, 'f')), limitMs)
    for (let i = 0; i < trials; i++) {
      const kind = (['chmod', 'write', 'rename', 'unlink'] as const)[i % 4]!
      const fa = join(da, 'f')
      const fb = join(db, 'f')
      statSync(fb)
      readFileSync(fb)
      if (kind === 'chmod') {
        const mode = i % 8 < 4 ? 0o600 : 0o644
        chmodSync(fa, mode)
        times.chmod!.push(await until(() => (statSync(fb).mode & 0o777) === mode, limitMs))
      } else if (kind === 'write') {
        const v = `v${i}`
        writeFileSync(fa, v)
        times.write!.push(await until(() => readFileSync(fb, 'utf8') === v, limitMs))
      } else if (kind === 'rename') {
        existsSync(join(db, 'g'))
        renameSync(fa, join(da, 'g'))
        times.rename!.push(await until(() => !existsSync(fb) && existsSync(join(db, 'g')), limitMs))
        renameSync(join(da, 'g'), fa)
        await until(() => existsSync(fb), limitMs)
      } else {
        unlinkSync(fa)
        times.unlink!.push(await until(() => !existsSync(fb), limitMs))
        writeFileSync(fa, 'v0')
        await until(() => existsSync(fb), limitMs)
      }
    }
  } finally {
    rmSync(da, { recursive: true, force: true })
  }
  const all = Object.values(times).flat()
  const out: Record<string, { n: number; p50: number; p99: number; max: number }> = {}
  for (const [k, xs] of [...Object.entries(times), ['all', all] as const]) {
    out[k] = { n: xs.length, p50: +pct(xs, 50).toFixed(1), p99: +pct(xs, 99).toFixed(1), max: +Math.max(...xs).toFixed(1) }
  }
  return out
}

if (require.main === module) {
  const [a, b, n] = process.argv.slice(2)
  if (!a || !b) {
    process.stderr.write('usage: inval-latency MOUNT_A MOUNT_B [TRIALS]\n')
    process.exit(2)
  }
  void measure(a, b, Number(n ?? 1000)).then((r) => process.stdout.write(JSON.stringify(r) + '\n'))
}
