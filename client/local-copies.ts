/**
 * Whole-file local copies on the client's disk, the backing files of FUSE
 * passthrough (client/passthrough.ts, docs/architecture.md "Local copies and
 * passthrough").
 *
 * A copy is filled by the reads this mount answers anyway: the bytes of each
 * READ of a clean file are written at their offset. Once every byte of the
 * file at one content generation is there, the copy is complete, and a later
 * read-only open of that same generation and size reads it through the kernel
 * without asking this process. A copy is named by inode only: a new generation
 * starts it again from nothing, so a copy is never partly of two versions.
 *
 * The copies are a cache: the folder is emptied when the mount starts and
 * when it ends (a killed mount's folder goes when any mount starts), and the
 * least recently used copies not open for passthrough go when the total
 * would pass `maxBytes`.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, unlinkSync, write, writeFileSync, writeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { logger } from '../common/log'

const log = logger('local-copies')

/** Byte ranges [start, end), sorted and merged. */
export class RangeSet {
  private spans: Array<[number, number]> = []

  add(start: number, end: number): void {
    if (end <= start) return
    const out: Array<[number, number]> = []
    let s = start
    let e = end
    let placed = false
    for (const [a, b] of this.spans) {
      if (b < s) out.push([a, b])
      else if (a > e) {
        if (!placed) out.push([s, e])
        placed = true
        out.push([a, b])
      } else {
        s = Math.min(s, a)
        e = Math.max(e, b)
      }
    }
    if (!placed) out.push([s, e])
    this.spans = out
  }

  /** True when [0, size) is covered. */
  covers(size: number): boolean {
    if (size === 0) return true
    const first = this.spans[0]
    return first !== undefined && first[0] === 0 && first[1] >= size
  }

  clear(): void {
    this.spans = []
  }
}

export interface CopyVersion {
  gen: number
  size: number
}

export class LocalCopy {
  /** Bytes on the file. */
  readonly covered = new RangeSet()
  /** Bytes on the file or being written there. */
  readonly issued = new RangeSet()
  /** Writes not yet done; `complete` waits for them. */
  inFlight = 0
  private settled: Array<() => void> = []
  /** Set once a write failed: the copy is never trusted. */
  broken = false
  /** Dropped: its descriptor is (being) closed, so nothing may use it. */
  closed = false
  usedAt = Date.now()

  constructor(
    readonly ino: number,
    readonly path: string,
    readonly fd: number,
    public version: CopyVersion,
  ) {}

  /** Every byte of `version` is on disk (writes done, none failed). */
  get complete(): boolean {
    return !this.broken && this.inFlight === 0 && this.covered.covers(this.version.size)
  }

  /** Every byte of `version` is on disk or on its way (complete once idle(), unless a write fails). */
  get allIssued(): boolean {
    return !this.broken && this.issued.covers(this.version.size)
  }

  /** Resolves once the writes started so far are done. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.settled.push(resolve))
  }

  /**
   * Writes `data` at `pos`; `done` runs when it is on the file (or failed).
   * Writes in flight at once may land in any order: only bytes of one version
   * go through here (fills). A change of the content goes through putNow.
   */
  put(pos: number, data: Buffer, done?: () => void): void {
    this.inFlight++
    this.issued.add(pos, pos + data.length)
    write(this.fd, data, 0, data.length, pos, (err) => {
      if (err) {
        this.broken = true
        log.warn(`local copy of inode ${this.ino}: ${err.message}; it is no longer used`)
      } else this.covered.add(pos, pos + data.length)
      this.inFlight--
      done?.()
      if (this.inFlight === 0) for (const f of this.settled.splice(0)) f()
    })
  }

  /** Writes `data` at `pos` before returning (kept in order with every other putNow). */
  putNow(pos: number, data: Buffer): void {
    if (this.closed) return
    try {
      writeSync(this.fd, data, 0, data.length, pos)
      this.covered.add(pos, pos + data.length)
      this.issued.add(pos, pos + data.length)
    } catch (err) {
      this.broken = true
      log.warn(`local copy of inode ${this.ino}: ${(err as Error).message}; it is no longer used`)
    }
  }

  /** Cuts or extends the file to `size` (a truncate of the file it copies). */
  truncateNow(size: number): void {
    if (this.closed) return
    try {
      ftruncateSync(this.fd, size)
      // an extension reads as zeros, on the copy as on the file
      if (size > this.version.size) {
        this.covered.add(this.version.size, size)
        this.issued.add(this.version.size, size)
      }
      this.version = { ...this.version, size }
    } catch (err) {
      this.broken = true
      log.warn(`local copy of inode ${this.ino}: ${(err as Error).message}; it is no longer used`)
    }
  }

