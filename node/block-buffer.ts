/**
 * A PUT's body gathered into one buffer that the node can write with
 * O_DIRECT (node/block-store.ts) and forward to the next replica in one
 * socket write (node/http-api.ts).
 *
 * O_DIRECT needs memory, offset and length aligned to the device's logical
 * block size; berth's small addon (node/native/berth-aligned.c) hands out
 * 4 KiB-aligned memory, and the length is rounded up to 4 KiB with zeros
 * (the store cuts the file back to the block's size). Without the addon the
 * body is gathered into an ordinary Buffer and written through the page
 * cache, as before.
 */
import { optionalAddon } from '../common/native-addon'

interface AlignedAddon {
  alignedBuffer(size: number): Buffer
  align: number
}

export interface BlockBody {
  /** The block's bytes, exactly. */
  readonly bytes: Buffer
  /**
   * The same memory with its length rounded up to `align` (zeros past the
   * block), starting at an aligned address; null when it could not be had.
   */
  readonly aligned: Buffer | null
}

let addon: AlignedAddon | null | undefined

function loadAddon(): AlignedAddon | null {
  if (addon === undefined) addon = optionalAddon<AlignedAddon>('berth_aligned.node', (mod) => typeof mod.alignedBuffer === 'function' && typeof mod.align === 'number')
  return addon
}

/** Whether bodies come in aligned memory (tests; docs/data-node.md#on-disk-layout). */
export function alignedBodies(): boolean {
  return loadAddon() !== null
}

/** Bodies from this size up are pooled; smaller ones cost little to allocate. */
const POOLED_FROM_BYTES = 256 * 1024

/**
 * Aligned buffers for bodies, reused. A node storing a sequential write spent
 * 13 % of its CPU in page faults, nearly all of them copying each body into
 * a fresh 4 MiB buffer (the kernel maps and zeroes every page on first touch),
 * and more freeing them (docs/bench.md "O_DIRECT block writes"). A buffer
 * comes back only when nothing can read it any more (the caller's word: its
 * file write returned and its forward, if any, was answered); one whose
 * forward failed is left to the collector, as ReplyBuffers does for GETs.
 */
export class BodyPool {
  private readonly free = new Map<number, Buffer[]>()
  private bytes = 0
  constructor(private readonly keepBytes: number) {}

  take(padded: number): Buffer | undefined {
    const list = this.free.get(padded)
    const buf = list?.pop()
    if (buf) this.bytes -= buf.length
    return buf
  }

  give(buf: Buffer): void {
    if (buf.length < POOLED_FROM_BYTES || this.bytes + buf.length > this.keepBytes) return
    let list = this.free.get(buf.length)
    if (!list) this.free.set(buf.length, (list = []))
    list.push(buf)
    this.bytes += buf.length
  }

  /** Bytes held for reuse (tests). */
  get held(): number {
    return this.bytes
  }
}

/** The socket-sized pieces of a body (`size` bytes in all) copied into one buffer, aligned memory from `pool` when it has some. */
export function gatherBody(parts: readonly Buffer[], size: number, pool?: BodyPool): BlockBody {
  const native = size > 0 ? loadAddon() : null
  if (!native) return { bytes: Buffer.concat(parts as Buffer[], size), aligned: null }
  const padded = Math.ceil(size / native.align) * native.align
  const aligned = pool?.take(padded) ?? native.alignedBuffer(padded)
  let at = 0
  for (const p of parts) at += p.copy(aligned, at)
  aligned.fill(0, size)
  return { bytes: aligned.subarray(0, size), aligned }
}

/** A body already in one buffer (tests, tools): no alignment, written through the page cache. */
export function plainBody(bytes: Buffer): BlockBody {
  return { bytes, aligned: null }
}
