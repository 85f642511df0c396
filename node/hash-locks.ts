/**
 * One lock per block name, held only for a few file-system calls: a PUT that
 * finds the block stored and touches it, a new copy's link, and a conditional
 * delete's stat + rename are atomic with respect to each other. Without it a
 * delete could stat an old mtime, a deduplicated PUT touch the copy and answer
 * "stored", and the delete then trash the copy the PUT vouched for.
 */
export class HashLocks {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T>(hash: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(hash) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((r) => (release = r))
    const tail = before.then(() => mine)
    this.tails.set(hash, tail)
    await before
    try {
      return await fn()
    } finally {
      release()
      if (this.tails.get(hash) === tail) this.tails.delete(hash)
    }
  }
}
