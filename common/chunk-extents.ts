/**
 * A chunk as a list of blocks (docs/data-node.md#appends-slices-and-compaction):
 * the base block (`ChunkRef.hash`, `len`) at position 0, then each slice right
 * after the previous one. Readers, fsck and `berth info` walk a chunk through
 * these helpers, so a one-block chunk and a fragmented one are read alike.
 */
import type { ChunkRef, SliceRef } from './protocol'

/** One block of a chunk: `ref` names the block (as a one-block ChunkRef), `pos` where it starts in the chunk. */
export interface Extent {
  pos: number
  ref: ChunkRef
}

/** Bytes the chunk holds: its base and every slice. */
export function chunkLen(ref: ChunkRef): number {
  let n = ref.len
  for (const s of ref.slices ?? []) n += s.len
  return n
}

/** The chunk's blocks in order (holes and inline chunks have none). */
export function extentsOf(ref: ChunkRef): Extent[] {
  if (!ref.hash) return []
  const base: ChunkRef = { idx: ref.idx, hash: ref.hash, len: ref.len, nodes: ref.nodes, ...(ref.sums ? { sums: ref.sums } : {}) }
  const out: Extent[] = [{ pos: 0, ref: base }]
  let pos = ref.len
  for (const s of ref.slices ?? []) {
    out.push({ pos, ref: { idx: ref.idx, hash: s.hash, len: s.len, nodes: s.nodes, ...(s.sums ? { sums: s.sums } : {}) } })
    pos += s.len
  }
  return out
}

/** The block the chunk ends with (its last slice, else its base): what an append or compaction expects. */
export function lastHash(ref: ChunkRef): string | null {
  const s = ref.slices
  return s && s.length ? s[s.length - 1]!.hash : ref.hash
}

/** `ref` with `slice` appended. */
export function withSlice(ref: ChunkRef, slice: SliceRef): ChunkRef {
  return { ...ref, slices: [...(ref.slices ?? []), slice] }
}

/** `ref` cut to `keep` bytes: slices past it dropped, the one across it shortened (blocks are never rewritten). */
export function clipRef(ref: ChunkRef, keep: number): ChunkRef {
  const len = Math.min(ref.len, keep)
  const out: ChunkRef = { ...ref, len, data: ref.data?.subarray(0, len) }
  if (ref.data === undefined) delete out.data
  if (ref.slices) {
    const slices: SliceRef[] = []
    let pos = ref.len
    for (const s of ref.slices) {
      if (pos >= keep) break
      slices.push(pos + s.len > keep ? { ...s, len: keep - pos } : s)
      pos += s.len
    }
    if (slices.length) out.slices = slices
    else delete out.slices
  }
  return out
}
