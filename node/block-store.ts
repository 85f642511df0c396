/**
 * Content-addressed block storage on a local disk.
 *
 * Layout: `DIR/blocks/ab/cd/<name>` (two fan-out levels from the first four hex
 * digits keep directories small; a name is a BLAKE3 or SHA-256 hash,
 * common/block-hash.ts), `DIR/tmp/` for uploads in progress,
 * `DIR/trash/<ms>-<name>` for deleted copies (purged after the trash time).
 *
 * Safe deletes (docs/data-node.md#block-lifecycle): a copy's mtime is the node's
 * clock at its last PUT; a PUT that finds the block already stored sets it to
 * now too. A delete carries a token (`putBefore`, this node's clock when the
 * deleter asked) and removes only copies whose mtime is older, under a per-hash
 * lock shared with PUT. Removal is a rename into trash, never an unlink, so a
 * wrong decision can still be undone by hand until the trash is purged.
 *
 * Durability: a block's body, whole in memory, is hash-checked, written to a
 * temp file (with O_DIRECT where the file system takes it: writeFile),
 * fsynced, then hard-linked to its final name and the fan-out directory
 * fsynced. link(2)
 * fails if the name exists, so a stored block is never overwritten and two
 * concurrent uploads of one block count it once. A crash leaves at most temp
 * files, removed at the next start.
 */
