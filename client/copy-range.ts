/**
 * copy_file_range(2) inside the cluster (docs/semantics.md#writes): the whole
 * chunks a copy covers at matching chunk alignment are not read and written
 * but cloned by meta (`clonechunks`): the destination's chunks name the
 * source's blocks, so a copy of a big file moves no data and stores nothing
 * new. Bytes outside those chunks (a head before the first chunk boundary, a
 * tail that is not the source's end) are copied by read + write here.
 *
 * A clone runs under both files' locks (lower inode first, so two copies in
 * opposite directions cannot deadlock), after flushing both files: meta's
 * chunk maps are then this mount's, and a pending write can neither be lost
 * under the clone nor land on top of it later. Meta applies it only if the
 * source is still at the content version this mount holds; otherwise (another
 * client changed it: close-to-open says this mount still sees its own
 * version), and against a meta without the op (ENOSYS), the copy goes by
 * read + write through this mount's view.
 */
import { codeOf } from '../common/errors'
import { logger } from '../common/log'
import { MAX_CLONE_CHUNKS, type ChunkRef } from '../common/protocol'
import { nowTimespec, type OpenFile } from './open-file'
import type { MetaApi } from './stores'

const log = logger('client')

/** Read + write pieces. */
const PIECE = 1024 * 1024
/**
 * Bytes one call copies by read + write at most; the caller of
 * copy_file_range loops on a short count (cp does), and a request that copies
 * gigabytes by hand would hold the destination's inode lock in the kernel for
 * as long.
 */
export const BYTES_PER_CALL = 64 * 1024 * 1024
/**
 * Bytes one call copies at most: FUSE answers a copy_file_range with a 32-bit
 * count (fuse_write_out.size), so a call never copies 4 GiB or more.
 */
export const MAX_COPY = 2 ** 31

/** What of a copy can be cloned: `head` bytes first by read + write, then `count` chunks (`bytes` bytes) from chunk `from` to chunk `to`. */
export interface ClonePlan {
  head: number
  from: number
  to: number
  count: number
  bytes: number
}

/**
 * The chunks a copy of `len` bytes (already cut at the source's end) from
 * `srcOff` to `dstOff` can clone, or null. Both offsets must sit at the same
 * place in a chunk; after the head that brings them to a boundary, every whole
 * chunk is cloned, and a last partial chunk too when it is the source's end
 * and lands at or past the destination's end (nothing of the destination
 * after it would be lost).
 */
export function planClone(chunkSize: number, srcOff: number, dstOff: number, len: number, srcSize: number, dstSize: number): ClonePlan | null {
  if (len <= 0 || srcOff % chunkSize !== dstOff % chunkSize) return null
  const head = (chunkSize - (srcOff % chunkSize)) % chunkSize
  if (head >= len) return null
  const rest = len - head
  let count = Math.floor(rest / chunkSize)
  let bytes = count * chunkSize
  const tail = rest - bytes
  if (tail > 0 && srcOff + len === srcSize && dstOff + len >= dstSize) {
    count++
    bytes = rest
  }
  if (count > MAX_CLONE_CHUNKS) {
    count = MAX_CLONE_CHUNKS
    bytes = count * chunkSize
  }
  if (count === 0) return null
  return { head, from: (srcOff + head) / chunkSize, to: (dstOff + head) / chunkSize, count, bytes }
}

/** Copies `len` bytes by read + write; returns how many (fewer if the source ends first). */
export async function copyBytes(src: OpenFile, srcOff: number, dst: OpenFile, dstOff: number, len: number): Promise<number> {
  const buf = Buffer.allocUnsafe(Math.min(PIECE, len))
  let done = 0
  while (done < len) {
    const got = await src.read(buf, srcOff + done, Math.min(buf.length, len - done))
    if (got === 0) break
    // write() copies into chunk buffers before it returns: the buffer is free again
    await dst.write(buf.subarray(0, got), dstOff + done)
    done += got
  }
  return done
}

