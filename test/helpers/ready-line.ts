/**
 * Waiting for the JSON ready line a supervisor-facing command prints with
 * `--json` (`berth up`, the installed `berth up` of the pack test).
 *
 * The deadline timer is cleared once the line arrives or the child exits: a
 * pending timer keeps the tap process alive after its last test, which cost
 * the dashboard-up file 54 s of idle waiting per run.
 */
import type { ChildProcess } from 'node:child_process'

/** Resolves the first stdout line containing `"event":"ready"`, parsed; rejects on exit or after `timeoutMs`. */
export function readyLine<T>(child: ChildProcess, timeoutMs: number, stderr: () => string, what = 'berth up'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let out = ''
    const onData = (c: string) => {
      out += c
      const line = out.split('\n').find((l) => l.includes('"event":"ready"'))
      if (line) finish(() => resolve(JSON.parse(line) as T))
    }
    const onExit = (code: number | null) => finish(() => reject(new Error(`${what} exited ${code}\n${stderr()}`)))
    const timer = setTimeout(() => finish(() => reject(new Error(`${what} not ready in ${timeoutMs / 1000} s\n${stderr()}`))), timeoutMs)
    const finish = (settle: () => void) => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.off('exit', onExit)
      settle()
    }
    child.stdout?.setEncoding('utf8').on('data', onData)
    child.once('exit', onExit)
  })
}
