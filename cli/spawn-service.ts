/**
 * Runs one berth service (`berth meta`, `berth node`, `berth mount`) as a child
 * process and waits for its `{"event":"ready"}` line on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { NODE_FLAGS, serviceEnv } from '../common/node-flags'
import { stopChild } from './nats-server'

export const BERTH_BIN = join(__dirname, '..', '..', 'bin', 'berth.js')

export interface ServiceHandle {
  child: ChildProcess
  pid: number
  /** Fields of the ready event (e.g. id and url of a data node). */
  ready: Record<string, unknown>
  /** Everything the child wrote to stderr so far (last 64 KiB). */
  stderr(): string
  stop(): Promise<void>
  /** SIGKILL, resolved when gone. */
  kill(): Promise<void>
}

export async function spawnService(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; readyTimeoutMs?: number; inheritStderr?: boolean } = {},
): Promise<ServiceHandle> {
  // BERTH_NODE_ARGS passes node flags to every child (e.g. --cpu-prof for profiling a cluster)
  const nodeArgs = (process.env.BERTH_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const child = spawn(process.execPath, [...NODE_FLAGS, ...nodeArgs, BERTH_BIN, ...args], {
    env: serviceEnv(args[0], { ...process.env, ...opts.env }),
    stdio: ['ignore', 'pipe', opts.inheritStderr ? 'inherit' : 'pipe'],
  })
  let err = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (c: string) => {
    err = (err + c).slice(-65536)
  })
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = ''
    // a service that cannot start says why in a {"event":"failed"} line (berth mount does)
    let failed: string | undefined
    const timeout = opts.readyTimeoutMs ?? 15_000
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`berth ${args[0]} not ready within ${timeout} ms\n${err}`))
    }, timeout)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(failed !== undefined ? `berth ${args[0]}: ${failed}` : `berth ${args[0]} exited (${code ?? signal}) before ready\n${err}`))
    })
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (c: string) => {
      out += c
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue
        try {
          const ev = JSON.parse(line) as Record<string, unknown>
          if (ev.event === 'failed') failed = String(ev.message)
          if (ev.event === 'ready') {
            clearTimeout(timer)
            child.removeAllListeners('exit')
            resolve(ev)
            return
          }
        } catch {
          // partial line; wait for more
        }
      }
    })
  })
  child.stdout?.removeAllListeners('data')
  child.stdout?.resume()
  let stopping: Promise<void> | undefined
  return {
    child,
    pid: child.pid ?? -1,
    ready,
    stderr: () => err,
    stop() {
      stopping ??= stopChild(child)
      return stopping
    },
    kill() {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
      return new Promise((resolve) => {
        child.once('exit', () => resolve())
        child.kill('SIGKILL')
      })
    },
  }
}
