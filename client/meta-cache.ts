/**
 * Client metadata cache: directory entries (parent ino -> name -> ino) and
 * inode attributes. Both are dropped by the meta service's invalidation
 * messages, entirely on a NATS reconnect and on meta's forget-everything
 * message (sent whenever a meta process starts serving), and expire after a
 * TTL as a safety net, so a change made by another client is seen within
 * `ttlMs` at worst even if an invalidation was lost some other way (a bug).
 *
 * A directory's entries may be marked complete: this mount created it (empty)
 * or listed all of it, and every change since came through this mount (its
 * own changes are applied here as they are acknowledged; any other client's
 * change to the directory arrives as an invalidation naming it, which drops
 * the directory's entries, completeness included). A name missing from a
 * complete directory is known absent without asking meta: the kernel looks up
 * every name before it creates it, so this saves one round trip per create,
 * mkdir and symlink in a directory this mount made or read.
 *
 * A name meta said does not exist is kept absent too (`missing`), under the
 * same rule: any other client's change to the directory drops it. SQLite
 * looks for its journal before every transaction, Python's imports and a
 * compiler's include paths probe names that are not there: each such probe
 * was a meta trip. A lookup's ENOENT is kept only if no invalidation was
 * applied while it was in flight (`generation`): the invalidation of a name
 * made meanwhile may have been applied before the reply was.
 */
import { LRUCache } from 'lru-cache'
import type { Attr, Invalidation } from '../common/protocol'

export interface MetaCacheOptions {
  ttlMs: number
  maxAttrs: number
  maxDirs: number
}

/** Directories bigger than this are not cached entry by entry (memory bound). */
const MAX_ENTRIES_PER_DIR = 100_000

interface DirEntries {
  names: Map<string, number>
  /** Every entry of the directory is in `names`. */
  complete: boolean
  /** Names meta said are absent, since the directory's last invalidation. */
  missing: Set<string>
}

export class MetaCache {
  private readonly attrs: LRUCache<number, Attr>
  private readonly dirs: LRUCache<number, DirEntries>
  /** Moves with every invalidation applied and every drop of a directory's entries. */
  private drops = 0

  constructor(opts: MetaCacheOptions) {
    this.attrs = new LRUCache<number, Attr>({ max: opts.maxAttrs, ttl: opts.ttlMs })
    this.dirs = new LRUCache<number, DirEntries>({ max: opts.maxDirs, ttl: opts.ttlMs })
  }

  entry(parent: number, name: string): number | undefined {
    return this.dirs.get(parent)?.names.get(name)
  }

  /** `name` is known not to exist in `parent` (the directory's listing is complete here). */
  absent(parent: number, name: string): boolean {
    const d = this.dirs.get(parent)
    return d !== undefined && ((d.complete && !d.names.has(name)) || d.missing.has(name))
  }

  /**
   * `name` is not in `parent`'s complete listing: what a create or mkdir
   * answered ahead of meta needs. A name only known missing (`missing`) is
   * not enough: the kernel looks up every name before creating it, so every
   * create would go ahead, and an O_CREAT (O_EXCL) racing another mount's
   * create of the same name would be refused only after the fact.
   */
  absentFromListing(parent: number, name: string): boolean {
    const d = this.dirs.get(parent)
    return d !== undefined && d.complete && !d.names.has(name)
  }

  /** Taken before a lookup is sent; setAbsent keeps its ENOENT only if nothing was dropped since. */
  generation(): number {
    return this.drops
  }

  /** Meta said `name` is not in `parent`, answering a lookup sent at `since` (generation()). */
  setAbsent(parent: number, name: string, since: number): void {
    if (since !== this.drops) return
    const d = this.dir(parent)
    if (d.names.size + d.missing.size >= MAX_ENTRIES_PER_DIR) d.missing.clear()
    d.missing.add(name)
  }

  private dir(parent: number): DirEntries {
    let d = this.dirs.get(parent)
    if (!d) {
      d = { names: new Map(), complete: false, missing: new Set() }
      this.dirs.set(parent, d)
    }
    return d
  }

  setEntry(parent: number, name: string, attr: Attr): void {
    const d = this.dir(parent)
    if (d.names.size >= MAX_ENTRIES_PER_DIR) {
      d.names.clear()
      d.complete = false
    }
    d.names.set(name, attr.ino)
    d.missing.delete(name)
    this.attrs.set(attr.ino, attr)
  }

  /** Marks `parent`'s listing complete: call only when every entry is in the cache (or it is new and empty). */
  setComplete(parent: number): void {
    const d = this.dir(parent)
    if (d.names.size < MAX_ENTRIES_PER_DIR) d.complete = true
  }

  /**
   * The whole listing of a complete directory with every entry's attributes,
   * or undefined when the cache cannot answer it alone (incomplete, or an
   * entry's attributes were evicted). Insertion order: the kernel needs a
   * stable order within one directory stream, not a sorted one.
   */
  listing(parent: number): Array<{ name: string; attr: Attr }> | undefined {
    const d = this.dirs.get(parent)
    if (!d?.complete) return undefined
    const out: Array<{ name: string; attr: Attr }> = []
    for (const [name, ino] of d.names) {
      const attr = this.attrs.get(ino)
      if (!attr) return undefined
      out.push({ name, attr })
    }
    return out
  }

  /** `dir` is known to have no entries (complete here, and none left). */
  empty(dir: number): boolean {
    const d = this.dirs.get(dir)
    return d !== undefined && d.complete && d.names.size === 0
  }

  dropEntry(parent: number, name: string): void {
    this.dirs.get(parent)?.names.delete(name)
  }

  attr(ino: number): Attr | undefined {
    return this.attrs.get(ino)
  }

  setAttr(attr: Attr): void {
    this.attrs.set(attr.ino, attr)
  }

  /**
   * A directory's attributes from a mutation's reply. Replies to one mount's
   * mutations of one directory may be handled out of commit order (two in
   * flight), so an older ctime never replaces a newer one.
   */
  setDirAttr(attr: Attr): void {
    const had = this.attrs.get(attr.ino)
    if (had && (had.ctime[0] > attr.ctime[0] || (had.ctime[0] === attr.ctime[0] && had.ctime[1] > attr.ctime[1]))) return
    this.attrs.set(attr.ino, attr)
  }

  dropAttr(ino: number): void {
    this.attrs.delete(ino)
  }

  dropDir(ino: number): void {
    this.drops++
    this.dirs.delete(ino)
  }

  /**
   * Applies meta's invalidation. `own`: caused by this mount's request, whose
   * entry changes the VFS applied itself when it was acknowledged; its
   * directories keep their entries (and completeness), only attributes go.
   */
  apply(inv: Invalidation, own = false): void {
    this.drops++
    for (const ino of inv.inos) this.attrs.delete(ino)
    for (const [parent, name] of inv.entries ?? []) {
      this.dropEntry(parent, name)
      const d = own ? undefined : this.dirs.get(parent)
      if (d) d.complete = false
    }
    for (const dir of inv.dirs) {
      if (!own) this.dirs.delete(dir)
      this.attrs.delete(dir)
    }
  }

  /** Directories with cached entries (any the kernel may hold a listing of, unless evicted). */
  directories(): number[] {
    return [...this.dirs.keys()]
  }

  clear(): void {
    this.drops++
    this.attrs.clear()
    this.dirs.clear()
  }
}
