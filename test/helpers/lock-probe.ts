/**
 * A Python process that takes fcntl/flock locks on command
 * (test/helpers/lock-probe.py): tests drive several of them, on one mount or
 * on two, one syscall at a time. Killed at teardown.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'
import { PYTHON3 } from './python'

const SCRIPT = join(__dirname, '..', '..', '..', 'test', 'helpers', 'lock-probe.py')

export class LockProbe {
  readonly proc: ChildProcessWithoutNullStreams
  private readonly answers: string[] = []
  private readonly waiting: Array<(line: string) => void> = []
  readonly exited: Promise<number | null>

  constructor(t: Test) {
    this.proc = spawn(PYTHON3, [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)))
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const w = this.waiting.shift()
      if (w) w(line)
      else this.answers.push(line)
    })
    this.proc.stderr.on('data', (d: Buffer) => process.stderr.write(`lock-probe: ${d.toString()}`))
    t.teardown(() => this.kill())
  }

  /** A probe with `path` open as descriptor "f" (`mode` r, w or rw), the open asserted. */
  static async opened(t: Test, path: string, mode: 'r' | 'w' | 'rw' = 'rw'): Promise<LockProbe> {
    const p = new LockProbe(t)
    t.equal(await p.send(`open f ${path} ${mode}`), 'ok', `open ${path} ${mode}`)
    return p
  }

  get pid(): number {
    return this.proc.pid!
  }

  /** Sends one command; resolves with its answer line ("ok", "err EAGAIN", "lk w 0 10 123", ...). */
  send(command: string): Promise<string> {
    this.proc.stdin.write(command + '\n')
    const ready = this.answers.shift()
    if (ready !== undefined) return Promise.resolve(ready)
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal)
  }
}
