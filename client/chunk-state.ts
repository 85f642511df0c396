/**
 * The states of one chunk of an open file (docs/architecture.md#write-path).
 * A chunk is in exactly one state; the owner of its bytes is named by it:
 *
 *   clean / committed  the chunk map entry (`OpenFile.chunks`) is what meta holds;
 *                      no local bytes. `committed` is `clean` after our own commit.
 *   loading            a write is reading the old block for read-modify-write
 *                      (only inside that write, under the inode's lock).
 *   dirty              a private buffer owns the bytes; writes copy into it.
 *                      Appending (`from` > 0): the bytes below `from` are the
 *                      committed chunk's (`base`), only the new ones are
 *                      buffered, and the upload is a slice of just those
 *                      (docs/data-node.md#appends-slices-and-compaction).
 *   uploading          the buffer was handed to an upload and is frozen: the
 *                      upload owns it, its hash and length are fixed. A write
 *                      landing here copies it into a new dirty buffer (copy on
 *                      write) that supersedes the upload.
 *   uploaded           a block holds the bytes (pinned, not committed yet).
 *
 * Chunks in clean/committed have no slot; every other state is a `Slot` in
 * `OpenFile.slots`, keyed by chunk index.
 */
import type { ChunkRef } from '../common/protocol'

export const ChunkState = {
  clean: 'clean',
  loading: 'loading',
  dirty: 'dirty',
  uploading: 'uploading',
  uploaded: 'uploaded',
  committed: 'committed',
} as const
export type ChunkStateName = (typeof ChunkState)[keyof typeof ChunkState]

/** One upload of a frozen buffer. `body` is exactly the bytes put (length recorded = bytes in the block). */
export interface Upload {
  readonly idx: number
  readonly hash: string
  readonly body: Buffer
  /** The whole buffer behind `body` (counted in the write-back bytes until the upload ends). */
  readonly buf: Buffer
  /** `body` starts at this byte of the chunk: > 0 for a slice appended to `base`. */
  readonly from: number
  readonly base: ChunkRef | undefined
  /** A newer dirty buffer, a truncate or a discard took the chunk over: the result is not wanted. */
  superseded: boolean
}

export type Slot =
  | { state: typeof ChunkState.loading }
  | {
      state: typeof ChunkState.dirty
      /** Grows on demand up to the chunk size: a small file must not cost a zeroed 4 MiB allocation. */
      buf: Buffer
      /** Bytes of `buf` that belong to the chunk; the rest are zeros, as is everything past `buf`. */
      len: number
      /**
       * Bytes below `from` are not in `buf` (zeros there): they are the
       * committed chunk `base`'s, which holds exactly `from` bytes. 0: the
       * buffer holds the whole chunk.
       */
      from: number
      base: ChunkRef | undefined
    }
  | { state: typeof ChunkState.uploading; upload: Upload }
  | {
      state: typeof ChunkState.uploaded
      /** The chunk as it will be once committed (reads use it). */
      ref: ChunkRef
      /** What the commit sends: `ref` itself, or one slice appended to `base` (`append`). */
      commit: ChunkRef
      base: ChunkRef | undefined
    }
