/**
 * The filesystem as this mount sees it, independent of FUSE: paths are
 * resolved to inodes through a cached lookup walk, open files are addressed by
 * handle id (after an unlink-while-open the kernel sends ops without a path),
 * and all data goes through OpenFile (write-back buffers, block cache).
 *
 * Every method throws BerthError with an errno code; the FUSE adapter maps it.
 * Ownership of new inodes comes from the `Caller` the adapter passes in.
 */
import type { Attr, ChunkRef, DirEntry, Invalidation, StatfsReply } from '../common/protocol'
import { ROOT_INO } from '../common/protocol'
import { BerthError, fsError } from '../common/errors'
import { logger } from '../common/log'
import { PERM_BITS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../common/modes'
import { BlockCache } from './block-cache'
import { MetaCache } from './meta-cache'
import { OpenFile, Writeback } from './open-file'
import type { BlockApi, MetaApi } from './stores'

export interface Caller {
  uid: number
  gid: number
}

export interface VfsOptions {
  session: string
  chunkSize: number
  /** Block cache bound in bytes. */
  cacheBytes: number
  /** Dirty write-back buffers bound in bytes. */
  maxDirtyBytes: number
  maxUploads: number
  readaheadChunks: number
  /** Safety-net TTL of cached entries and attributes. */
  metaTtlMs: number
}


interface Handle {
  file: OpenFile
  flags: number
  /** End of the last read: a read starting here is sequential. */
  lastEnd: number
  /** Wrote through this handle: its close flushes (a handle that wrote nothing does not). */
  wrote: boolean
}

const log = logger('client')
const RELEASE_DELAY_MS = 10
const RELEASE_BATCH = 500
/** A read within this distance of the previous one counts as sequential. */
const SEQUENTIAL_WINDOW = 1024 * 1024
const O_ACCMODE = 3
const O_APPEND = 0o2000

/** Names the kernel asks about on every write; answered locally (docs/semantics.md#xattrs). */
const LOCAL_XATTR_PREFIXES = ['security.', 'system.']

export class Vfs {
  readonly cache: MetaCache
  readonly blocks: BlockCache
  private readonly wb: Writeback
  private readonly files = new Map<number, OpenFile>()
  private readonly handles = new Map<number, Handle>()
  private nextFh = 1
  private readonly releases: number[] = []
  /** Inodes freed while our session lease had lapsed (client/session-lease.ts): their handles fail. */
  private readonly lost = new Set<number>()
  private releaseTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly meta: MetaApi,
    blockApi: BlockApi,
    readonly opts: VfsOptions,
  ) {
    this.cache = new MetaCache({ ttlMs: opts.metaTtlMs, maxAttrs: 200_000, maxDirs: 10_000 })
    this.blocks = new BlockCache(blockApi, { maxBytes: opts.cacheBytes })
    this.wb = new Writeback(blockApi, this.blocks, { chunkSize: opts.chunkSize, maxDirtyBytes: opts.maxDirtyBytes, maxUploads: opts.maxUploads })
  }

  invalidate(inv: Invalidation): void {
    this.cache.apply(inv)
  }

  get openFiles(): number {
    return this.files.size
  }

  // ---- resolution ----

  /** Attributes of `path`, resolving each component (cached). */
  async resolve(path: string): Promise<Attr> {
    // "" is how a missing path reaches us (libfuse has none for a file removed
    // while open); it must never mean the root
    if (!path.startsWith('/')) throw fsError('ENOENT', `no path (${JSON.stringify(path)})`)
    let attr = await this.inodeAttr(ROOT_INO)
    for (const name of splitPath(path)) {
      if ((attr.mode & S_IFMT) !== S_IFDIR) throw fsError('ENOTDIR', `${path}: not a directory`)
      attr = await this.child(attr.ino, name)
    }
    return attr
  }

  private async resolveParent(path: string): Promise<{ parent: Attr; name: string }> {
    const parts = splitPath(path)
    const name = parts.pop()
    if (name === undefined) throw fsError('EINVAL', 'the root has no parent')
    const parent = await this.resolve('/' + parts.join('/'))
    if ((parent.mode & S_IFMT) !== S_IFDIR) throw fsError('ENOTDIR', `${path}: parent is not a directory`)
    return { parent, name }
  }

  private async child(parent: number, name: string): Promise<Attr> {
    const ino = this.cache.entry(parent, name)
    if (ino !== undefined) {
      const attr = this.cache.attr(ino)
      if (attr) return this.overlay(attr)
    }
    try {
      const { attr } = await this.meta.call('lookup', { parent, name })
      this.cache.setEntry(parent, name, attr)
      return this.overlay(attr)
    } catch (err) {
      if ((err as BerthError).code === 'ENOENT') this.cache.dropEntry(parent, name)
      throw err
    }
  }

  private async inodeAttr(ino: number): Promise<Attr> {
    const hit = this.cache.attr(ino)
    if (hit) return this.overlay(hit)
    const { attr } = await this.meta.call('getattr', { ino })
    this.cache.setAttr(attr)
    return this.overlay(attr)
  }

  /** An open file's local size and mtime win over what meta has. */
  private overlay(attr: Attr): Attr {
    const f = this.files.get(attr.ino)
    if (!f) return attr
    // size and gen describe the chunk map this mount holds; the rest is meta's
    f.attr = { ...attr, size: f.attr.size, gen: f.attr.gen }
    return f.view()
  }

  private handle(fh: number, closing = false): Handle {
    const h = this.handles.get(fh)
    if (!h) throw fsError('EBADF', `no open handle ${fh}`)
    if (!closing && this.lost.has(h.file.attr.ino)) {
      throw fsError('EIO', `inode ${h.file.attr.ino} was freed while this mount's session had lapsed; the handle is dead`)
    }
    return h
  }

  /**
   * Every inode registered with meta by this mount and how many times: one per
   * open inode, plus one per release not sent yet (meta still counts it).
   */
  heldInodes(): Array<{ ino: number; count: number }> {
    const counts = new Map<number, number>()
    for (const ino of this.files.keys()) counts.set(ino, 1)
    for (const ino of this.releases) counts.set(ino, (counts.get(ino) ?? 0) + 1)
    return [...counts].map(([ino, count]) => ({ ino, count }))
  }

  /** Fails every handle of these inodes from now on (EIO); they no longer exist in meta. */
  markLost(inos: number[]): void {
    for (const ino of inos) if (this.files.has(ino)) this.lost.add(ino)
  }

  private remember(parent: number, name: string, attr: Attr): void {
    this.cache.setEntry(parent, name, attr)
    this.cache.dropAttr(parent)
  }

  // ---- attributes ----

  getattr(path: string): Promise<Attr> {
    return this.resolve(path)
  }

  async fgetattr(fh: number): Promise<Attr> {
    return this.handle(fh).file.view()
  }

  private async setattr(attr: Attr, change: { mode?: number; uid?: number; gid?: number; atime?: [number, number] | 'now'; mtime?: [number, number] | 'now' }): Promise<Attr> {
    const f = this.files.get(attr.ino)
    // pending data would be committed later with the write time: commit it first
    if (f && (change.mtime !== undefined || change.atime !== undefined)) await f.flush(this.meta, this.opts.session)
    const reply = await this.meta.call('setattr', { ino: attr.ino, ...change })
    this.cache.setAttr(reply.attr)
    if (f) f.attr = { ...reply.attr, size: f.attr.size }
    return this.overlay(reply.attr)
  }

  async chmod(path: string, mode: number): Promise<void> {
    const attr = await this.resolve(path)
    await this.setattr(attr, { mode: (attr.mode & S_IFMT) | (mode & PERM_BITS) })
  }

  async chown(path: string, uid: number | undefined, gid: number | undefined): Promise<void> {
    const attr = await this.resolve(path)
    await this.setattr(attr, { uid, gid })
  }

  /** An undefined time is left as it is (UTIME_OMIT). */
  async utimens(path: string, atime: [number, number] | 'now' | undefined, mtime: [number, number] | 'now' | undefined): Promise<void> {
    if (atime === undefined && mtime === undefined) return
    await this.setattr(await this.resolve(path), { atime, mtime })
  }

  async truncate(path: string, size: number): Promise<void> {
    const attr = await this.resolve(path)
    if ((attr.mode & S_IFMT) === S_IFDIR) throw fsError('EISDIR', `${path} is a directory`)
    const f = this.files.get(attr.ino)
    if (f) {
      const next = await f.truncate(this.meta, this.opts.session, size)
      this.cache.setAttr(next)
      return
    }
    const reply = await this.meta.call('setattr', { ino: attr.ino, size })
    this.cache.setAttr(reply.attr)
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const f = this.handle(fh).file
    const next = await f.truncate(this.meta, this.opts.session, size)
    this.cache.setAttr(next)
  }

  // ---- directories ----

  async readdir(path: string): Promise<DirEntry[]> {
    const dir = await this.resolve(path)
    if ((dir.mode & S_IFMT) !== S_IFDIR) throw fsError('ENOTDIR', `${path} is not a directory`)
    const out: DirEntry[] = [{ name: '.', attr: dir }]
    if (dir.ino === ROOT_INO) out.push({ name: '..', attr: dir })
    // glibc's readdir drops entries whose d_ino is 0, so ".." needs the real parent
    else out.push({ name: '..', attr: await this.resolve('/' + splitPath(path).slice(0, -1).join('/')) })
    let cursor: string | null = null
    do {
      const page: { entries: DirEntry[]; next: string | null } = await this.meta.call('readdir', { ino: dir.ino, cursor })
      for (const e of page.entries) {
        this.cache.setEntry(dir.ino, e.name, e.attr)
        out.push({ name: e.name, attr: this.overlay(e.attr) })
      }
      cursor = page.next
    } while (cursor)
    return out
  }

  async mkdir(path: string, mode: number, caller: Caller): Promise<Attr> {
    const { parent, name } = await this.resolveParent(path)
    // setgid-directory inheritance is meta's: it sees the parent as it is in the transaction
    const { attr } = await this.meta.call('mkdir', { parent: parent.ino, name, mode: S_IFDIR | (mode & PERM_BITS), uid: caller.uid, gid: caller.gid })
    this.remember(parent.ino, name, attr)
    return attr
  }

  /** With `session`, meta also registers the new file as open by this mount (create). */
  async mknod(path: string, mode: number, rdev: number, caller: Caller, session?: string): Promise<Attr> {
    const { parent, name } = await this.resolveParent(path)
    const type = mode & S_IFMT || S_IFREG
    const { attr } = await this.meta.call('mknod', { parent: parent.ino, name, mode: type | (mode & PERM_BITS), rdev, uid: caller.uid, gid: caller.gid, session })
    this.remember(parent.ino, name, attr)
    return attr
  }

  async rmdir(path: string): Promise<void> {
    const { parent, name } = await this.resolveParent(path)
    const ino = this.cache.entry(parent.ino, name)
    await this.meta.call('rmdir', { parent: parent.ino, name })
    this.cache.dropEntry(parent.ino, name)
    this.cache.dropAttr(parent.ino)
    if (ino !== undefined) {
      this.cache.dropAttr(ino)
      this.cache.dropDir(ino)
    }
  }

  async unlink(path: string): Promise<void> {
    const { parent, name } = await this.resolveParent(path)
    const ino = this.cache.entry(parent.ino, name)
    await this.meta.call('unlink', { parent: parent.ino, name })
    this.cache.dropEntry(parent.ino, name)
    this.cache.dropAttr(parent.ino)
    if (ino !== undefined) this.cache.dropAttr(ino)
  }

  async rename(src: string, dest: string): Promise<void> {
    const from = await this.resolveParent(src)
    const to = await this.resolveParent(dest)
    const moved = this.cache.entry(from.parent.ino, from.name)
    const replaced = this.cache.entry(to.parent.ino, to.name)
    await this.meta.call('rename', { parent: from.parent.ino, name: from.name, newParent: to.parent.ino, newName: to.name })
    this.cache.dropEntry(from.parent.ino, from.name)
    this.cache.dropEntry(to.parent.ino, to.name)
    for (const ino of [from.parent.ino, to.parent.ino, moved, replaced]) if (ino !== undefined) this.cache.dropAttr(ino)
    // a moved directory's ".." changed; its entries did not
  }

  async link(src: string, dest: string): Promise<Attr> {
    const target = await this.resolve(src)
    const { parent, name } = await this.resolveParent(dest)
    const { attr } = await this.meta.call('link', { ino: target.ino, newParent: parent.ino, newName: name })
    this.remember(parent.ino, name, attr)
    return attr
  }

  async symlink(target: string, path: string, caller: Caller): Promise<Attr> {
    const { parent, name } = await this.resolveParent(path)
    const { attr } = await this.meta.call('symlink', { parent: parent.ino, name, target, uid: caller.uid, gid: caller.gid })
    this.remember(parent.ino, name, attr)
    return attr
  }

  async readlink(path: string): Promise<string> {
    const attr = await this.resolve(path)
    if ((attr.mode & S_IFMT) !== S_IFLNK) throw fsError('EINVAL', `${path} is not a symlink`)
    return (await this.meta.call('readlink', { ino: attr.ino })).target
  }

  async statfs(): Promise<StatfsReply> {
    return this.meta.call('statfs', {})
  }

  // ---- xattrs ----

  async getxattr(path: string, name: string): Promise<Buffer> {
    const attr = await this.resolve(path)
    if (LOCAL_XATTR_PREFIXES.some((p) => name.startsWith(p))) {
      throw fsError(name.startsWith('system.posix_acl') ? 'ENOTSUP' : 'ENODATA', `${name}: not stored by berth`)
    }
    const { value } = await this.meta.call('getxattr', { ino: attr.ino, name })
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  }

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    const attr = await this.resolve(path)
    if (LOCAL_XATTR_PREFIXES.some((p) => name.startsWith(p))) throw fsError('ENOTSUP', `${name}: berth stores user.* and trusted.* xattrs only`)
    await this.meta.call('setxattr', { ino: attr.ino, name, value: new Uint8Array(value), flags })
  }

  async listxattr(path: string): Promise<string[]> {
    const attr = await this.resolve(path)
    return (await this.meta.call('listxattr', { ino: attr.ino })).names
  }

  async removexattr(path: string, name: string): Promise<void> {
    const attr = await this.resolve(path)
    if (LOCAL_XATTR_PREFIXES.some((p) => name.startsWith(p))) throw fsError('ENODATA', `${name}: not stored by berth`)
    await this.meta.call('removexattr', { ino: attr.ino, name })
  }

  // ---- files ----

  async create(path: string, mode: number, flags: number, caller: Caller): Promise<number> {
    // one meta transaction creates and opens; a new file has no chunks to load
    const attr = await this.mknod(path, (mode & PERM_BITS) | S_IFREG, 0, caller, this.opts.session)
    const f = new OpenFile(attr, this.wb)
    this.files.set(attr.ino, f)
    return this.addHandle(f, flags)
  }

  async open(path: string, flags: number): Promise<number> {
    const attr = await this.resolve(path)
    const type = attr.mode & S_IFMT
    if (type === S_IFDIR && (flags & O_ACCMODE) !== 0) throw fsError('EISDIR', `${path} is a directory`)
    return this.openIno(attr, flags)
  }

  /**
   * The first handle on an inode registers it with meta (`open`: keeps an
   * unlinked file alive, returns the chunk map); later ones only revalidate,
   * so there is exactly one meta `release` per inode per session.
   */
  private async openIno(attr: Attr, flags: number): Promise<number> {
    let f = this.files.get(attr.ino)
    if (!f) {
      const reply = await this.meta.call('open', { ino: attr.ino, session: this.opts.session })
      const chunks = await this.loadChunks(attr.ino, reply.chunks, reply.more)
      f = this.files.get(attr.ino)
      if (!f) {
        f = new OpenFile(reply.attr, this.wb)
        f.refresh(reply.attr, chunks)
        this.files.set(attr.ino, f)
      }
      this.cache.setAttr(reply.attr)
    } else if (!f.isDirty) {
      // close-to-open: another client may have committed since our last open.
      // The file counts this opener meanwhile: were the last other handle
      // closed during the wait, the file would be dropped and this handle
      // would land on an orphan no later open sees (readers saw zeros).
      const file = f
      f.handles++
      try {
        await f.revalidate(async () => {
          const { attr: fresh } = await this.meta.call('getattr', { ino: attr.ino })
          if (fresh.gen === file.attr.gen && fresh.size === file.attr.size) return undefined
          const { chunks, more } = await this.meta.call('chunks', { ino: attr.ino, from: 0 })
          return { attr: fresh, chunks: await this.loadChunks(attr.ino, chunks, more) }
        })
      } catch (err) {
        this.unref(f)
        throw err
      }
      f.handles--
    }
    return this.addHandle(f, flags)
  }

  private addHandle(f: OpenFile, flags: number): number {
    f.handles++
    const fh = this.allocFh()
    this.handles.set(fh, { file: f, flags, lastEnd: -1, wrote: false })
    return fh
  }

  private async loadChunks(ino: number, first: ChunkRef[], more: boolean): Promise<ChunkRef[]> {
    const all = [...first]
    while (more) {
      const from = all.length ? all[all.length - 1].idx + 1 : 0
      const page = await this.meta.call('chunks', { ino, from })
      all.push(...page.chunks)
      more = page.more && page.chunks.length > 0
    }
    return all
  }

  private allocFh(): number {
    for (;;) {
      const fh = this.nextFh
      this.nextFh = this.nextFh >= 0x7ffffff0 ? 1 : this.nextFh + 1
      if (!this.handles.has(fh)) return fh
    }
  }

  async read(fh: number, target: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(fh)
    // The kernel's own readahead sends several reads at once, slightly out of
    // order, so "sequential" means near the previous request, and the previous
    // end is recorded before waiting.
    const sequential = pos === 0 || (h.lastEnd >= 0 && Math.abs(pos - h.lastEnd) <= SEQUENTIAL_WINDOW)
    h.lastEnd = pos + len
    const n = await h.file.read(target, pos, len, !sequential)
    if (sequential) h.file.readahead(pos + n, this.opts.readaheadChunks)
    return n
  }

  /**
   * `data` must stay valid until this resolves (FUSE buffers are copied by the
   * adapter); it is copied into chunk buffers and not referenced afterwards, so
   * the caller may reuse it then.
   */
  async write(fh: number, data: Buffer, pos: number): Promise<number> {
    const h = this.handle(fh)
    if ((h.flags & O_ACCMODE) === 0) throw fsError('EBADF', 'handle is read-only')
    h.wrote = true
    // O_APPEND: the end of file is taken under the file's lock, when this
    // write's turn comes, not from the kernel's offset (it may be older)
    return h.file.write(data, pos, (h.flags & O_APPEND) !== 0)
  }

  /** close(): commits what this handle wrote; a handle that wrote nothing does not flush. */
  async flush(fh: number): Promise<void> {
    const h = this.handle(fh)
    if (!h.wrote) return
    await h.file.flush(this.meta, this.opts.session)
    this.afterCommit(h.file)
  }

  /** fsync commits the file whatever the handle did (fsync of a read-only fd is valid). */
  async fsync(fh: number): Promise<void> {
    const f = this.handle(fh).file
    await f.flush(this.meta, this.opts.session)
    this.afterCommit(f)
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh, true)
    this.handles.delete(fh)
    const f = h.file
    try {
      if (this.lost.has(f.attr.ino)) throw fsError('EIO', `inode ${f.attr.ino} was freed while this mount's session had lapsed; its unsaved data is lost`)
      // the last handle also commits what is still dirty (a failed flush before)
      if (h.wrote || (f.handles === 1 && f.isDirty)) {
        await f.flush(this.meta, this.opts.session)
        this.afterCommit(f)
      }
    } finally {
      this.unref(f)
    }
  }

  /** One handle (or opener) less; the last one drops the file and releases it in meta. */
  private unref(f: OpenFile): void {
    f.handles--
    if (f.handles > 0) return
    if (this.files.get(f.attr.ino) === f) this.files.delete(f.attr.ino)
    this.lost.delete(f.attr.ino)
    f.discard()
    this.wb.untrack(f)
    this.queueRelease(f.attr.ino)
  }

  /**
   * Nobody waits for a release (close() returned at flush), so releases are
   * sent in batches a few ms later: one meta transaction instead of one per
   * file. Meta counts opens, so a re-open in between cannot be lost.
   */
  private queueRelease(ino: number): void {
    this.releases.push(ino)
    if (this.releases.length >= RELEASE_BATCH) void this.sendReleases()
    else this.releaseTimer ??= setTimeout(() => void this.sendReleases(), RELEASE_DELAY_MS)
  }

  /** Sends queued releases now (also at unmount). Failures are logged: the session lease cleans up. */
  async sendReleases(): Promise<void> {
    if (this.releaseTimer) clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
    while (this.releases.length) {
      const inos = this.releases.splice(0, RELEASE_BATCH)
      await this.meta.call('release', { session: this.opts.session, inos }).catch((err: unknown) => {
        log.warn(`release of ${inos.length} inode(s) failed; the session lease will release them: ${(err as Error).message}`)
      })
    }
  }

  private afterCommit(f: OpenFile): void {
    this.cache.setAttr(f.attr)
  }

  /** Flushes every open file (unmount, SIGTERM). Errors are collected, not thrown early. */
  async flushAll(): Promise<unknown[]> {
    const errors: unknown[] = []
    await Promise.all(
      [...this.files.values()].map((f) =>
        f.flush(this.meta, this.opts.session).catch((err: unknown) => {
          errors.push(err)
        }),
      ),
    )
    return errors
  }
}

export function splitPath(path: string): string[] {
  return path.split('/').filter((p) => p.length > 0)
}

export { BerthError }
