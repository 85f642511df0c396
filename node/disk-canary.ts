/**
 * Notices a disk that hangs while this process goes on: a dying disk behind
 * long I/O timeouts, a hung network block device, a frozen filesystem. The
 * event loop stays free, so heartbeats would go on and every peer would count
 * the node live while each PUT to it waits out its writer's deadline (30 s)
 * and the application's fsync fails (test/disk-stall).
 *
 * Every CANARY_EVERY_MS, when none is in flight, the canary writes and fsyncs
 * a small file in the store's temp folder. One that has not finished after
 * `stallMs` marks the disk stalled; its finishing marks it well again. Disk
 * calls go through libuv's thread pool (4 threads), so stuck PUT writes hold
 * the canary too, and one canary covers every kind of stuck call.
 *
 *   well ──canary in flight > stallMs──▶ stalled ──canary finished──▶ well
 *
 * A canary that fails (EIO, ENOSPC) is not a stall: the node's own errors
 * handle that (full disk, lost folder).
 */
import { open, unlink } from 'node:fs/promises'
import { join } from 'node:path'

export const CANARY_EVERY_MS = 2000

export class DiskCanary {
  private inFlightSince: number | null = null
  private lastStarted = 0
  private stalledNow = false
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly dir: string,
    private readonly stallMs: number,
    /** Hears every change: stalled, and what was stuck for how long. */
    private readonly onChange: (stalled: boolean, why: string) => void,
    private readonly clock: () => number = Date.now,
  ) {}

  get stalled(): boolean {
    return this.stalledNow
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), Math.min(500, this.stallMs / 4))
    this.timer.unref()
    this.tick()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  private tick(): void {
    const now = this.clock()
    if (this.inFlightSince !== null) {
      const age = now - this.inFlightSince
      if (!this.stalledNow && age >= this.stallMs) {
        this.stalledNow = true
        this.onChange(true, `a write and fsync of a small file has not finished in ${Math.round(age / 1000)} s`)
      }
      return
    }
    if (now - this.lastStarted < CANARY_EVERY_MS) return
    this.lastStarted = now
    this.inFlightSince = now
    void this.write().finally(() => {
      const took = this.clock() - (this.inFlightSince ?? now)
      this.inFlightSince = null
      if (this.stalledNow) {
        this.stalledNow = false
        this.onChange(false, `the canary write finished after ${Math.round(took / 1000)} s`)
      }
    })
  }

  private async write(): Promise<void> {
    const path = join(this.dir, `canary-${process.pid}`)
    try {
      const fh = await open(path, 'w', 0o644)
      try {
        await fh.write(`${this.clock()}\n`)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await unlink(path)
    } catch {
      // not a stall; the store's own calls report real errors
    }
  }
}