  /** Reads [pos, pos + len) of the copy into `target` (0 once dropped). */
  readNow(target: Buffer, pos: number, len: number): number {
    if (this.closed) return 0
    return readSync(this.fd, target, 0, len, pos)
  }

  /** Starts the copy again as `version`, empty. */
  reset(version: CopyVersion): void {
    this.version = version
    this.covered.clear()
    this.issued.clear()
    this.broken = false
    try {
      ftruncateSync(this.fd, 0)
    } catch {
      this.broken = true
    }
  }
}

/**
 * Files smaller than this get no copy: the kernel's page cache, kept across
 * opens of unchanged content (FOPEN_KEEP_CACHE), already serves their re-reads,
 * and a copy would cost a file, a descriptor and a write per small file read
 * (a cold `cat` of thousands of small files).
 */
export const MIN_COPY_BYTES = 1024 * 1024
/** At most this many copies (each holds a descriptor), least recently used out first. */
export const MAX_COPIES = 256

/** The file in a mount's copies folder naming the process that owns it. */
const OWNER = 'owner.pid'

/**
 * Removes the copies folders of mounts whose process is gone (killed: an
 * unmount removes its own). A folder without an owner file is left alone.
 */
function removeOrphans(parent: string): void {
  let names: string[]
  try {
    names = readdirSync(parent)
  } catch {
    return
  }
  for (const name of names) {
    const folder = join(parent, name)
    let pid: number
    try {
      pid = Number(readFileSync(join(folder, OWNER), 'utf8'))
    } catch {
      continue
    }
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue
    rmSync(folder, { recursive: true, force: true })
    log.info(`removed the local copies of a mount that is gone (pid ${pid}): ${folder}`)
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export class LocalCopies {
  private readonly copies = new Map<number, LocalCopy>()

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    /** Inodes whose copy must stay (open in passthrough mode). */
    private readonly pinned: (ino: number) => boolean,
  ) {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    removeOrphans(dirname(dir))
    writeFileSync(join(dir, OWNER), String(process.pid))
  }

  get(ino: number): LocalCopy | undefined {
    const c = this.copies.get(ino)
    if (c) c.usedAt = Date.now()
    return c
  }

  /** The copy that `version` of `ino` fills: the one there, started again if it held another version. */
  forFill(ino: number, version: CopyVersion): LocalCopy | undefined {
    if (version.size > this.maxBytes || version.size < MIN_COPY_BYTES) return undefined
    const c = this.copies.get(ino)
    if (c) {
      if (c.version.gen !== version.gen || c.version.size !== version.size) {
        // pinned: kept current by client/passthrough.ts, not by reads. Writes
        // of the old version still in flight could land after the new
        // version's bytes at the same offsets: this read fills nothing.
        if (this.pinned(ino) || c.inFlight > 0) return undefined
        c.reset(version)
      }
      c.usedAt = Date.now()
      return c.broken ? undefined : c
    }
    if (!this.makeRoom(version.size)) return undefined
    const path = join(this.dir, String(ino))
    let fd: number
    try {
      fd = openSync(path, 'w+', 0o600)
    } catch (err) {
      log.warn(`local copies: cannot create ${path}: ${(err as Error).message}`)
      return undefined
    }
    const copy = new LocalCopy(ino, path, fd, version)
    this.copies.set(ino, copy)
    return copy
  }

  /** Forgets `ino`'s copy (a kernel still reading it keeps its open file). */
  drop(ino: number): void {
    const c = this.copies.get(ino)
    if (!c) return
    this.copies.delete(ino)
    c.closed = true
    // putNow/readNow are synchronous and check `closed`; the fills in flight hold the descriptor
    void c.idle().then(() => {
      try {
        closeSync(c.fd)
        unlinkSync(c.path)
      } catch {
        // gone already
      }
    })
  }

  /** Removes every copy and the folder (unmount). */
  close(): void {
    for (const ino of [...this.copies.keys()]) this.drop(ino)
    rmSync(this.dir, { recursive: true, force: true })
  }

  private totalBytes(): number {
    let n = 0
    for (const c of this.copies.values()) n += c.version.size
    return n
  }

  /** Drops least recently used unpinned copies until one more of `bytes` fits. */
  private makeRoom(bytes: number): boolean {
    let total = this.totalBytes()
    let count = this.copies.size
    const fits = () => total + bytes <= this.maxBytes && count < MAX_COPIES
    if (fits()) return true
    const byAge = [...this.copies.values()].filter((c) => !this.pinned(c.ino)).sort((a, b) => a.usedAt - b.usedAt)
    for (const c of byAge) {
      this.drop(c.ino)
      total -= c.version.size
      count--
      if (fits()) return true
    }
    return false
  }
}
