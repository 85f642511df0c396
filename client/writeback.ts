/**
 * Write-back limits shared by all open files of a mount: uploads in flight
 * (a semaphore) and bytes held by dirty and uploading chunk buffers. A writer
 * over the byte cap uploads partial buffers of any file until under it.
 */
import { INLINE_MAX } from '../common/protocol'
import type { BlockCache } from './block-cache'
import { ChunkBuffers } from './chunk-buffers'
import { Semaphore } from './semaphore'
import type { BlockApi } from './stores'

/** What the write-back pressure needs of an open file. */
export interface Relievable {
  /** Starts uploading one dirty chunk; false if it has none. */
  uploadOneIdle(): Promise<boolean>
  /** Uploads in flight. */
  readonly uploads: Set<Promise<void>>
}

export interface WritebackOptions {
  chunkSize: number
  maxDirtyBytes: number
  maxUploads: number
  /** Files up to this size are committed inline in meta (default INLINE_MAX; tests use less). */
  inlineMax?: number
  /**
   * Compact appended slices (docs/data-node.md#appends-slices-and-compaction);
   * default true. false leaves chunks fragmented (benchmarks of fragmented reads).
   */
  compact?: boolean
  /** Slices a chunk needs before the last close compacts it (default 16; the model test uses fewer). */
  compactAtClose?: number
  /** Chunk buffers, shared with the block cache that gives evicted ones back (default: none reused). */
  buffers?: ChunkBuffers
}

export class Writeback {
  readonly slots: Semaphore
  /** Where whole-chunk buffers come from. */
  readonly buffers: ChunkBuffers
  dirtyBytes = 0
  /** Chunks compacted into one block by this mount (metrics). */
  compactions = 0
  private readonly files = new Set<Relievable>()

  constructor(
    readonly blocks: BlockApi,
    readonly cache: BlockCache,
    readonly opts: WritebackOptions,
  ) {
    this.slots = new Semaphore(opts.maxUploads)
    this.buffers = opts.buffers ?? new ChunkBuffers(opts.chunkSize, 0)
  }

  get inlineMax(): number {
    return this.opts.inlineMax ?? INLINE_MAX
  }

  track(f: Relievable): void {
    this.files.add(f)
  }

  untrack(f: Relievable): void {
    this.files.delete(f)
  }

  /** Over the dirty cap: upload partial buffers (any file) until under it. */
  async relieve(): Promise<void> {
    while (this.dirtyBytes > this.opts.maxDirtyBytes) {
      let started = false
      for (const f of this.files) {
        if (await f.uploadOneIdle()) {
          started = true
          break
        }
      }
      if (!started) {
        // everything dirty is already uploading: wait for one to finish
        const any = [...this.files].flatMap((f) => [...f.uploads])
        if (any.length === 0) return
        await Promise.race(any)
      }
    }
  }
}
