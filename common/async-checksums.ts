/**
 * Piece sums (common/checksums.ts) of large buffers computed on libuv's thread
 * pool by berth's small addon (common/native/berth-sums.c: libdeflate's
 * crc32 where the machine has it, else zlib's crc32_z),
 * so the event loop of a mount reading or writing at full speed is not held
 * by them (docs/bench.md, "Piece sums off the event loop"). Small buffers and
 * a node without the addon compute on the calling thread: the result is the
 * same bytes either way.
 */
import { pieceSums, SUM_PIECE } from './checksums'
import { optionalAddon } from './native-addon'

interface SumsAddon {
  crc32Pieces(bytes: Uint8Array, piece: number): Promise<Buffer>
  /** Whose CRC-32 the addon runs: libdeflate's when the machine has libdeflate.so.0, else zlib's. */
  crc32Impl?: 'libdeflate' | 'zlib'
}

/** Below this a trip to the thread pool costs more than the sums (64 KiB: about 13 µs here). */
export const OFF_THREAD_MIN = 512 * 1024

let addon: SumsAddon | null | undefined

function loadAddon(): SumsAddon | null {
  if (addon === undefined) addon = optionalAddon<SumsAddon>('berth_sums.node', (mod) => typeof mod.crc32Pieces === 'function')
  return addon
}

/** Whose CRC-32 computes sums of large buffers: the addon's libdeflate or zlib, or node:zlib on this thread. */
export function sumsImpl(): 'libdeflate' | 'zlib' | 'js' {
  return loadAddon()?.crc32Impl ?? (loadAddon() ? 'zlib' : 'js')
}

/** Whether sums of large buffers leave the calling thread (for tests and the docs' claims). */
export function sumsOffThread(): boolean {
  return loadAddon() !== null
}

/**
 * pieceSums(data), on a pool thread when `data` is large. `data` must not be
 * written to until this settles.
 */
export function pieceSumsAsync(data: Uint8Array): Promise<Uint8Array> {
  const native = data.length >= OFF_THREAD_MIN ? loadAddon() : null
  if (!native) return Promise.resolve(pieceSums(data))
  return native.crc32Pieces(data, SUM_PIECE)
}
