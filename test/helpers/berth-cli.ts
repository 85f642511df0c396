/**
 * Runs the `berth` CLI as a child process against a test cluster, with the
 * client's credentials, and collects its exit code and output.
 */
import { execFile } from 'node:child_process'
import type { Test } from 'tap'
import { BERTH_BIN } from '../../cli/spawn-service'
import type { TestCluster } from './cluster'

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

export function berthCli(c: TestCluster | null, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  const conn = c ? ['--nats', c.nats.url] : []
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BERTH_BIN, ...args, ...conn],
      { env: { ...process.env, ...(c ? c.env('client') : {}) }, cwd: opts.cwd, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    )
  })
}

/** Runs with `--json` and parses stdout; a failure to parse fails the test with the output. */
export async function berthJson<T>(t: Test, c: TestCluster | null, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; json: T; stderr: string }> {
  const r = await berthCli(c, [...args, '--json'], opts)
  try {
    return { code: r.code, json: JSON.parse(r.stdout) as T, stderr: r.stderr }
  } catch {
    t.fail(`berth ${args.join(' ')} printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`)
    throw new Error('no JSON')
  }
}
