/**
 * Fail-stop for a block folder that is gone or replaced under a running node.
 *
 * A node whose folder was removed (or whose volume was unmounted, leaving an
 * empty directory of another filesystem at the same path) used to keep
 * heartbeating "up": placement kept choosing it, every PUT and GET failed
 * with 500, and meta went on listing copies it no longer had. Data is not at
 * risk (clients place and read around it, reconciliation finds the copies
 * missing), but the cluster limps. Like an HDFS DataNode whose only volume
 * failed, the node stops instead: its heartbeats end, meta declares it dead
 * and repair re-protects its blocks elsewhere, and the supervisor's restart
 * fails with the reason at once.
 *
 * The folder is checked by identity (device and inode of the blocks folder as
 * opened), a few times in a row, so one slow or interrupted stat does not stop
 * a healthy node.
 */
import { stat } from 'node:fs/promises'

/** Consecutive failed checks before the node stops (checked every second). */
export const FAILED_CHECKS_TO_STOP = 3

export class StoreRootWatch {
  private failures = 0

  private constructor(
    private readonly path: string,
    private readonly dev: number,
    private readonly ino: number,
  ) {}

  static async open(path: string): Promise<StoreRootWatch> {
    const st = await stat(path)
    return new StoreRootWatch(path, st.dev, st.ino)
  }

  /** Why the folder can no longer be trusted, once FAILED_CHECKS_TO_STOP checks in a row failed; else null. */
  async check(): Promise<string | null> {
    const why = await this.problem()
    this.failures = why === null ? 0 : this.failures + 1
    return this.failures >= FAILED_CHECKS_TO_STOP ? why : null
  }

  private async problem(): Promise<string | null> {
    try {
      const st = await stat(this.path)
      if (st.dev !== this.dev || st.ino !== this.ino) return `the block folder ${this.path} was replaced (another directory is at its path now: a volume unmounted or the folder recreated)`
      return null
    } catch (err) {
      return `the block folder ${this.path} is gone or unreadable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
    }
  }
}
