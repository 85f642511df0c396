/**
 * Directory listings in progress, found by (inode, offset).
 *
 * The mount answers the kernel's opendir with ENOSYS (FUSE_NO_OPENDIR_SUPPORT,
 * client/native/berth-fuse.c), so the kernel sends neither opendir nor
 * releasedir: two round trips fewer per directory for find, ls -R, cp -r and
 * rm -rf. A READDIR then names its listing only by the directory's inode and
 * the offset the kernel kept from the previous page. A listing that stopped
 * is taken up again where it stopped; when none matches (evicted, or a seekdir
 * to an old position), the caller starts over and skips to the offset.
 *
 * No release ever comes, so listings are dropped when they end, when more
 * than MAX_IDLE wait, and when one waited longer than IDLE_MS.
 */
import type { Attr } from '../common/protocol'

/** A listing: a window of entries at positions pos, pos+1, ... and meta's cursor after them. */
export interface DirStream {
  ino: number
  pos: number
  buffered: Array<{ name: string; attr: Attr }>
  cursor: string | null
  done: boolean
  /** foreign + changes when the listing started from the top, or -1 when it did not. */
  epoch: number
}

/** Listings left half-read (a process that stopped early) are few; each may buffer a whole cached directory. */
const MAX_IDLE = 128
const IDLE_MS = 30_000

export class DirStreams {
  /** Idle listings, oldest first, with the time each was put back. */
  private readonly idle = new Map<DirStream, number>()

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * A listing of `ino` that can go on from `offset`, taken out of the pool
   * (two readers never share one), or a fresh listing at position 0. Offset 0
   * always starts afresh, as opendir + readdir did.
   */
  take(ino: number, offset: number): DirStream {
    this.expire()
    if (offset > 0) {
      for (const s of this.idle.keys()) {
        if (s.ino === ino && s.pos <= offset && offset <= s.pos + s.buffered.length) {
          this.idle.delete(s)
          return s
        }
      }
    }
    return fresh(ino)
  }

  /** Back into the pool after a page; a listing the kernel has read to its end is dropped. */
  put(s: DirStream, ended: boolean): void {
    if (ended) return
    this.idle.set(s, this.now())
    while (this.idle.size > MAX_IDLE) this.idle.delete(this.idle.keys().next().value as DirStream)
  }

  get size(): number {
    return this.idle.size
  }

  private expire(): void {
    const cutoff = this.now() - IDLE_MS
    for (const [s, at] of this.idle) {
      if (at > cutoff) break
      this.idle.delete(s)
    }
  }
}

export function fresh(ino: number): DirStream {
  return { ino, pos: 0, buffered: [], cursor: null, done: false, epoch: -1 }
}