export class RangeCopier {
  /** Until when meta is known to lack clonechunks (ENOSYS): an upgrade is noticed after that. */
  private noCloneUntil = 0
  /** Chunks cloned and bytes copied by hand (metrics, tests). */
  clonedChunks = 0
  copiedBytes = 0

  constructor(
    private readonly meta: MetaApi,
    private readonly session: string,
    private readonly chunkSize: number,
  ) {}

  /**
   * Copies `len` bytes (cut at the source's end by the caller) from `srcOff`
   * of `src` to `dstOff` of `dst`; returns the bytes copied, possibly fewer
   * (the caller loops, as with write(2)). `committed(f)`: `f` was committed.
   */
  async copy(src: OpenFile, srcOff: number, dst: OpenFile, dstOff: number, len: number, committed: (f: OpenFile) => void): Promise<number> {
    let done = 0
    const plan = Date.now() >= this.noCloneUntil ? planClone(this.chunkSize, srcOff, dstOff, len, src.size, dst.size) : null
    if (plan) {
      done = await this.byHand(src, srcOff, dst, dstOff, plan.head)
      if (done < plan.head) return done
      const cloned = await this.clone(src, srcOff + done, dst, dstOff + done, len - done, committed)
      done += cloned
      // cloned: what is left is a tail under one chunk; else the whole rest goes by hand (bounded below)
    }
    const rest = Math.min(len - done, Math.max(0, BYTES_PER_CALL - (plan ? plan.head : 0)))
    if (rest > 0) done += await this.byHand(src, srcOff + done, dst, dstOff + done, rest)
    return done
  }

  private async byHand(src: OpenFile, srcOff: number, dst: OpenFile, dstOff: number, len: number): Promise<number> {
    if (len <= 0) return 0
    const n = await copyBytes(src, srcOff, dst, dstOff, len)
    this.copiedBytes += n
    return n
  }

  /**
   * Under both files' locks: flushes them, plans again on what they hold now
   * (the offsets are chunk-aligned here), and asks meta to clone. Returns the
   * bytes cloned; 0 when nothing could be (the caller copies by hand).
   */
  private async clone(src: OpenFile, srcOff: number, dst: OpenFile, dstOff: number, len: number, committed: (f: OpenFile) => void): Promise<number> {
    const [first, second] = src === dst || src.attr.ino < dst.attr.ino ? [src, dst] : [dst, src]
    const both = <T>(fn: () => Promise<T>): Promise<T> => (first === second ? first.locked(fn) : first.locked(() => second.locked(fn)))
    return both(async () => {
      if (await src.flushHeld(this.meta, this.session)) committed(src)
      if (dst !== src && (await dst.flushHeld(this.meta, this.session))) committed(dst)
      const plan = planClone(this.chunkSize, srcOff, dstOff, Math.min(len, src.size - srcOff), src.size, dst.size)
      if (!plan || plan.head !== 0) return 0
      const refs: Array<ChunkRef | undefined> = []
      for (let i = 0; i < plan.count; i++) refs.push(src.committedChunk(plan.from + i))
      // inline chunks live in meta only for files of at most 64 KiB: copied by hand
      if (refs.some((r) => r?.data)) return 0
      const size = Math.max(dst.size, dstOff + plan.bytes)
      const srcGen = src.attr.gen
      try {
        const { attr } = await this.meta.call('clonechunks', { src: src.attr.ino, srcGen, from: plan.from, count: plan.count, dst: dst.attr.ino, to: plan.to, size, mtime: nowTimespec() })
        dst.applyClone(plan.to, refs, attr)
        committed(dst)
        this.clonedChunks += plan.count
        return plan.bytes
      } catch (err) {
        const code = codeOf(err)
        if (code === 'ENOSYS') {
          // a meta older than the op: copy by hand, ask again in a minute (it may be upgraded)
          this.noCloneUntil = Date.now() + 60_000
          log.info('meta does not clone chunks (older release): copy_file_range copies by read + write')
          return 0
        }
        // another client changed the source since this mount read its chunk map: copy what this mount sees
        if (code === 'EAGAIN') return 0
        throw err
      }
    })
  }
}