import { constants, createReadStream, type Stats } from 'node:fs'
import { link, mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { BlockNameCheck } from '../common/block-hash'
import { BerthError } from '../common/errors'
import type { InventoryEntry } from '../common/protocol'
import type { BlockBody } from './block-buffer'
import { HashLocks } from './hash-locks'

export const HASH_RE = /^[0-9a-f]{64}$/

export interface ByteRange {
  /** First byte, inclusive. */
  start: number
  /** Last byte, inclusive. */
  end: number
}

export interface PutResult {
  size: number
  /** False when the block was already stored (deduplicated). */
  created: boolean
}

export interface BlockStore {
  /** Size in bytes, or null when the block is not stored. */
  stat(hash: string): Promise<number | null>
  has(hash: string): Promise<boolean>
  /** A stream of the block or of an inclusive byte range of it; ENOENT when absent. */
  get(hash: string, range?: ByteRange): Promise<Readable>
  /**
   * The block, or an inclusive byte range of it, read into the start of
   * `into` (at most its length); resolves with the bytes read, fewer only at
   * the copy's end. ENOENT when absent.
   */
  readInto(hash: string, into: Buffer, range?: ByteRange): Promise<number>
  /**
   * Re-reads the stored copy and checks its bytes against its name (BLAKE3 or
   * SHA-256): scrub, meta's `verify` and a PUT that finds the block stored.
   */
  checkCopy(hash: string): Promise<'good' | 'bad' | 'missing'>
  /**
   * Stores `body` under `hash` once it is durable. EHASH when the bytes do not
   * hash to `hash`, EFBIG past `maxBytes`, ENOSPC when the disk is full; in every
   * failure nothing is left behind.
   */
  put(hash: string, body: BlockBody, maxBytes: number): Promise<PutResult>
  /**
   * Moves the copy to trash unless it was PUT at or after `putBefore` (this
   * node's clock, ms). 'deleted', 'kept' (PUT since) or 'absent'.
   */
  delete(hash: string, putBefore: number): Promise<'deleted' | 'kept' | 'absent'>
  /** Moves a copy found corrupt to trash, whatever its age. True when one was there. */
  discard(hash: string, why: string): Promise<boolean>
  /** Copies in ascending hash order strictly after `after`, at most `limit` of them. */
  list(after: string, limit: number): Promise<{ entries: InventoryEntry[]; more: boolean }>
  /** Removes trash entries older than `ageMs`; returns how many. */
  purgeTrash(ageMs: number): Promise<number>
  usage(): { blocks: number; bytes: number; trashBytes: number; directIo?: boolean }
}

function checkHash(hash: string): void {
  if (!HASH_RE.test(hash)) throw new BerthError('EINVAL', `not a block name: "${hash.slice(0, 80)}"`)
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Writes all of `bytes` at offset 0, at most `slice` bytes per call (a write
 * may also take fewer bytes than asked).
 */
async function writeAll(fh: FileHandle, bytes: Buffer, slice = bytes.length): Promise<void> {
  let done = 0
  while (done < bytes.length) done += (await fh.write(bytes, done, Math.min(slice, bytes.length - done), done)).bytesWritten
}

/** Reads into all of `into` from file offset `at`, or up to the file's end; returns the bytes read. */
async function readFully(fh: FileHandle, into: Buffer, at: number): Promise<number> {
  let got = 0
  while (got < into.length) {
    const { bytesRead } = await fh.read(into, got, into.length - got, at + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return got
}

/**
 * Page-cache writes go 1 MiB per call: one 4 MiB write cost the nodes more
 * CPU than four (docs/bench.md "One buffer per forwarded block", tried and
 * dropped).
 */
const PAGE_CACHE_SLICE = 1024 * 1024

/**
 * A new file of `size` bytes from `aligned` (`size` rounded up to the
 * alignment, zeros past it), written with O_DIRECT, cut to `size`, fsynced.
 */
async function writeDirect(path: string, aligned: Buffer, size: number): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, 0o644)
  try {
    // a short O_DIRECT write still ends on a block boundary: writeAll goes on from there
    await writeAll(fh, aligned)
    if (aligned.length !== size) await fh.truncate(size)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Whether the file system under `probe` (a path free to use) opens files with O_DIRECT. */
async function takesDirectIo(probe: string): Promise<boolean> {
  try {
    const fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o644)
    await fh.close()
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false
    throw err
  } finally {
    await unlink(probe).catch(() => undefined)
  }
}

export class FileBlockStore implements BlockStore {
  /** DIR/blocks: every stored block, under two levels of fan-out folders. */
  readonly blocksDir: string
  private readonly tmpDir: string
  private readonly trashDir: string
  private readonly locks = new HashLocks()
  private blocks = 0
  private bytes = 0
  private trashBytes = 0
  private tmpSeq = 0
  /**
   * False once the file system refused O_DIRECT, or with BERTH_DIRECT_IO=0
   * (an operator's way out, and benchmarks' baseline): block files go through
   * the page cache.
   */
  private direct = process.env.BERTH_DIRECT_IO !== '0'
  private readonly names = new BlockNameCheck()
  /** Block files written with O_DIRECT (tests). */
  directWrites = 0

  private constructor(
    readonly dir: string,
    /** The node's clock; copies' mtimes and delete tokens both come from it. */
    private readonly clock: () => number = Date.now,
  ) {
    this.blocksDir = join(dir, 'blocks')
    this.tmpDir = join(dir, 'tmp')
    this.trashDir = join(dir, 'trash')
  }

  /** Creates the layout, removes stale temp files and counts what is stored. */
  static async open(dir: string, clock: () => number = Date.now): Promise<FileBlockStore> {
    const s = new FileBlockStore(dir, clock)
    await mkdir(s.blocksDir, { recursive: true })
    await rm(s.tmpDir, { recursive: true, force: true })
    await mkdir(s.tmpDir, { recursive: true })
    await mkdir(s.trashDir, { recursive: true })
    if (s.direct) s.direct = await takesDirectIo(join(s.tmpDir, 'direct-io-probe'))
    for await (const [, st] of s.walk('')) {
      s.blocks++
      s.bytes += st.size
    }
    for (const name of await readdir(s.trashDir)) s.trashBytes += (await stat(join(s.trashDir, name)).catch(() => ({ size: 0 }))).size
    return s
  }

  /** Sets the copy's mtime to the node's clock: "PUT now" for conditional deletes. */
  private async touch(path: string): Promise<void> {
    const now = this.clock() / 1000
    await utimes(path, now, now)
  }

  private path(hash: string): string {
    return join(this.blocksDir, hash.slice(0, 2), hash.slice(2, 4), hash)
  }

  /** `directIo`: whether block files are written with O_DIRECT (the metric berth_node_direct_io). */
  usage(): { blocks: number; bytes: number; trashBytes: number; directIo: boolean } {
    return { blocks: this.blocks, bytes: this.bytes, trashBytes: this.trashBytes, directIo: this.direct }
  }

  async stat(hash: string): Promise<number | null> {
    checkHash(hash)
    try {
      return (await stat(this.path(hash))).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
  }

  async has(hash: string): Promise<boolean> {
    return (await this.stat(hash)) !== null
  }

  async get(hash: string, range?: ByteRange): Promise<Readable> {
    const fh = await this.openBlock(hash)
    return createReadStream('', { fd: fh, start: range?.start, end: range?.end, highWaterMark: 256 * 1024 })
  }

  /** The copy opened for reading; ENOENT (a BerthError) when it is not stored. */
  private async openBlock(hash: string): Promise<FileHandle> {
    checkHash(hash)
    return open(this.path(hash), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new BerthError('ENOENT', `block ${hash} not stored`)
      throw err
    })
  }

  async readInto(hash: string, into: Buffer, range?: ByteRange): Promise<number> {
    const fh = await this.openBlock(hash)
    try {
      const want = Math.min(into.length, range ? range.end - range.start + 1 : into.length)
      return await readFully(fh, into.subarray(0, want), range?.start ?? 0)
    } finally {
      await fh.close()
    }
  }

  async checkCopy(hash: string): Promise<'good' | 'bad' | 'missing'> {
    let fh: FileHandle
    try {
      fh = await this.openBlock(hash)
    } catch (err) {
      if ((err as BerthError).code === 'ENOENT') return 'missing' // deleted meanwhile
      throw err
    }
    try {
      // the size of the file opened, not of the name: a copy replaced meanwhile is read whole
      const bytes = Buffer.allocUnsafe((await fh.stat()).size)
      const got = await readFully(fh, bytes, 0)
      return this.names.match(hash, bytes.subarray(0, got)) ? 'good' : 'bad'
    } finally {
      await fh.close()
    }
  }

  async put(hash: string, body: BlockBody, maxBytes: number): Promise<PutResult> {
    checkHash(hash)
    const final = this.path(hash)
    // Already durable: touch it first (a delete decided before this PUT now
    // keeps it), then check the body, so a wrong body is still refused.
    const existing = await this.locks.run(hash, async () => {
      try {
        await this.touch(final)
        return true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw err
      }
    })
    if (existing) {
      const size = this.check(hash, body, maxBytes)
      // Trashed meanwhile by a delete whose token is newer than our touch: only
      // possible for an unpinned upload; the caller must not hear "stored".
      if (!(await this.has(hash))) throw new BerthError('EAGAIN', `block ${hash} was deleted during its PUT; retry`)
      return { size, created: false }
    }
    const tmp = join(this.tmpDir, `${process.pid}-${++this.tmpSeq}-${hash.slice(0, 16)}`)
    const size = this.check(hash, body, maxBytes)
    try {
      await this.writeFile(tmp, body)
      const dir = join(this.blocksDir, hash.slice(0, 2), hash.slice(2, 4))
      await mkdir(dir, { recursive: true })
      const created = await this.locks.run(hash, async () => {
        // the copy's mtime is the link time on this node's clock, not the
        // kernel's (coarser) one: delete tokens compare against it
        await this.touch(tmp)
        try {
          await link(tmp, final)
          return true
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
          await this.touch(final)
          return false
        }
      })
      if (!created) return { size, created: false }
      await fsyncDir(dir)
    } catch (err) {
      throw asStoreError(err)
    } finally {
      await unlink(tmp).catch(() => undefined)
    }
    this.blocks++
    this.bytes += size
    return { size, created: true }
  }

  /** The body's size; EFBIG past maxBytes, EHASH when it is not named `hash` (under BLAKE3 or SHA-256). */
  private check(hash: string, body: BlockBody, maxBytes: number): number {
    const size = body.bytes.length
    if (size > maxBytes) throw new BerthError('EFBIG', `block larger than ${maxBytes} bytes`)
    if (!this.names.match(hash, body.bytes)) throw new BerthError('EHASH', `body hashes to neither BLAKE3 nor SHA-256 ${hash}`)
    return size
  }

  /**
   * Writes the body to a new file `path` and fsyncs it. With O_DIRECT where
   * the body is in aligned memory and the file system takes it: the block's
   * bytes go from that memory to the disk, with no copy into the page cache
   * and no writeback pass, which were the largest item of a node's CPU on a
   * sequential write (docs/bench.md "O_DIRECT block writes"). The padded tail
   * is cut off before the fsync. A file system that refuses O_DIRECT (tmpfs,
   * some overlays) is written through the page cache from then on.
   */
  private async writeFile(path: string, body: BlockBody): Promise<void> {
    if (body.aligned && this.direct) {
      try {
        await writeDirect(path, body.aligned, body.bytes.length)
        this.directWrites++
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        // the file system took the probe's open but not this write: page cache from now on
        this.direct = false
        await unlink(path).catch(() => undefined)
      }
    }
    const fh = await open(path, 'wx', 0o644)
    try {
      await writeAll(fh, body.bytes, PAGE_CACHE_SLICE)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  async delete(hash: string, putBefore: number): Promise<'deleted' | 'kept' | 'absent'> {
    checkHash(hash)
    return this.locks.run(hash, async () => {
      let st: Stats
      try {
        st = await stat(this.path(hash))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent'
        throw err
      }
      if (Math.round(st.mtimeMs) >= putBefore) return 'kept'
      return (await this.toTrash(hash)) ? 'deleted' : 'absent'
    })
  }

  async discard(hash: string, _why: string): Promise<boolean> {
    checkHash(hash)
    return this.locks.run(hash, () => this.toTrash(hash))
  }

  /** Renames the copy into trash (caller holds the hash lock). */
  private async toTrash(hash: string): Promise<boolean> {
    const path = this.path(hash)
    let size: number
    try {
      size = (await stat(path)).size
      await rename(path, join(this.trashDir, `${this.clock()}-${hash}`))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    this.blocks--
    this.bytes -= size
    this.trashBytes += size
    return true
  }

  async purgeTrash(ageMs: number): Promise<number> {
    const cutoff = this.clock() - ageMs
    let purged = 0
    for (const name of await readdir(this.trashDir)) {
      const at = Number(name.split('-', 1)[0])
      if (!Number.isFinite(at) || at > cutoff) continue
      const path = join(this.trashDir, name)
      const size = (await stat(path).catch(() => ({ size: 0 }))).size
      await rm(path, { force: true })
      this.trashBytes = Math.max(0, this.trashBytes - size)
      purged++
    }
    return purged
  }

  async list(after: string, limit: number): Promise<{ entries: InventoryEntry[]; more: boolean }> {
    const entries: InventoryEntry[] = []
    const now = this.clock()
    for await (const [hash, st] of this.walk(after)) {
      if (entries.length === limit) return { entries, more: true }
      entries.push({ hash, size: st.size, age: Math.max(0, now - Math.round(st.mtimeMs)) })
    }
    return { entries, more: false }
  }

  /** Every stored block after `after`, in ascending hash order, with its stat. */
  private async *walk(after: string): AsyncGenerator<[string, Stats]> {
    const sortedDir = async (path: string, keep: (name: string) => boolean) => {
      try {
        return (await readdir(path)).filter(keep).sort()
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
        throw err
      }
    }
    const p1 = after.slice(0, 2)
    const p2 = after.slice(0, 4)
    for (const a of await sortedDir(this.blocksDir, (n) => /^[0-9a-f]{2}$/.test(n) && n >= p1)) {
      for (const b of await sortedDir(join(this.blocksDir, a), (n) => /^[0-9a-f]{2}$/.test(n) && a + n >= p2)) {
        const dir = join(this.blocksDir, a, b)
        for (const name of await sortedDir(dir, (n) => HASH_RE.test(n) && n > after)) {
          try {
            yield [name, await stat(join(dir, name))]
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
          }
        }
      }
    }
  }
}

function asStoreError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BerthError('ENOSPC', 'no space left on the block store', { cause: err })
  return err
}
