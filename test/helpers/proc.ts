/**
 * Watching real processes from tests: resident memory sampled from
 * /proc/<pid>/status, shell commands run without blocking the event loop (so
 * samplers keep ticking), and calls bounded by a timer so a hang fails the
 * test instead of stalling it.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

export const MiB = 1024 * 1024

/** VmRSS of `pid` in bytes, or null once the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : null
  } catch {
    return null
  }
}

export interface RssSampler {
  /** Stops sampling; returns the highest VmRSS seen (bytes) and the sample count. */
  stop(): { max: number; samples: number }
}

export function sampleRss(pid: number, everyMs = 200): RssSampler {
  let max = 0
  let samples = 0
  const take = () => {
    const r = rssBytes(pid)
    if (r === null) return
    samples++
    if (r > max) max = r
  }
  take()
  const timer = setInterval(take, everyMs)
  return {
    stop() {
      clearInterval(timer)
      take()
      return { max, samples }
    },
  }
}

/** Runs `cmd` under bash (pipefail) asynchronously; resolves with stdout, rejects on a non-zero exit. */
export function shAsync(cmd: string, opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `set -euo pipefail; ${cmd}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-8192)))
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          child.kill('SIGKILL')
        }, opts.timeoutMs)
      : undefined
    child.once('exit', (code, signal) => {
      if (timer) clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`\`${cmd}\` failed (${code ?? signal}): ${err}`))
    })
  })
}

export interface Outcome<T> {
  ok: boolean
  value?: T
  /** errno name of the failure (EIO, ETIMEDOUT, ...) or HANG. */
  code?: string
  ms: number
}

/**
 * Settles `p` or gives up after `hangMs` with code HANG (the call itself may
 * stay stuck in the kernel; the mount's teardown detaches it).
 */
export async function bounded<T>(p: Promise<T>, hangMs = 20_000): Promise<Outcome<T>> {
  const start = Date.now()
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, code: 'HANG', ms: Date.now() - start }), hangMs)
  })
  const done = p.then(
    (value): Outcome<T> => ({ ok: true, value, ms: Date.now() - start }),
    (err: unknown): Outcome<T> => ({ ok: false, code: String((err as { code?: unknown }).code ?? (err as Error).message), ms: Date.now() - start }),
  )
  try {
    return await Promise.race([done, hang])
  } finally {
    clearTimeout(timer)
  }
}
