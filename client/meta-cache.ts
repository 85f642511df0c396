/**
 * Client metadata cache: directory entries (parent ino -> name -> ino) and
 * inode attributes. Both are dropped by the meta service's invalidation
 * messages and expire after a TTL as a safety net for lost messages, so a
 * change made by another client is seen within `ttlMs` at worst.
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

export class MetaCache {
  private readonly attrs: LRUCache<number, Attr>
  private readonly dirs: LRUCache<number, Map<string, number>>

  constructor(opts: MetaCacheOptions) {
    this.attrs = new LRUCache<number, Attr>({ max: opts.maxAttrs, ttl: opts.ttlMs })
    this.dirs = new LRUCache<number, Map<string, number>>({ max: opts.maxDirs, ttl: opts.ttlMs })
  }

  entry(parent: number, name: string): number | undefined {
    return this.dirs.get(parent)?.get(name)
  }

  setEntry(parent: number, name: string, attr: Attr): void {
    let dir = this.dirs.get(parent)
    if (!dir) {
      dir = new Map()
      this.dirs.set(parent, dir)
    }
    if (dir.size >= MAX_ENTRIES_PER_DIR) dir.clear()
    dir.set(name, attr.ino)
    this.attrs.set(attr.ino, attr)
  }

  dropEntry(parent: number, name: string): void {
    this.dirs.get(parent)?.delete(name)
  }

  attr(ino: number): Attr | undefined {
    return this.attrs.get(ino)
  }

  setAttr(attr: Attr): void {
    this.attrs.set(attr.ino, attr)
  }

  dropAttr(ino: number): void {
    this.attrs.delete(ino)
  }

  dropDir(ino: number): void {
    this.dirs.delete(ino)
  }

  apply(inv: Invalidation): void {
    for (const ino of inv.inos) this.attrs.delete(ino)
    for (const [parent, name] of inv.entries ?? []) this.dropEntry(parent, name)
    for (const dir of inv.dirs) {
      this.dirs.delete(dir)
      this.attrs.delete(dir)
    }
  }

  clear(): void {
    this.attrs.clear()
    this.dirs.clear()
  }
}
