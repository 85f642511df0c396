/**
 * Keeps one child of `berth up` running: when it dies without being asked to
 * (any exit but 0), it is logged and started again after a backoff (1 s, doubling to 30 s; back
 * to 1 s once a run lasted a minute), so a crash loop neither spins the CPU nor
 * gives up for good.
 */
import type { ChildProcess } from 'node:child_process'

export interface ChildHandle {
  child: ChildProcess
  stop(): Promise<void>
}

export interface SuperviseOptions {
  minBackoffMs?: number
  maxBackoffMs?: number
  /** A run at least this long resets the backoff. */
  stableMs?: number
}

export class Supervised<H extends ChildHandle> {
  current: H
  restarts = 0
  private stopping = false
  private timer: NodeJS.Timeout | undefined
  private backoffMs: number
  private startedAt = Date.now()
  private readonly min: number
  private readonly max: number
  private readonly stableMs: number

  constructor(
    readonly name: string,
    first: H,
    private readonly start: () => Promise<H>,
    private readonly say: (line: string) => void,
    opts: SuperviseOptions = {},
  ) {
    this.min = opts.minBackoffMs ?? 1000
    this.max = opts.maxBackoffMs ?? 30_000
    this.stableMs = opts.stableMs ?? 60_000
    this.backoffMs = this.min
    this.current = first
    this.watch(first)
  }

  private watch(h: H): void {
    h.child.once('exit', (code, signal) => {
      if (this.stopping || h !== this.current) return
      // exit 0 is a stop someone asked for (SIGTERM to that child, or `umount`
      // of berth up's mount): respect it rather than undo it
      if (code === 0) {
        this.say(`${this.name} (pid ${h.child.pid}) stopped (exit 0); not restarting it`)
        return
      }
      if (Date.now() - this.startedAt >= this.stableMs) this.backoffMs = this.min
      this.say(`${this.name} (pid ${h.child.pid}) exited unexpectedly (${code ?? signal}); restarting in ${(this.backoffMs / 1000).toFixed(0)} s`)
      this.schedule()
    })
  }

  private schedule(): void {
    const wait = this.backoffMs
    this.backoffMs = Math.min(this.max, this.backoffMs * 2)
    this.timer = setTimeout(() => void this.restart(), wait)
  }

  private async restart(): Promise<void> {
    if (this.stopping) return
    try {
      const h = await this.start()
      if (this.stopping) {
        await h.stop()
        return
      }
      this.current = h
      this.startedAt = Date.now()
      this.restarts++
      this.say(`${this.name} restarted (pid ${h.child.pid})`)
      this.watch(h)
    } catch (err) {
      this.say(`${this.name} failed to restart: ${(err as Error).message.split('\n')[0]}; retrying in ${(this.backoffMs / 1000).toFixed(0)} s`)
      this.schedule()
    }
  }

  /** Stops for good (no more restarts); safe to call twice. */
  async stop(): Promise<void> {
    this.stopping = true
    clearTimeout(this.timer)
    await this.current.stop()
  }
}
