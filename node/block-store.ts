/**
 * Content-addressed block storage on a local disk.
 *
 * Layout: `DIR/blocks/ab/cd/<sha256>` (two fan-out levels from the first four hex
 * digits keep directories small), `DIR/tmp/` for uploads in progress,
 * `DIR/trash/<ms>-<sha256>` for deleted copies (purged after the trash time).
 *
 * Safe deletes (docs/data-node.md#block-lifecycle): a copy's mtime is the node's
 * clock at its last PUT; a PUT that finds the block already stored sets it to
 * now too. A delete carries a token (`putBefore`, this node's clock when the
 * deleter asked) and removes only copies whose mtime is older, under a per-hash
 * lock shared with PUT. Removal is a rename into trash, never an unlink, so a
 * wrong decision can still be undone by hand until the trash is purged.
 *
 * Durability: a block is streamed into a temp file while hashed, fsynced, then
 * hard-linked to its final name and the fan-out directory fsynced. link(2)
 * fails if the name exists, so a stored block is never overwritten and two
 * concurrent uploads of one block count it once. A crash leaves at most temp
 * files, removed at the next start.
 */
import { createHash } from 'node:crypto'
import { createReadStream, type Stats } from 'node:fs'
import { link, mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { BerthError } from '../common/errors'
import type { InventoryEntry } from '../common/protocol'
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
   * Stores `body` under `hash` once it is durable. EHASH when the bytes do not
   * hash to `hash`, EFBIG past `maxBytes`, ENOSPC when the disk is full; in every
   * failure nothing is left behind.
   */
  put(hash: string, body: AsyncIterable<Uint8Array>, maxBytes: number): Promise<PutResult>
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
  usage(): { blocks: number; bytes: number; trashBytes: number }
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

  usage(): { blocks: number; bytes: number; trashBytes: number } {
    return { blocks: this.blocks, bytes: this.bytes, trashBytes: this.trashBytes }
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
      const start = range?.start ?? 0
      const want = Math.min(into.length, range ? range.end - range.start + 1 : into.length)
      let got = 0
      while (got < want) {
        const { bytesRead } = await fh.read(into, got, want - got, start + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      return got
    } finally {
      await fh.close()
    }
  }

  async put(hash: string, body: AsyncIterable<Uint8Array>, maxBytes: number): Promise<PutResult> {
    checkHash(hash)
    const final = this.path(hash)
    // Already durable: touch it first (a delete decided before this PUT now
    // keeps it), then read and check the body so the caller's stream is
    // consumed and a wrong body is still refused.
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
      const size = await this.consume(hash, body, maxBytes, null)
      // Trashed meanwhile by a delete whose token is newer than our touch: only
      // possible for an unpinned upload; the caller must not hear "stored".
      if (!(await this.has(hash))) throw new BerthError('EAGAIN', `block ${hash} was deleted during its PUT; retry`)
      return { size, created: false }
    }
    const tmp = join(this.tmpDir, `${process.pid}-${++this.tmpSeq}-${hash.slice(0, 16)}`)
    const fh = await open(tmp, 'wx', 0o644)
    let size: number
    // Socket chunks are ~64 KiB; gathering them into ~1 MiB writev calls saves
    // most thread-pool round trips.
    let pending: Uint8Array[] = []
    let pendingBytes = 0
    const flush = async () => {
      const bufs = pending
      const want = pendingBytes
      pending = []
      pendingBytes = 0
      let done = (await fh.writev(bufs)).bytesWritten
      if (done < want) {
        const rest = Buffer.concat(bufs).subarray(done)
        while (done < want) done += (await fh.write(rest, done - (want - rest.length))).bytesWritten
      }
    }
    try {
      try {
        size = await this.consume(hash, body, maxBytes, async (chunk) => {
          pending.push(chunk)
          pendingBytes += chunk.length
          if (pendingBytes >= 1024 * 1024) await flush()
        })
        if (pendingBytes > 0) await flush()
        await fh.sync()
      } finally {
        await fh.close()
      }
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

  /** Reads the whole body, hashing it; EFBIG past maxBytes, EHASH on mismatch. */
  private async consume(hash: string, body: AsyncIterable<Uint8Array>, maxBytes: number, sink: ((chunk: Uint8Array) => Promise<void>) | null): Promise<number> {
    const h = createHash('sha256')
    let size = 0
    for await (const chunk of body) {
      size += chunk.length
      if (size > maxBytes) throw new BerthError('EFBIG', `block larger than ${maxBytes} bytes`)
      h.update(chunk)
      if (sink) await sink(chunk)
    }
    const got = h.digest('hex')
    if (got !== hash) throw new BerthError('EHASH', `body hashes to ${got}, not ${hash}`)
    return size
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
