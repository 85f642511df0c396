/**
 * The filesystem as this mount sees it, independent of FUSE, addressed as the
 * kernel addresses it: by inode (berth's inode numbers are the kernel's node
 * ids), by (parent, name) for directory operations, by handle id for open
 * files and directories. All data goes through OpenFile (write-back buffers,
 * block cache).
 *
 * Every method throws BerthError with an errno code; the FUSE adapter maps it.
 * Ownership of new inodes comes from the `Caller` the adapter passes in.
 */
import type { Attr, ChunkRef, DirEntry, Invalidation, StatfsReply, Timespec } from '../common/protocol'
import { MAX_FILE_SIZE, ROOT_INO } from '../common/protocol'
import { aclBit, aclCreate, HAS_ACCESS_ACL, HAS_DEFAULT_ACL, isAclName } from '../common/acl'
import { BerthError, codeOf, fsError } from '../common/errors'
import { logger } from '../common/log'
import { inheritedOwnership, isDir, PERM_BITS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../common/modes'
import { validateName } from '../common/names'
import { BlockCache } from './block-cache'
import { ChunkBuffers } from './chunk-buffers'
import { MAX_COPY, RangeCopier } from './copy-range'
import { MountLocks } from './locks'
import { MetaCache } from './meta-cache'
import { dropUndefined, nowTimespec, OpenFile, Writeback, type CommitTimes } from './open-file'
import type { BlockApi, MetaApi } from './stores'
import { AheadPipeline, type AheadOp, type AheadOutcome } from './ahead-pipeline'
import { InoPool } from './ino-pool'
import { DirStreams, type DirStream } from './dir-streams'
import { ReadPattern } from './read-pattern'
import { ClosedFiles, NamedWatch } from './closed-files'

export interface Caller {
  uid: number
  gid: number
  /**
   * A creator's umask when it is the file system's to apply (POSIX ACLs on:
   * not under a directory with a default ACL, common/acl.ts); 0 or absent
   * when the kernel applied it already.
   */
  umask?: number
}

export interface VfsOptions {
  session: string
  chunkSize: number
  /** Block cache bound in bytes. */
  cacheBytes: number
  /** Dirty write-back buffers bound in bytes. */
  maxDirtyBytes: number
  maxUploads: number
  /** Compact appended slices (default true; docs/data-node.md#appends-slices-and-compaction). */
  compact?: boolean
  readaheadChunks: number
  /** Safety-net TTL of cached entries and attributes. */
  metaTtlMs: number
  /**
   * Unlinks answered before meta applies them, at most this many in flight
   * (client/ahead-pipeline.ts); 0 or unset: every unlink waits for meta.
   */
  unlinkWindow?: number
  /** How long a held change waits for company (HOLD_MS); tests hold longer to make an interleaving certain. */
  aheadHoldMs?: number
  /**
   * Bytes of chunk maps (inline data included) kept for closed files, so a
   * read-only open of a file this mount closed, unchanged since, reuses its
   * map (client/closed-files.ts); 0 or unset: none are kept.
   */
  closedFilesBytes?: number
  /**
   * Resolves true once every invalidation meta published before the call
   * has been applied here (a NATS round trip on the connection they come
   * by), false when that cannot be known (disconnected, a NATS cluster).
   * Given and true, a kept map is checked against the attribute cache; else
   * against a `getattr` from meta (still cheaper than fetching the map).
   */
  barrier?: () => Promise<boolean>
}

/** Where the VFS reaches the kernel's caches (the FUSE session; none in tests without a mount). */
export interface KernelCaches {
  invalidateInode(ino: number): void
  invalidateEntry(parent: number, name: string): void
  /** Whether the kernel enforces POSIX ACLs here (FUSE_CAP_POSIX_ACL granted). */
  aclsOn(): boolean
}


/** What opening an inode fetched: attributes, the first page of its map, and whether meta still has to count the open. */
interface OpenReply {
  attr: Attr
  chunks: ChunkRef[]
  more: boolean
  /** Registered with the next release batch, not by this request. */
  late: boolean
}

interface Handle {
  file: OpenFile
  flags: number
  /** Whether its reads form a stream (whole blocks, readahead) or scattered reads (pieces). */
  reads: ReadPattern
  /** Wrote through this handle: its close flushes (a handle that wrote nothing does not). */
  wrote: boolean
}

/** What the kernel's setattr changes; undefined fields stay as they are. */
export interface SetattrChange {
  mode?: number
  uid?: number
  gid?: number
  size?: number
  atime?: [number, number] | 'now'
  mtime?: [number, number] | 'now'
}

const log = logger('client')
const PARENTS_MAX = 100_000
const CONTENT_SEEN_MAX = 100_000
/** Free chunk buffers kept for reuse: this many bytes of them, at least one buffer and at most 8. */
const CHUNK_BUFFERS_KEPT_BYTES = 32 * 1024 * 1024
/**
 * How long releases (and late registrations of read-only opens) wait to be
 * batched. At 10 ms a shell loop of small files sent one release transaction
 * per file (each file takes longer than that), half of meta's writes; at
 * 100 ms they go together, and a file opened read-only and closed within it
 * is never registered. The window a late registration leaves is this long
 * (docs/semantics.md#writes).
 */
const RELEASE_DELAY_MS = 100
const RELEASE_BATCH = 500
/** open(2)'s access mode bits: 0 is O_RDONLY. */
export const O_ACCMODE = 3
/** lseek(2) whence values that reach the file system. */
const SEEK_DATA = 3
const SEEK_HOLE = 4
/** fallocate(2) mode bits (linux/falloc.h). */
const FALLOC_FL_KEEP_SIZE = 1
const FALLOC_FL_PUNCH_HOLE = 2
const FALLOC_FL_ZERO_RANGE = 0x10
/** What a punched range is overwritten with, a piece at a time (read only: writes copy from it). */
const ZEROS = Buffer.alloc(1024 * 1024)
const O_APPEND = 0o2000
const O_WRONLY = 1

/** A name meta takes (common/names.ts): the kernel checks none of this for FUSE. */
function validName(name: string): boolean {
  try {
    validateName(name)
    return true
  } catch {
    return false
  }
}

/** A creator's umask for meta, when there is one to apply (ACLs on). */
function umaskOf(caller: Caller): { umask?: number } {
  return caller.umask ? { umask: caller.umask } : {}
}

/** Names the kernel asks about on every write; answered locally (docs/semantics.md#xattrs). */
const LOCAL_XATTR_PREFIXES = ['security.', 'system.']
/** The namespaces meta stores. A local file system has no handler for any other and refuses to set one with ENOTSUP. */
const STORED_XATTR_PREFIXES = ['user.', 'trusted.']

export class Vfs {
  readonly cache: MetaCache
  readonly blocks: BlockCache
  private readonly wb: Writeback
  /** copy_file_range (client/copy-range.ts). */
  readonly copier: RangeCopier
  /** fcntl, OFD and flock locks, cluster-wide (client/locks.ts). */
  readonly locks: MountLocks
  private readonly files = new Map<number, OpenFile>()
  /** Chunk maps of files no handle holds, each exact for a gen (client/closed-files.ts). */
  readonly closed: ClosedFiles
  /** Inodes being opened: was one named by an invalidation while its map was fetched? */
  private readonly opening = new NamedWatch()
  private readonly handles = new Map<number, Handle>()
  /** Listings in progress, by (inode, offset): the kernel sends no opendir (client/dir-streams.ts). */
  private readonly dirs = new DirStreams()
  /** Directory -> the directory it was found in (".." entries). */
  private readonly parents = new Map<number, number>()
  /** Inode -> gen and size the kernel's page cache was filled from (FOPEN_KEEP_CACHE). */
  private readonly contentSeen = new Map<number, { gen: number; size: number }>()
  private nextFh = 1
  private readonly releases: number[] = []
  /** Read-only opens not registered with meta yet (sent with the next release batch): ino -> count. */
  private readonly holds = new Map<number, number>()
  /** Inodes freed while our session lease had lapsed (client/session-lease.ts): their handles fail. */
  private readonly lost = new Set<number>()
  private releaseTimer: NodeJS.Timeout | undefined
  /** Foreign invalidations applied so far (see invalidate). */
  private foreign = 0
  /** Own namespace changes acknowledged so far (a listing page read before one may lack it). */
  private changes = 0
  /** Meta, behind the unlink pipeline's barrier when unlinks go ahead. */
  private readonly meta: MetaApi
  private readonly pipeline: AheadPipeline | null
  /** Inode numbers for mkdirs ahead (null: every mkdir waits for meta). */
  private readonly inoPool: InoPool | null
  /** Directory -> its unlinks in flight (its cached attributes are a prediction meanwhile). */
  private readonly aheadIn = new Map<number, number>()
  /** Directory -> the first unlink answered ahead in it that meta then refused (its next fsync reports it). */
  private readonly aheadErrors = new Map<number, BerthError>()
  /** Set once mounted: meta's final directory attributes are pushed there after unlinks ahead. */
  kernel: KernelCaches | null = null

  constructor(
    meta: MetaApi,
    blockApi: BlockApi,
    readonly opts: VfsOptions,
  ) {
    this.pipeline = opts.unlinkWindow ? new AheadPipeline(meta, opts.unlinkWindow, opts.aheadHoldMs) : null
    this.meta = this.pipeline ?? meta
    this.inoPool = this.pipeline ? new InoPool(this.pipeline, opts.session) : null
    this.cache = new MetaCache({ ttlMs: opts.metaTtlMs, maxAttrs: 200_000, maxDirs: 10_000 })
    this.closed = new ClosedFiles(opts.closedFilesBytes ?? 0)
    // evicted blocks this mount wrote hold its next chunks (client/chunk-buffers.ts)
    const buffers = new ChunkBuffers(opts.chunkSize, Math.min(8, Math.max(1, Math.floor(CHUNK_BUFFERS_KEPT_BYTES / opts.chunkSize))))
    this.blocks = new BlockCache(blockApi, { maxBytes: opts.cacheBytes, buffers })
    this.copier = new RangeCopier(this.meta, opts.session, opts.chunkSize)
    this.locks = new MountLocks(this.meta, opts.session, async (ino) => {
      const f = this.files.get(ino)
      if (f && (f.isDirty || f.hasPending)) await this.commitFile(f)
    })
    this.wb = new Writeback(blockApi, this.blocks, { chunkSize: opts.chunkSize, maxDirtyBytes: opts.maxDirtyBytes, maxUploads: opts.maxUploads, compact: opts.compact, buffers })
  }

  /**
   * Meta's invalidation. `own`: caused by this mount's own request (its `by`
   * is our MetaClient's origin); the VFS applied that change when the reply
   * came, so directories keep their entries. Any other invalidation counts
   * as foreign: a reply that was in flight meanwhile may describe a state
   * older than it, so its directory attributes and listings are not cached.
   */
  invalidate(inv: Invalidation, own = false): void {
    if (!own) this.foreign++
    // a closed file's map stays exact for its gen whatever happens, but an
    // entry named here is dropped anyway: it would only be refused at open.
    // An open file's map is this mount's own changes on top of the last
    // fetch; another client's change makes that unknown.
    for (const ino of inv.inos) {
      this.closed.drop(ino)
      this.opening.note(ino)
      if (!own) this.files.get(ino)?.doubtMap()
    }
    // a directory with unlinks in flight keeps its predicted attributes until
    // the last of them settles (its own earlier unlinks' invalidations would
    // drop them, and the kernel's next permission check would wait for meta)
    if (own && this.aheadIn.size) {
      const predicted = (ino: number) => !this.aheadIn.has(ino)
      inv = { ...inv, inos: inv.inos.filter(predicted), dirs: inv.dirs.filter(predicted) }
    }
    this.cache.apply(inv, own)
  }

  /**
   * Forgets every cached entry and attribute (NATS reconnected, or meta's
   * forget-everything message: invalidations may have been lost), and drops
   * the kernel's attributes and listings of every directory this mount knows:
   * a listing the kernel keeps (FOPEN_CACHE_DIR) would otherwise last until a
   * refreshed mtime differs, up to `attr_timeout` later. The kernel has no
   * "drop everything" notification in libfuse 3.14, and pushing every file
   * would also throw away page caches that open() revalidates anyway; so
   * entries and file attributes the kernel holds live out their
   * `entry_timeout`/`attr_timeout` (1 s), and are then asked of meta.
   */
  clearCache(): void {
    const known = new Set<number>([ROOT_INO, ...this.cache.directories(), ...this.parents.keys()])
    this.foreign++
    this.cache.clear()
    this.closed.clear()
    this.opening.noteAll()
    for (const f of this.files.values()) f.doubtMap()
    const kernel = this.kernel
    if (kernel) for (const dir of known) kernel.invalidateInode(dir)
  }

  get openFiles(): number {
    return this.files.size
  }

  // ---- resolution ----

  /** The attributes of `name` in directory `parent` (the kernel's lookup). */
  async lookup(parent: number, name: string): Promise<Attr> {
    const ino = this.cache.entry(parent, name)
    if (ino !== undefined) {
      const attr = this.cache.attr(ino)
      if (attr) return this.overlay(attr)
    } else if (this.cache.absent(parent, name)) throw fsError('ENOENT', `no entry "${name}" in ${parent}`)
    const since = this.cache.generation()
    try {
      const { attr } = await this.meta.call('lookup', { parent, name })
      this.cache.setEntry(parent, name, attr)
      this.noteParent(parent, name, attr)
      return this.overlay(attr)
    } catch (err) {
      if ((err as BerthError).code === 'ENOENT') {
        this.cache.dropEntry(parent, name)
        this.cache.setAbsent(parent, name, since)
      }
      throw err
    }
  }

  /** Attributes of `path` from the root, one lookup per component (tools and tests; FUSE speaks inodes). */
  async resolve(path: string): Promise<Attr> {
    if (!path.startsWith('/')) throw fsError('ENOENT', `no path (${JSON.stringify(path)})`)
    let attr = await this.getattr(ROOT_INO)
    for (const name of splitPath(path)) {
      if ((attr.mode & S_IFMT) !== S_IFDIR) throw fsError('ENOTDIR', `${path}: not a directory`)
      attr = await this.lookup(attr.ino, name)
    }
    return attr
  }

  /**
   * Attributes of an inode. An open file's own view wins; an unlinked-but-open
   * file is still answered (meta keeps it while open, and this mount has it).
   */
  async getattr(ino: number, fh?: number): Promise<Attr> {
    const h = fh === undefined ? undefined : this.handles.get(fh)
    if (h && h.file.attr.ino === ino) return h.file.view()
    const hit = this.cache.attr(ino)
    if (hit) return this.overlay(hit)
    try {
      const { attr } = await this.meta.call('getattr', { ino })
      this.cache.setAttr(attr)
      return this.overlay(attr)
    } catch (err) {
      const f = this.files.get(ino)
      if (f && (err as BerthError).code === 'ENOENT') return f.view()
      throw err
    }
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
    // a file whose registration is still queued is not counted by meta yet
    for (const ino of this.files.keys()) if (!this.holds.has(ino)) counts.set(ino, 1)
    for (const ino of this.releases) counts.set(ino, (counts.get(ino) ?? 0) + 1)
    return [...counts].map(([ino, count]) => ({ ino, count }))
  }

  /** Fails every handle of these inodes from now on (EIO); they no longer exist in meta. */
  markLost(inos: number[]): void {
    for (const ino of inos) if (this.files.has(ino)) this.lost.add(ino)
  }

  /** A new name this mount made: its entry, and the parent's attributes from the reply. */
  private remember(parent: number, name: string, attr: Attr, dirs: Attr[] | undefined, foreignAtSend: number): void {
    this.changes++
    this.cache.setEntry(parent, name, attr)
    this.noteParent(parent, name, attr)
    this.dirsChanged(dirs, foreignAtSend, [parent])
  }

  /**
   * After a namespace change of this mount: the changed directories'
   * attributes from its reply (so the kernel's GETATTR of the parent, which
   * follows every create and unlink, needs no round trip), unless a foreign
   * invalidation came in while it was in flight (the reply may be older).
   */
  private dirsChanged(dirs: Attr[] | undefined, foreignAtSend: number, touched: number[]): void {
    if (dirs && this.foreign === foreignAtSend) for (const d of dirs) this.cache.setDirAttr(d)
    else for (const ino of touched) this.cache.dropAttr(ino)
  }

  /**
   * A namespace mutation of `dirs` (parents) through meta. On any failure the
   * directories' cached entries go: the change may or may not have happened
   * (a timeout), and its invalidation is ours, so it would not drop them.
   */
  private async mutate<T>(dirs: number[], fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      for (const d of dirs) {
        this.cache.dropDir(d)
        this.cache.dropAttr(d)
      }
      throw err
    }
  }

  // ---- attributes ----

  async fgetattr(fh: number): Promise<Attr> {
    return this.handle(fh).file.view()
  }

  /**
   * chmod, chown, utimens and truncate in one: what the kernel's setattr
   * carries. An undefined time is left as it is (UTIME_OMIT); 'now' is meta's
   * clock (UTIME_NOW). Size changes go through the open file if there is one.
   */
  async setattr(ino: number, change: SetattrChange, fh?: number): Promise<Attr> {
    const h = fh === undefined ? undefined : this.handles.get(fh)
    let attr = await this.getattr(ino, fh)
    const type = attr.mode & S_IFMT
    if (change.size !== undefined) {
      if (type === S_IFDIR) throw fsError('EISDIR', `inode ${ino} is a directory`)
      if (change.size > MAX_FILE_SIZE) throw fsError('EFBIG', `size ${change.size} is past the largest file (${MAX_FILE_SIZE} bytes)`)
      const f = h?.file ?? this.files.get(ino)
      if (f) attr = await f.truncate(this.meta, this.opts.session, change.size)
      else attr = (await this.meta.call('setattr', { ino, size: change.size })).attr
      this.cache.setAttr(attr)
      attr = this.overlay(attr)
    }
    const rest: Omit<SetattrChange, 'size'> = {}
    if (change.mode !== undefined) rest.mode = (attr.mode & S_IFMT) | (change.mode & PERM_BITS)
    if (change.uid !== undefined) rest.uid = change.uid
    if (change.gid !== undefined) rest.gid = change.gid
    if (change.atime !== undefined) rest.atime = change.atime
    if (change.mtime !== undefined) rest.mtime = change.mtime
    if (Object.keys(rest).length === 0) return attr
    // a chmod of an inode with an access ACL rewrites the ACL in meta, and the
    // kernel asks for it again right after: it must be there, so no going ahead
    const aclChmod = rest.mode !== undefined && ((attr.acl ?? 0) & HAS_ACCESS_ACL) !== 0
    // a directory's: answered at once, applied by meta in order (tar's chmod,
    // chown and utimens of each directory it extracted: three trips each)
    if (type === S_IFDIR && this.pipeline && !aclChmod) return this.setattrAhead(this.pipeline, ino, attr, rest)
    const f = this.files.get(ino)
    // a file this mount created and has not committed: meta holds it empty,
    // so its chmod, chown and utimens wait for its first commit (open-file.ts)
    if (f?.fresh && !aclChmod) {
      const times = rest.atime !== undefined || rest.mtime !== undefined ? dropUndefined({ atime: rest.atime, mtime: rest.mtime }) : undefined
      if (await f.defer({ mode: rest.mode, uid: rest.uid, gid: rest.gid, times })) return f.view()
    }
    // pending data would be committed later with the write time: commit it
    // first, and times alone (tar's futimens after its writes) in that same commit
    if (f && (rest.mtime !== undefined || rest.atime !== undefined)) {
      const onlyTimes = rest.mode === undefined && rest.uid === undefined && rest.gid === undefined
      if ((await this.commitFile(f, { times: onlyTimes ? { atime: rest.atime, mtime: rest.mtime } : undefined })) && onlyTimes) return f.view()
    }
    const reply = await this.meta.call('setattr', { ino, ...rest })
    this.cache.setAttr(reply.attr)
    if (f) f.attr = { ...reply.attr, size: f.attr.size }
    return this.overlay(reply.attr)
  }

  // ---- directories ----

  /**
   * Entries of directory `ino` from position `offset` on (the kernel hands
   * back the position after the last entry it kept), fetched from meta a page
   * at a time, never the whole listing. Position i is entry i of ".", "..",
   * then meta's order; a seek to a position no listing in progress is at
   * starts the listing over. At least `min` entries are returned unless the
   * directory ends first.
   */
  async readdir(ino: number, offset: number, min: number): Promise<Array<{ name: string; attr: Attr; next: number }>> {
    const d = this.dirs.take(ino, offset)
    const entries = await this.fillListing(d, offset, min)
    this.dirs.put(d, entries.length === 0)
    return entries
  }

  private async fillListing(d: DirStream, offset: number, min: number): Promise<Array<{ name: string; attr: Attr; next: number }>> {
    // drop what the kernel already kept
    const kept = Math.min(offset - d.pos, d.buffered.length)
    d.buffered.splice(0, kept)
    d.pos += kept
    if (d.pos === 0 && d.buffered.length === 0 && !d.done && d.cursor === null) {
      const self = await this.getattr(d.ino)
      const parent = d.ino === ROOT_INO ? self : await this.getattr(this.parentOf(d.ino))
      d.buffered.push({ name: '.', attr: self }, { name: '..', attr: parent })
      // a complete directory is listed from the cache (kept exact by
      // invalidations, like lookups): no round trip per directory for
      // find, ls -R, cp -r or rm -rf of a tree this mount made or read
      const cached = this.cache.listing(d.ino)
      if (cached) {
        for (const e of cached) d.buffered.push({ name: e.name, attr: this.overlay(e.attr) })
        d.done = true
      }
    }
    while (d.pos < offset || (d.buffered.length < min && !d.done)) {
      if (d.buffered.length === 0 && d.done) break
      if (!d.done && d.buffered.length < Math.max(min, offset - d.pos)) {
        const epoch = this.foreign + this.changes
        if (d.cursor === null) d.epoch = epoch
        const page: { entries: DirEntry[]; next: string | null } = await this.meta.call('readdir', { ino: d.ino, cursor: d.cursor })
        // a page read before a change that was acknowledged meanwhile may show
        // a removed name: the kernel gets it (as from any listing), the cache not
        const fresh = this.foreign + this.changes === epoch
        for (const e of page.entries) {
          if (fresh) this.cache.setEntry(d.ino, e.name, e.attr)
          this.noteParent(d.ino, e.name, e.attr)
          d.buffered.push({ name: e.name, attr: this.overlay(e.attr) })
        }
        d.cursor = page.next
        d.done = page.next === null
        // the whole listing, read while nothing changed: names not in it do not exist
        if (d.done && d.epoch === this.foreign + this.changes) this.cache.setComplete(d.ino)
      }
      if (d.pos < offset) {
        const skip = Math.min(offset - d.pos, d.buffered.length)
        d.buffered.splice(0, skip)
        d.pos += skip
      } else break
    }
    return d.buffered.map((e, i) => ({ name: e.name, attr: e.attr, next: d.pos + i + 1 }))
  }

  /**
   * The parent of a directory, for its ".." entry: meta has no ".." entries,
   * so the client remembers where it found each directory (glibc drops
   * entries with d_ino 0, so an unknown one answers with the directory itself).
   */
  private parentOf(ino: number): number {
    return this.parents.get(ino) ?? ino
  }

  private noteParent(parent: number, name: string, attr: Attr): void {
    if ((attr.mode & S_IFMT) !== S_IFDIR || name === '.' || name === '..') return
    if (this.parents.size >= PARENTS_MAX) this.parents.delete(this.parents.keys().next().value as number)
    this.parents.set(attr.ino, parent)
  }

  async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<Attr> {
    const ahead = this.newAhead(parent, name)
    if (ahead) return this.makeAhead(ahead.pipeline, 'mkdir', parent, name, mode, caller, ahead.ino, ahead.dir)
    // setgid-directory inheritance is meta's: it sees the parent as it is in the transaction
    const since = this.foreign
    const { attr, dirs } = await this.mutate([parent], () => this.meta.call('mkdir', { parent, name, mode: S_IFDIR | (mode & PERM_BITS), uid: caller.uid, gid: caller.gid, ...umaskOf(caller) }))
    this.remember(parent, name, attr, dirs, since)
    // new and empty: a lookup in it needs no round trip until someone else changes it
    if (this.foreign === since) this.cache.setComplete(attr.ino)
    return attr
  }

  /**
   * What a mkdir or create needs to go ahead, when its outcome is known: the
   * parent's listing is whole here and lacks the name (no EEXIST), its
   * attributes are cached (setgid inheritance), the name is one meta takes,
   * the kernel has checked write permission (default_permissions), the
   * directory has no default ACL (the new inode's mode and ACL would come
   * from it: meta decides), and a reserved inode number is at hand
   * (`InoPool.sent` must follow).
   */
  private newAhead(parent: number, name: string): { pipeline: AheadPipeline; ino: number; dir: Attr } | null {
    const dir = this.cache.attr(parent)
    if (!this.pipeline || !this.inoPool || !dir || (dir.acl ?? 0) & HAS_DEFAULT_ACL || !this.cache.absentFromListing(parent, name) || !validName(name)) return null
    const ino = this.inoPool.take()
    return ino === undefined ? null : { pipeline: this.pipeline, ino, dir }
  }

  /**
   * A mkdir or a create answered before meta applies it
   * (client/ahead-pipeline.ts), with an inode number meta reserved for this
   * session: the new inode is cached as meta will make it (a directory empty
   * and complete; setgid inherited), the parent as predicted (mtime and ctime
   * this mount's clock, a subdirectory's link) until the last change in
   * flight in it settles, then meta's.
   */
  private async makeAhead(pipeline: AheadPipeline, op: 'mkdir' | 'mknod', parent: number, name: string, mode: number, caller: Caller, ino: number, dir: Attr): Promise<Attr> {
    const since = this.foreign
    const now = nowTimespec()
    const type = op === 'mkdir' ? S_IFDIR : S_IFREG
    const own = inheritedOwnership(dir, caller.gid, type | (mode & PERM_BITS))
    const attr: Attr = {
      ino,
      // no default ACL above (newAhead): the umask applies, as meta will apply it
      mode: aclCreate(own.mode, caller.umask ?? 0, null, op === 'mkdir').mode,
      nlink: op === 'mkdir' ? 2 : 1,
      uid: caller.uid,
      gid: own.gid,
      size: 0,
      rdev: 0,
      atime: now,
      mtime: now,
      ctime: now,
      gen: 0,
    }
    this.changes++
    this.cache.setEntry(parent, name, attr)
    if (op === 'mkdir') {
      this.cache.setComplete(ino)
      this.noteParent(parent, name, attr)
    }
    this.cache.setAttr({ ...dir, mtime: now, ctime: now, nlink: dir.nlink + (op === 'mkdir' ? 1 : 0) })
    this.aheadIn.set(parent, (this.aheadIn.get(parent) ?? 0) + 1)
    const item = { op, parent, name, mode: type | (mode & PERM_BITS), uid: caller.uid, gid: caller.gid, ...umaskOf(caller), ino, session: this.opts.session }
    const queued = pipeline.send(item, (outcome) => {
      // meta's times replace the prediction, here and in the kernel; not
      // while changes made in the new directory are in flight: this answer
      // predates them (nlink, mtime), and the last of them brings meta's
      // attributes after all of them (aheadSettled)
      if (outcome.ok && outcome.reply.attr && this.foreign === since && this.cache.attr(ino) && !this.aheadIn.has(ino)) {
        this.cache.setAttr(outcome.reply.attr)
        this.kernel?.invalidateInode(ino)
      }
      if (!outcome.ok) {
        this.cache.dropDir(ino)
        this.cache.dropAttr(ino)
        if ((outcome.error as BerthError).code === 'EINVAL') this.inoPool?.reset()
      }
      this.aheadSettled(op, parent, name, outcome, since)
    }, { hold: op === 'mknod' }) // a create waits for its close's commit: one request for both
    // a new reservation must come after every change that used the last one
    await queued.finally(() => this.inoPool?.sent())
    return attr
  }

  /**
   * chmod, chown or utimens of a directory answered before meta applies it
   * (docs/semantics.md#setattr). Meta applies what it is sent and checks
   * nothing the kernel has not (default_permissions), so the outcome is
   * known: the cached attributes with the change, ctime now. It can only
   * fail if the directory was removed meanwhile (ENOENT: as if the change
   * came first) or meta failed (logged, EIO at the directory's fsync). The
   * prediction stands until the last change in flight on it settles.
   */
  private async setattrAhead(pipeline: AheadPipeline, ino: number, attr: Attr, rest: Omit<SetattrChange, 'size'>): Promise<Attr> {
    const since = this.foreign
    const now = nowTimespec()
    const time = (t: SetattrChange['atime'], old: Timespec): Timespec => (t === undefined ? old : t === 'now' ? now : t)
    const predicted: Attr = {
      ...attr,
      mode: rest.mode ?? attr.mode,
      uid: rest.uid ?? attr.uid,
      gid: rest.gid ?? attr.gid,
      atime: time(rest.atime, attr.atime),
      mtime: time(rest.mtime, attr.mtime),
      ctime: now,
    }
    this.changes++ // a listing page read meanwhile carries this directory's old attributes
    this.cache.setAttr(predicted)
    this.aheadIn.set(ino, (this.aheadIn.get(ino) ?? 0) + 1)
    // held: tar x sets a directory's owner, mode and times once it is
    // extracted; they wait for the next file's create and commit and go with them
    await pipeline.send({ op: 'setattr', ino, ...rest }, (outcome) => this.aheadSettled('setattr', ino, '', outcome, since), { hold: true })
    return predicted
  }

  /** With `session`, meta also registers the new file as open by this mount (create). */
  async mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller, session?: string): Promise<Attr> {
    const type = mode & S_IFMT || S_IFREG
    const since = this.foreign
    const { attr, dirs } = await this.mutate([parent], () =>
      this.meta.call('mknod', { parent, name, mode: type | (mode & PERM_BITS), rdev, uid: caller.uid, gid: caller.gid, ...umaskOf(caller), session }),
    )
    this.remember(parent, name, attr, dirs, since)
    return attr
  }

  async rmdir(parent: number, name: string): Promise<void> {
    const ino = this.cache.entry(parent, name)
    const attr = ino === undefined ? undefined : this.cache.attr(ino)
    const dir = this.cache.attr(parent)
    // ahead when the directory is known empty: complete in the cache with no
    // entry left (the last ones may be unlinks still in flight, which meta
    // applies first); any other mount's create in it would have dropped that
    if (this.pipeline && attr && dir && isDir(attr.mode) && this.cache.empty(attr.ino)) {
      return this.removeAhead(this.pipeline, 'rmdir', parent, name, attr.ino, dir)
    }
    const since = this.foreign
    const { dirs } = await this.mutate([parent], () => this.meta.call('rmdir', { parent, name }))
    this.changes++
    this.cache.dropEntry(parent, name)
    this.dirsChanged(dirs, since, [parent])
    if (ino !== undefined) {
      this.cache.dropAttr(ino)
      this.cache.dropDir(ino)
    }
  }

  async unlink(parent: number, name: string): Promise<void> {
    const ino = this.cache.entry(parent, name)
    const attr = ino === undefined ? undefined : this.cache.attr(ino)
    const dir = this.cache.attr(parent)
    // ahead only when the outcome is known: the name and its inode are in
    // the cache (kept exact by invalidations), it is no directory (EISDIR),
    // not open here (meta must hold it before its last link goes), and the
    // kernel has checked write permission and the sticky bit itself
    // (default_permissions)
    if (this.pipeline && attr && dir && !isDir(attr.mode) && !this.files.has(attr.ino)) return this.removeAhead(this.pipeline, 'unlink', parent, name, attr.ino, dir)
    await this.sendHolds()
    const since = this.foreign
    const { dirs } = await this.mutate([parent], () => this.meta.call('unlink', { parent, name }))
    this.changes++
    this.cache.dropEntry(parent, name)
    this.dirsChanged(dirs, since, [parent])
    if (ino !== undefined) this.cache.dropAttr(ino)
  }

  /**
   * An unlink or rmdir answered before meta applies it
   * (client/ahead-pipeline.ts): this mount's caches change now as they
   * would at meta's reply; the directory's mtime and ctime are this mount's
   * clock (and an rmdir's nlink one less) until the last removal in flight
   * in it settles, then meta's.
   */
  private async removeAhead(pipeline: AheadPipeline, op: 'unlink' | 'rmdir', parent: number, name: string, ino: number, dir: Attr): Promise<void> {
    const since = this.foreign
    this.changes++
    this.cache.dropEntry(parent, name)
    this.cache.dropAttr(ino)
    if (op === 'rmdir') {
      this.cache.dropDir(ino)
      this.parents.delete(ino)
    }
    const now = nowTimespec()
    this.cache.setAttr({ ...dir, mtime: now, ctime: now, nlink: op === 'rmdir' ? dir.nlink - 1 : dir.nlink })
    this.aheadIn.set(parent, (this.aheadIn.get(parent) ?? 0) + 1)
    await pipeline.send({ op, parent, name }, (outcome) => this.aheadSettled(op, parent, name, outcome, since))
  }

  private aheadSettled(op: AheadOp, parent: number, name: string, outcome: AheadOutcome, since: number): void {
    const left = (this.aheadIn.get(parent) ?? 1) - 1
    if (left > 0) this.aheadIn.set(parent, left)
    else this.aheadIn.delete(parent)
    // ENOENT of a removal: the name was gone already (another client removed
    // it, or a retry found its first attempt applied): the state is the one reported
    // (and of a setattr: the directory was removed since, as if after the change)
    const failed = !outcome.ok && (op === 'mkdir' || op === 'mknod' || (outcome.error as BerthError).code !== 'ENOENT')
    if (failed) {
      const err = outcome.error as BerthError
      const after = op === 'mkdir' ? 'the directory may not exist' : op === 'mknod' ? 'the file may not exist, and its close fails' : op === 'setattr' ? 'its attributes may be as before' : 'the name may be back'
      const what = op === 'setattr' ? `setattr of directory ${parent}` : `${op} of "${name}" in directory ${parent}`
      log.error(`${what} was answered before meta applied it, and meta then failed it (${err.code ?? 'error'}: ${err.message}); ${after}`)
      const here = op === 'setattr' ? 'setattr of this directory' : `${op} of "${name}" in this directory`
      if (!this.aheadErrors.has(parent)) this.aheadErrors.set(parent, fsError('EIO', `an earlier ${here} failed after it returned: ${err.message}`))
      this.cache.dropDir(parent)
      this.cache.dropAttr(parent)
      if (op !== 'setattr') this.kernel?.invalidateEntry(parent, name)
      this.kernel?.invalidateInode(parent)
      return
    }
    if (left > 0) return
    // the last one in flight here: meta's attributes replace the prediction
    // (a setattr answers with the directory's own, the others with the parents')
    const reply = outcome.ok ? outcome.reply : undefined
    const real = reply?.dirs?.find((d) => d.ino === parent) ?? (reply?.attr?.ino === parent ? reply.attr : undefined)
    // (not for a directory removed meanwhile: its attributes are gone for good)
    if (real && this.foreign === since && this.cache.attr(parent)) this.cache.setAttr(real)
    else this.cache.dropAttr(parent)
    this.kernel?.invalidateInode(parent)
  }

  /**
   * fsync of a directory: every unlink this mount answered ahead has reached
   * meta; reports (once) one of them in this directory that meta failed.
   */
  async fsyncdir(ino: number): Promise<void> {
    await this.pipeline?.settled()
    const err = this.aheadErrors.get(ino)
    if (err) {
      this.aheadErrors.delete(ino)
      throw err
    }
  }

  /** Resolves once every unlink answered ahead has settled (unmount). */
  async settleUnlinks(): Promise<void> {
    await this.pipeline?.settled()
  }

  /** flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2), as renameat2; meta implements both. */
  async rename(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    const moved = this.cache.entry(parent, name)
    const replaced = this.cache.entry(newParent, newName)
    await this.sendHolds()
    const since = this.foreign
    const { dirs } = await this.mutate([parent, newParent], () => this.meta.call('rename', { parent, name, newParent, newName, flags }))
    this.changes++
    // the moved name is not re-entered here: both listings are forgotten
    // (completeness included), the next lookups ask meta
    this.cache.dropDir(parent)
    this.cache.dropDir(newParent)
    for (const ino of [moved, replaced]) if (ino !== undefined) this.cache.dropAttr(ino)
    this.dirsChanged(dirs, since, [parent, newParent])
    // a moved directory's ".." changed; its entries did not
    if (moved !== undefined && this.parents.has(moved)) this.parents.set(moved, newParent)
  }

  async link(ino: number, newParent: number, newName: string): Promise<Attr> {
    const since = this.foreign
    const { attr, dirs } = await this.mutate([newParent], () => this.meta.call('link', { ino, newParent, newName }))
    this.remember(newParent, newName, attr, dirs, since)
    return this.overlay(attr)
  }

  async symlink(target: string, parent: number, name: string, caller: Caller): Promise<Attr> {
    const since = this.foreign
    const { attr, dirs } = await this.mutate([parent], () => this.meta.call('symlink', { parent, name, target, uid: caller.uid, gid: caller.gid }))
    this.remember(parent, name, attr, dirs, since)
    return attr
  }

  async readlink(ino: number): Promise<string> {
    const attr = await this.getattr(ino)
    if ((attr.mode & S_IFMT) !== S_IFLNK) throw fsError('EINVAL', `inode ${ino} is not a symlink`)
    return (await this.meta.call('readlink', { ino })).target
  }

  async statfs(): Promise<StatfsReply> {
    return this.meta.call('statfs', {})
  }

  // ---- xattrs ----

  async getxattr(ino: number, name: string): Promise<Buffer> {
    if (isAclName(name) && this.kernel?.aclsOn()) {
      // the kernel asks for the access ACL in permission checks: "none" comes from the cached attributes
      const attr = this.cache.attr(ino)
      if (attr && !((attr.acl ?? 0) & aclBit(name))) throw fsError('ENODATA', `no ${name}`)
    } else if (LOCAL_XATTR_PREFIXES.some((p) => name.startsWith(p))) {
      throw fsError(name.startsWith('system.posix_acl') ? 'ENOTSUP' : 'ENODATA', `${name}: not stored by berth`)
    }
    const { value } = await this.meta.call('getxattr', { ino, name })
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  }

  async setxattr(ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    const acl = isAclName(name) && this.kernel?.aclsOn() === true
    if (!acl && !STORED_XATTR_PREFIXES.some((p) => name.startsWith(p))) throw fsError('ENOTSUP', `${name}: berth stores user.* and trusted.* xattrs only`)
    await this.meta.call('setxattr', { ino, name, value: new Uint8Array(value), flags })
    // an ACL changes the mode and the inode's `acl` bits: the next getattr asks meta
    // (the kernel drops its own attributes and ACLs after a set_acl)
    if (acl) this.cache.dropAttr(ino)
  }

  async listxattr(ino: number): Promise<string[]> {
    const { names } = await this.meta.call('listxattr', { ino })
    return this.kernel?.aclsOn() ? names : names.filter((n) => !isAclName(n))
  }

  async removexattr(ino: number, name: string): Promise<void> {
    const acl = isAclName(name) && this.kernel?.aclsOn() === true
    if (!acl && LOCAL_XATTR_PREFIXES.some((p) => name.startsWith(p))) throw fsError('ENODATA', `${name}: not stored by berth`)
    await this.meta.call('removexattr', { ino, name })
    if (acl) this.cache.dropAttr(ino)
  }

  // ---- files ----

  async create(parent: number, name: string, mode: number, flags: number, caller: Caller): Promise<{ fh: number; attr: Attr }> {
    // ahead as a mkdir goes: its close then rides behind it (a small file's
    // commit joins the queue), one trip for both; otherwise one meta
    // transaction creates and opens. A new file has no chunks to load.
    const ahead = this.newAhead(parent, name)
    const attr = ahead
      ? await this.makeAhead(ahead.pipeline, 'mknod', parent, name, mode, caller, ahead.ino, ahead.dir)
      : await this.mknod(parent, name, (mode & PERM_BITS) | S_IFREG, 0, caller, this.opts.session)
    const f = new OpenFile(attr, this.wb)
    f.fresh = true
    // a new inode is empty at its first gen in meta: the empty map is exact
    f.trustMap(attr.gen)
    this.files.set(attr.ino, f)
    this.noteContent(attr) // new: the kernel holds no page of it
    return { fh: this.addHandle(f, flags), attr }
  }

  /**
   * Opens an inode. `keepCache`: the content is what this mount last had (same
   * gen and size), so the kernel may keep its page cache (FOPEN_KEEP_CACHE).
   * Every handle's close sends a FLUSH, read-only ones too: it carries the
   * closing process's lock owner, whose POSIX locks the close drops
   * (client/locks.ts), so FOPEN_NOFLUSH is not used.
   */
  async open(ino: number, flags: number): Promise<{ fh: number; keepCache: boolean }> {
    const attr = await this.getattr(ino)
    const type = attr.mode & S_IFMT
    if (type === S_IFDIR && (flags & O_ACCMODE) !== 0) throw fsError('EISDIR', `inode ${ino} is a directory`)
    return this.openIno(attr, flags)
  }

  /**
   * The first handle on an inode registers it with meta (`open`: keeps an
   * unlinked file alive, returns the chunk map); later ones only revalidate,
   * so there is exactly one meta `release` per inode per session.
   */
  private async openIno(attr: Attr, flags: number): Promise<{ fh: number; keepCache: boolean }> {
    let f = this.files.get(attr.ino)
    let keepCache = false
    if (!f) {
      const readOnly = (flags & O_ACCMODE) === 0
      const named = this.opening.begin(attr.ino)
      let reply: OpenReply
      let chunks: ChunkRef[]
      let exact: boolean
      try {
        const kept = readOnly ? await this.keptOpen(attr.ino) : undefined
        reply = kept ?? (await this.openReply(attr.ino, readOnly))
        chunks = await this.loadChunks(attr.ino, reply.chunks, reply.more)
      } finally {
        exact = !named()
      }
      f = this.files.get(attr.ino)
      if (!f) {
        f = new OpenFile(reply.attr, this.wb)
        f.refresh(reply.attr, chunks)
        if (exact) f.trustMap(reply.attr.gen)
        this.files.set(attr.ino, f)
        if (reply.late) this.hold(attr.ino)
      }
      const seen = this.contentSeen.get(attr.ino)
      keepCache = seen !== undefined && seen.gen === reply.attr.gen && seen.size === reply.attr.size
      this.cache.setAttr(reply.attr)
    } else if (!f.isDirty) {
      // close-to-open: another client may have committed since our last open.
      // The file counts this opener meanwhile: were the last other handle
      // closed during the wait, the file would be dropped and this handle
      // would land on an orphan no later open sees (readers saw zeros).
      keepCache = !(await this.revalidateOpen(f, true))
    } else keepCache = true
    this.noteContent(f.attr)
    return { fh: this.addHandle(f, flags), keepCache }
  }

  /**
   * Fetches an open file's attributes and, if its content changed since this
   * mount loaded it, its chunk map; true when it changed (the kernel's pages
   * must go). `known`: meta's gen and size already in hand (a lock reply),
   * which saves the getattr when nothing changed. The file counts one more
   * opener meanwhile: were its last handle closed during the wait, the file
   * would be dropped and an opener would land on an orphan no later open
   * sees (readers saw zeros). `opening`: the caller adds a handle next, so
   * the count goes back without dropping the file.
   */
  private async revalidateOpen(f: OpenFile, opening: boolean, known?: { gen: number; size: number }): Promise<boolean> {
    const ino = f.attr.ino
    if (known && known.gen === f.attr.gen && known.size === f.attr.size) return false
    let changed = false
    f.handles++
    try {
      await f.revalidate(async () => {
        const { attr: fresh } = await this.meta.call('getattr', { ino })
        if (fresh.gen === f.attr.gen && fresh.size === f.attr.size) return undefined
        changed = true
        const { chunks, more } = await this.meta.call('chunks', { ino, from: 0 })
        return { attr: fresh, chunks: await this.loadChunks(ino, chunks, more) }
      })
    } catch (err) {
      this.unref(f)
      throw err
    }
    if (opening) f.handles--
    else this.unref(f)
    return changed
  }

  /**
   * A lock was granted on `ino` (client/locks.ts): what the previous holder
   * committed before letting go is read through handles opened before it, as
   * NFS revalidates a file at lock time (docs/semantics.md#locks). True when
   * the content changed, so the kernel's pages and attributes must go before
   * the lock is answered. A file with unwritten data here is left as it is.
   */
  async lockGranted(ino: number, meta: { gen: number; size: number }): Promise<boolean> {
    const f = this.files.get(ino)
    if (!f || f.isDirty || f.hasPending) return false
    const changed = await this.revalidateOpen(f, false, meta)
    if (changed) this.cache.setAttr(f.attr)
    return changed
  }

  /**
   * Attributes and first chunk page of an inode being opened, registering the
   * open with meta. A read-only open of a linked file reads them from meta's
   * read path and its registration goes with the next release batch (`late`):
   * no write transaction per `cat`, and a file opened and closed within the
   * batch delay is never registered at all (docs/semantics.md#writes).
   */
  private async openReply(ino: number, readOnly: boolean): Promise<OpenReply> {
    if (readOnly) {
      const r = await this.meta.call('chunks', { ino, from: 0, withAttr: true })
      // an unlinked inode is alive only while registered: register it now
      if (r.attr && r.attr.nlink > 0) return { attr: r.attr, chunks: r.chunks, more: r.more, late: true }
    }
    return { ...(await this.meta.call('open', { ino, session: this.opts.session })), late: false }
  }

  /**
   * A read-only open answered from the map this mount kept when the file was
   * last closed here (client/closed-files.ts): used when meta's current gen
   * is still the map's. That gen comes from the attribute cache after the
   * barrier (every invalidation of a change acknowledged before this open
   * began has been applied, so the cache is current: no meta request at
   * all), or, when the barrier cannot vouch (a NATS cluster, a reconnect),
   * from a `getattr`. Registered with meta late, as a read-only open from
   * meta's read path is (openReply). Undefined: fetch the map from meta.
   */
  private async keptOpen(ino: number): Promise<OpenReply | undefined> {
    if (!this.closed.get(ino)) return undefined
    let attr: Attr | undefined
    if (this.opts.barrier && (await this.opts.barrier())) attr = this.cache.attr(ino)
    else attr = (await this.meta.call('getattr', { ino })).attr
    const kept = this.closed.get(ino)
    if (!kept || !attr || attr.gen !== kept.gen || attr.size !== kept.size || attr.nlink === 0) {
      this.closed.misses++
      return undefined
    }
    this.closed.hits++
    return { attr, chunks: kept.chunks, more: false, late: true }
  }

  private hold(ino: number): void {
    this.holds.set(ino, (this.holds.get(ino) ?? 0) + 1)
    this.releaseTimer ??= setTimeout(() => void this.sendBatch(), RELEASE_DELAY_MS)
  }

  /**
   * Before this mount removes a name, its queued registrations go: a file it
   * opened read-only a moment ago must be held by meta before its last link
   * goes, or meta would free it under the open handle.
   */
  private async sendHolds(): Promise<void> {
    if (this.holds.size) await this.sendReleases()
  }

  /**
   * Remembers the content the kernel's page cache is filled from after an
   * open. A later change through this mount changes gen too, so the next open
   * drops the cache: conservative, never stale.
   */
  /** The inode `name` in `parent` names and its link count, as this mount's cache holds them (undefined: not cached). */
  cachedChild(parent: number, name: string): { ino: number; nlink: number } | undefined {
    const ino = this.cache.entry(parent, name)
    const attr = ino === undefined ? undefined : this.cache.attr(ino)
    return attr ? { ino: attr.ino, nlink: attr.nlink } : undefined
  }

  /**
   * What this mount holds of an open file's content (client/passthrough.ts):
   * the generation and size it was last committed or fetched at, and whether
   * it has changes not yet committed. Undefined for a file not open here.
   */
  contentOf(ino: number): { gen: number; size: number; dirty: boolean } | undefined {
    const f = this.files.get(ino)
    if (!f) return undefined
    return { gen: f.attr.gen, size: f.size, dirty: f.isDirty || f.hasPending }
  }

  /**
   * Asks meta whether an open file changed and takes the new content's map if
   * so (client/passthrough.ts); true when it changed. The caller must drop the
   * kernel's attributes then: the next open finds nothing changed and keeps them.
   */
  async refreshOpen(ino: number): Promise<boolean> {
    const f = this.files.get(ino)
    return f !== undefined && !f.isDirty && (await this.revalidateOpen(f, false))
  }

  /** The handle's reads so far are one run from offset 0 (client/read-pattern.ts): it reads the file whole. */
  readingWhole(fh: number): boolean {
    return this.handles.get(fh)?.reads.wholeFile ?? false
  }

  /** Reads an open file's bytes as this mount sees them now, by inode (client/passthrough.ts). */
  async readOpen(ino: number, target: Buffer, pos: number, len: number): Promise<number> {
    const f = this.files.get(ino)
    if (!f) throw fsError('EBADF', `inode ${ino} is not open`)
    return f.read(target, pos, len, true)
  }

  private noteContent(attr: Attr): void {
    if (this.contentSeen.size >= CONTENT_SEEN_MAX) this.contentSeen.delete(this.contentSeen.keys().next().value as number)
    this.contentSeen.set(attr.ino, { gen: attr.gen, size: attr.size })
  }

  private addHandle(f: OpenFile, flags: number): number {
    f.handles++
    const fh = this.allocFh()
    this.handles.set(fh, { file: f, flags, reads: new ReadPattern(), wrote: false })
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
    // recorded before waiting: the kernel sends several reads at once
    const stream = h.reads.next(pos, len)
    const n = await this.rereadIfReplaced(h.file, () => h.file.read(target, pos, len, !stream))
    if (stream) h.file.readahead(pos + n, this.opts.readaheadChunks)
    return n
  }

  /**
   * read() for a reply written out at once (the FUSE adapter): the bytes, a
   * view into a cached block where one holds them all, else `scratch()`
   * filled (OpenFile.readOut). The result is only valid until the caller
   * next yields; hand it to readReplied() once written out, so the block's
   * buffer can be reused.
   */
  async readOut(fh: number, len: number, pos: number, scratch: () => Buffer): Promise<Buffer> {
    const h = this.handle(fh)
    const stream = h.reads.next(pos, len)
    const out = await this.rereadIfReplaced(h.file, () => h.file.readOut(pos, len, !stream, scratch))
    if (stream) h.file.readahead(pos + out.length, this.opts.readaheadChunks)
    return out
  }

  /** A readOut() result was written out: a cached block it showed may be reused. */
  readReplied(out: Buffer): void {
    this.blocks.release(out)
  }

  /**
   * A read of a file another mount rewrote since this mount opened it can
   * find the blocks of its map deleted (meta's GC frees a block its grace
   * after it lost its last reference): EIO. Then, when meta's content
   * generation or size moved and nothing of this mount is unwritten, the map
   * is fetched again, the kernel's pages of the old content are dropped, and
   * the read is tried once more on what the file holds now, as a local file
   * system shows a rewrite to a descriptor opened before it.
   */
  private async rereadIfReplaced<T>(f: OpenFile, read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (err) {
      if (codeOf(err) !== 'EIO' || f.isDirty || f.hasPending) throw err
      const changed = await this.revalidateOpen(f, false).catch(() => false)
      if (!changed) throw err
      log.info(`inode ${f.attr.ino}: a read of content another mount replaced failed (${(err as Error).message}); read again from the new content`)
      this.cache.setAttr(f.attr)
      // not awaited: the kernel may hold this read's pages locked until it is answered
      this.kernel?.invalidateInode(f.attr.ino)
      return read()
    }
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

  /**
   * fallocate(2) (docs/semantics.md#writes). berth reserves no space (blocks
   * exist only once written), so: mode 0 grows the size like ftruncate and a
   * later write may still get ENOSPC; KEEP_SIZE alone changes nothing;
   * PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE (which grows the size first unless
   * KEEP_SIZE) make the range inside the file read as zeros (zeroRange).
   * Other modes are refused with ENOTSUP. The kernel holds the inode's lock
   * around a fallocate that changes size or contents, as around a write, so
   * no write of this mount runs between the size check and the change.
   */
  async fallocate(fh: number, mode: number, offset: number, length: number): Promise<void> {
    const h = this.handle(fh)
    if ((h.flags & O_ACCMODE) === 0) throw fsError('EBADF', 'handle is read-only')
    if ((mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) !== 0) throw fsError('ENOTSUP', `fallocate mode 0x${mode.toString(16)} is not supported`)
    // the kernel refuses these two itself; checked again for callers that are not the kernel
    if (mode & FALLOC_FL_PUNCH_HOLE && mode & FALLOC_FL_ZERO_RANGE) throw fsError('ENOTSUP', 'PUNCH_HOLE and ZERO_RANGE together')
    if (mode & FALLOC_FL_PUNCH_HOLE && !(mode & FALLOC_FL_KEEP_SIZE)) throw fsError('ENOTSUP', 'PUNCH_HOLE needs KEEP_SIZE')
    const end = offset + length
    if (end > MAX_FILE_SIZE) throw fsError('EFBIG', `fallocate to ${end} is past the largest file (${MAX_FILE_SIZE} bytes)`)
    const grow = !(mode & FALLOC_FL_KEEP_SIZE) && end > h.file.size
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
      // what the file holds now is zeroed; past its end a grow leaves a hole, zeros already
      await this.zeroRange(h, offset, end)
      if (grow) await this.setattr(h.file.attr.ino, { size: end }, fh)
      return
    }
    // nothing is reserved, but a range whose holes need more than the cluster has free fails
    // at once with ENOSPC, as on a local disk, not at some later write
    const holes = length - h.file.dataIn(offset, end)
    if (holes > 0) {
      const st = await this.statfs()
      const free = st.bavail * st.bsize
      if (holes > free) throw fsError('ENOSPC', `fallocate of ${length} bytes: ${holes} of them are holes, and the cluster has ${free} bytes free`)
    }
    if (grow) await this.setattr(h.file.attr.ino, { size: end }, fh)
  }

  /**
   * [offset, end) of the file (cut at its size) reads as zeros after this:
   * every whole chunk of it (the last one too when the range runs to the end
   * of the file) becomes a hole, so st_blocks and the cluster's used space
   * drop, and the bytes around them are written as zeros.
   */
  private async zeroRange(h: Handle, offset: number, end: number): Promise<void> {
    const f = h.file
    const stop = Math.min(end, f.size)
    if (stop <= offset) return
    h.wrote = true
    const cs = f.chunkSize
    const first = Math.ceil(offset / cs)
    const past = stop === f.size ? Math.ceil(stop / cs) : Math.floor(stop / cs)
    let rest = offset
    if (past > first) {
      await this.writeZeros(f, offset, first * cs)
      const punched = await f.locked(async () => {
        const before = f.attr.gen
        if (await f.flushHeld(this.meta, this.opts.session)) this.afterCommit(f, before)
        return f.punchHeld(this.meta, this.opts.session, first, past - first)
      })
      this.afterCommit(f)
      rest = punched ? Math.min(past * cs, stop) : first * cs
    }
    await this.writeZeros(f, rest, stop)
  }

  /**
   * lseek(2) SEEK_DATA (3) and SEEK_HOLE (4), so cp, tar and backup tools
   * skip holes instead of reading them (docs/semantics.md). By chunk, from
   * this mount's map of the file: a hole is a chunk with no block and no
   * bytes here (the end of the file is a hole too). Never a hole where data
   * may be: while any handle of this mount may write the file (its bytes, or
   * an mmap's pages the kernel has not sent yet, may lie anywhere) the whole
   * file is data.
   */
  lseek(fh: number, offset: number, whence: number): number {
    const f = this.handle(fh).file
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw fsError('EINVAL', `lseek whence ${whence}: only SEEK_DATA and SEEK_HOLE reach the file system`)
    if (offset < 0 || offset >= f.size) throw fsError('ENXIO', `lseek to ${offset}: at or past the end of the file (${f.size} bytes)`)
    let writable = f.isDirty
    for (const h of this.handles.values()) if (h.file === f && (h.flags & O_ACCMODE) !== 0) writable = true
    if (writable) return whence === SEEK_DATA ? offset : f.size
    const found = f.seek(offset, whence === SEEK_HOLE)
    if (found === null) throw fsError('ENXIO', `lseek SEEK_DATA from ${offset}: only holes up to the end of the file`)
    return found
  }

  /** Zeros over [from, to) of `f`, a piece at a time. */
  private async writeZeros(f: OpenFile, from: number, to: number): Promise<void> {
    for (let pos = from; pos < to; pos += ZEROS.length) await f.write(ZEROS.subarray(0, Math.min(ZEROS.length, to - pos)), pos)
  }

  /**
   * copy_file_range(2): whole chunks at matching alignment are cloned by meta
   * (the copy shares blocks), the rest is read and written here
   * (client/copy-range.ts). Returns the bytes copied; fewer than asked is
   * normal (the caller loops). The kernel checked the handles' modes, flags
   * and same-file overlap before asking; they are checked again because its
   * view of the size may be older than this mount's.
   */
  async copyFileRange(fhIn: number, offIn: number, fhOut: number, offOut: number, len: number, flags: number): Promise<number> {
    const hIn = this.handle(fhIn)
    const hOut = this.handle(fhOut)
    if (flags !== 0) throw fsError('EINVAL', `copy_file_range flags ${flags}`)
    if ((hIn.flags & O_ACCMODE) === O_WRONLY) throw fsError('EBADF', 'source handle is write-only')
    if ((hOut.flags & O_ACCMODE) === 0) throw fsError('EBADF', 'destination handle is read-only')
    if (hOut.flags & O_APPEND) throw fsError('EBADF', 'destination handle is O_APPEND')
    if (offIn < 0 || offOut < 0) throw fsError('EINVAL', 'negative offset')
    const src = hIn.file
    const dst = hOut.file
    // the destination stops at the largest file, as a write does (OpenFile.write)
    if (len > 0 && offOut >= MAX_FILE_SIZE) throw fsError('EFBIG', `a copy to ${offOut} is past the largest file (${MAX_FILE_SIZE} bytes)`)
    const n = Math.min(len, Math.max(0, src.size - offIn), MAX_COPY, MAX_FILE_SIZE - offOut)
    if (n <= 0) return 0
    if (src === dst && offIn < offOut + n && offOut < offIn + n) throw fsError('EINVAL', 'overlapping ranges of one file')
    hOut.wrote = true
    return this.copier.copy(src, offIn, dst, offOut, n, (f) => this.afterCommit(f))
  }

  /** close(): commits what this handle wrote; a handle that wrote nothing does not flush. */
  async flush(fh: number): Promise<void> {
    const h = this.handle(fh)
    // deferred attribute changes of a fresh file are committed at its close too (touch)
    if (!h.wrote && !h.file.hasPending) return
    // the last handle's close may compact appended slices (client/open-file.ts)
    await this.commitFile(h.file, { closing: h.file.handles === 1 })
  }

  /** fsync commits the file whatever the handle did (fsync of a read-only fd is valid). */
  async fsync(fh: number): Promise<void> {
    const f = this.handle(fh).file
    // and what this mount removed before it (as a journaling local disk does)
    await this.pipeline?.settled()
    await this.commitFile(f)
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh, true)
    this.handles.delete(fh)
    const f = h.file
    try {
      if (this.lost.has(f.attr.ino)) throw fsError('EIO', `inode ${f.attr.ino} was freed while this mount's session had lapsed; its unsaved data is lost`)
      // the last handle also commits what is still dirty (a failed flush before)
      if (h.wrote || (f.handles === 1 && f.isDirty)) {
        await this.commitFile(f, { closing: f.handles === 1 })
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
    const lost = this.lost.delete(f.attr.ino)
    const map = this.closed.enabled && !lost ? f.exactMap() : undefined
    if (map) this.closed.set(f.attr.ino, map)
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
    // registered late and not sent yet: meta never counted it, nothing to release
    const held = this.holds.get(ino)
    if (held !== undefined) {
      if (held > 1) this.holds.set(ino, held - 1)
      else this.holds.delete(ino)
      return
    }
    this.releases.push(ino)
    if (this.releases.length >= RELEASE_BATCH) void this.sendBatch()
    else this.releaseTimer ??= setTimeout(() => void this.sendBatch(), RELEASE_DELAY_MS)
  }

  /** Sends queued releases now (also at unmount). Failures are logged: the session lease cleans up. */
  async sendReleases(): Promise<void> {
    while (this.releases.length || this.holds.size) await this.sendBatch()
  }

  /**
   * One release call with what is queued now (the timer's job). What is
   * queued while it is in flight waits for the next timer: under a stream of
   * opens and closes that is one call per RELEASE_DELAY_MS, not one per reply.
   */
  private async sendBatch(): Promise<void> {
    if (this.releaseTimer) clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
    const inos = this.releases.splice(0, RELEASE_BATCH)
    const holds: number[] = []
    for (const [ino, n] of this.holds) {
      if (holds.length > 0 && holds.length + n > RELEASE_BATCH) break
      for (let i = 0; i < n; i++) holds.push(ino)
      this.holds.delete(ino)
    }
    if (inos.length === 0 && holds.length === 0) return
    const reply = await this.meta.call('release', { session: this.opts.session, inos, holds }).catch((err: unknown) => {
      log.warn(`release of ${inos.length} and registration of ${holds.length} inode(s) failed; the session lease will restore them: ${(err as Error).message}`)
    })
    // unlinked by another client before the registration came: the handle
    // keeps what it read (inline bytes, chunk map), docs/semantics.md#writes
    if (reply?.gone?.length) log.warn(`${reply.gone.length} file(s) opened read-only were removed by another client before their open was registered`)
    if (this.releases.length || this.holds.size) this.releaseTimer ??= setTimeout(() => void this.sendBatch(), RELEASE_DELAY_MS)
  }


  /** Commits what `f` holds (OpenFile.flush), then afterCommit; true when something was committed. */
  private async commitFile(f: OpenFile, opts: { closing?: boolean; times?: CommitTimes } = {}): Promise<boolean> {
    const before = f.attr.gen
    const committed = await f.flush(this.meta, this.opts.session, opts)
    this.afterCommit(f, before)
    return committed
  }

  /**
   * `before`: the file's gen when its flush began. When this commit is the
   * only one since the content the kernel's page cache was last known to
   * hold (gen one more, nothing of another client's in between), the pages
   * the writes left are the committed content: a later open of this gen
   * keeps them (FOPEN_KEEP_CACHE), and its fstat needs no GETATTR.
   */
  private afterCommit(f: OpenFile, before?: number): void {
    this.cache.setAttr(f.attr)
    if (before !== undefined && f.attr.gen === before + 1 && this.contentSeen.get(f.attr.ino)?.gen === before) this.noteContent(f.attr)
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
