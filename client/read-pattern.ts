/**
 * Whether a handle's reads form a stream worth whole blocks and readahead.
 *
 * A stream is a run of reads each starting near where the previous one ended
 * (the kernel sends several at once, slightly out of order). A run that
 * began at offset 0 is a stream from its first read: that is how files are
 * read whole (`cat`, `cp`, a cold `dd`). A run that began in the middle of a
 * file becomes one only after STREAM_MIN bytes were asked in it: until then
 * its reads fetch only the 64 KiB pieces they cover.
 *
 * The middle case is what the kernel sends for holes in a file's page cache
 * that it otherwise keeps (FOPEN_KEEP_CACHE): on this machine's kernel a
 * re-read of a 1 GiB file found 20 to 700 small holes (4-256 KiB) that the
 * cold read had left, with MooseFS as with berth. Each hole used to count as
 * sequential from its second read, so it fetched a whole 4 MiB block and
 * prefetched two more: a warm re-read with 300 holes moved ~3 GiB from the
 * nodes and ran at 600 MB/s (docs/bench.md).
 */

/** Within this distance of the previous read's end, a read continues the run. */
export const SEQUENTIAL_WINDOW = 1024 * 1024
/** Bytes asked in a run begun mid-file before it counts as a stream. */
export const STREAM_MIN = 1024 * 1024

export class ReadPattern {
  /** End of the last read; -1 before the first. */
  private lastEnd = -1
  /** The current run began at offset 0. */
  private fromStart = false
  /** Bytes asked in the current run (not its span: scattered small holes stay small). */
  private runBytes = 0

  /**
   * Records a read of `len` bytes at `pos` (call before waiting for it, so
   * the next read compares against this one) and says whether it belongs to
   * a stream.
   */
  next(pos: number, len: number): boolean {
    const continues = this.lastEnd >= 0 && Math.abs(pos - this.lastEnd) <= SEQUENTIAL_WINDOW
    if (continues) this.runBytes += len
    else {
      this.fromStart = pos === 0
      this.runBytes = len
    }
    this.lastEnd = pos + len
    return this.fromStart || this.runBytes >= STREAM_MIN
  }

  /** The current run began at offset 0: the handle is reading the file whole (so far). */
  get wholeFile(): boolean {
    return this.fromStart
  }
}
