/** A counting semaphore: bounds in-flight uploads and fetches (backpressure). */
export class Semaphore {
  private waiters: Array<() => void> = []
  constructor(private free: number) {}

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--
      return
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  release(): void {
    const next = this.waiters.shift()
    if (next) next()
    else this.free++
  }
}

/** Serializes async sections per key (e.g. one flush/commit per inode at a time). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve()
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn)
    this.tail = result.then(
      () => undefined,
      () => undefined,
    )
    return result
  }
}
