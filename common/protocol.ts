/**
 * The wire contract between berth processes: every message body on NATS, as a
 * zod schema (validated on receipt) with its TypeScript type derived from it.
 * A protocol change is an edit here; both sides import this module.
 *
 * Conventions
 * - Inode numbers are positive integers; the root directory is ino 1.
 * - Times are POSIX timespecs `[sec, nsec]`, exact to the nanosecond.
 * - A file is a list of fixed-size chunks (HelloReply.chunkSize). A chunk names one
 *   immutable block by SHA-256 (hex) and says how many of the chunk's bytes are
 *   valid (`len`); bytes past `len` inside the file read as zeros, and a chunk
 *   with `hash: null` is a hole.
 * - Every request may carry `rid`, a client-chosen request id; meta answers a
 *   repeated rid with the first answer, so clients may retry any operation.
 *   `client.n[.ack]` (n, ack base 36) is remembered durably, per client, until
 *   the client acknowledges it: every request below `ack` has had its answer
 *   (meta/requests.ts); any other rid only for a short while.
 */
import { z } from 'zod'

export const ROOT_INO = 1
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
export const DEFAULT_REPLICAS = 2
/** Upper bound for any NATS body berth sends; also nats.conf max_payload. */
export const MAX_MESSAGE_BYTES = 1024 * 1024
/** Upper bound for readdir pages and chunk-map pages. */
export const MAX_PAGE = 1000
/** Operations in one `ahead` request. */
export const MAX_AHEAD = 256
/** Inode numbers one `inos` request may reserve. */
export const MAX_RESERVED_INOS = 1024
/**
 * Chunks per clonechunks call (16 GiB at 4 MiB chunks): one transaction copies
 * at most this many chunk rows with their slices.
 */
export const MAX_CLONE_CHUNKS = 4096
/** Bytes of a namespace dump per dumpRead reply (well under MAX_MESSAGE_BYTES). */
export const DUMP_PAGE = 512 * 1024

const u32 = z.number().int().min(0).max(0xffffffff)
const ino = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)
/**
 * The largest file: 2^53 - 1 bytes (8 PiB), the integers a JavaScript number
 * holds exactly. Past it a size or offset would be rounded, so a write,
 * truncate, fallocate or copy that would go further gets EFBIG, as past a
 * local file system's largest file (docs/semantics.md#limits).
 */
export const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER
const size = z.number().int().min(0).max(MAX_FILE_SIZE)
const name = z.string().min(1).max(1024) // byte length and characters are checked by validateName
const rid = z.string().max(64).optional()
const session = z.string().min(1).max(64)
/** The kernel's 64-bit lock owner id, in hex. */
const lockOwner = z.string().regex(/^[0-9a-f]{1,16}$/)
/** The largest lock offset: a range that ends here runs "to the end of the file" (l_len 0), however far it grows. */
export const LOCK_EOF = Number.MAX_SAFE_INTEGER
/** A lock's byte offset, 0 .. LOCK_EOF. */
const lockOffset = z.number().int().min(0).max(LOCK_EOF)
const bytes = z.instanceof(Uint8Array)

export const timespec = z.tuple([z.number().int(), z.number().int().min(0).max(999_999_999)])
export type Timespec = z.infer<typeof timespec>
/** `'now'` asks meta to use its own clock (utimensat UTIME_NOW). */
const timeSet = z.union([timespec, z.literal('now')])

export const blockHash = z.string().regex(/^[0-9a-f]{64}$/)

/** Who asks: owner of new inodes; the kernel enforces mode bits (default_permissions). */
const caller = { uid: u32, gid: u32 }
/**
 * The creator's umask, for a mknod or mkdir under FUSE_CAP_DONT_MASK: meta
 * applies it unless the directory has a default ACL (common/acl.ts). Absent
 * (older mounts, mounts with `noacl`): the mode came masked by the kernel.
 */
const umask = u32.max(0o777).optional()

/**
 * Small files keep their bytes in meta instead of a block (docs/architecture.md#inline-data):
 * a chunk with `hash: null` and `data` is inline; `hash: null` without data is a hole.
 */
export const INLINE_MAX = 64 * 1024

/**
 * Appended slices (docs/data-node.md#appends-slices-and-compaction): a chunk is
 * its base block followed by at most MAX_SLICES slices, each a whole block of
 * `len` bytes placed right after the previous one. Small appends + fsync upload
 * only their new bytes as a slice; the writer compacts the chunk into one block
 * once it is full (or too fragmented, or at the last close).
 */
export const MAX_SLICES = 1023

const sums = z
  .custom<Uint8Array>((v) => v instanceof Uint8Array, 'sums must be bytes')
  .refine((b) => b.length % 4 === 0 && b.length <= 4096, 'sums: 4 bytes per 64 KiB piece, at most 1024 pieces')

/** One appended slice of a chunk (in `ChunkRef.slices`). */
export const sliceRef = z.object({
  hash: blockHash,
  len: size,
  nodes: z.array(z.string().max(64)).max(16),
  sums: sums.optional(),
})
export type SliceRef = z.infer<typeof sliceRef>

export const chunkRef = z.object({
  idx: z.number().int().min(0).max(0x7fffffff),
  hash: blockHash.nullable(),
  len: size,
  /** Node ids that hold a durable replica (filled by meta in replies). */
  nodes: z.array(z.string().max(64)).max(16),
  data: z
    .custom<Uint8Array>((v) => v instanceof Uint8Array, 'inline data must be bytes')
    .refine((b) => b.length <= INLINE_MAX, `inline data over ${INLINE_MAX} bytes`)
    .optional(),
  /**
   * CRC32 of every 64 KiB piece of the block (common/checksums.ts), computed by
   * the writer; readers verify every byte they return against it. Absent for
   * holes, inline chunks and blocks written before checksums existed.
   */
  sums: sums.optional(),
  /**
   * Replies: the chunk's slices after its base block (`hash`, `len`), in order;
   * the chunk holds `len` + the slices' lengths bytes. Never sent in a commit.
   */
  slices: z.array(sliceRef).max(MAX_SLICES).optional(),
  /**
   * Commits: apply this ref only if the chunk now holds `len` bytes and ends
   * with block `last` (its last slice, else its base), i.e. is what the writer
   * built on; else EAGAIN and nothing of the commit is applied. With `append`,
   * the block is added as a slice at position `expect.len`; without, it
   * replaces the chunk (compaction).
   */
  expect: z.object({ len: size, last: blockHash }).optional(),
  append: z.boolean().optional(),
})
export type ChunkRef = z.infer<typeof chunkRef>

export interface Attr {
  ino: number
  mode: number
  nlink: number
  uid: number
  gid: number
  size: number
  rdev: number
  atime: Timespec
  mtime: Timespec
  ctime: Timespec
  /** Bumped by every content change; lets clients revalidate cached chunk maps. */
  gen: number
  /**
   * Regular files: 512-byte units of bytes stored (st_blocks), holes left out
   * (meta/schema.ts v11). Absent from older metas and from attributes a
   * client made up itself: then size / 512 rounded up.
   */
  blocks?: number
  /** Which POSIX ACLs it has (common/acl.ts HAS_ACCESS_ACL, HAS_DEFAULT_ACL); absent: none, or an older meta. */
  acl?: number
}

export interface DirEntry {
  name: string
  attr: Attr
}

export interface NodeInfo {
  id: string
  url: string
  capacity: number
  used: number
  blocks: number
  state: NodeState
  /** ms since epoch of the last heartbeat meta saw. */
  seen: number
  alive: boolean
  /** Failure domain from `--zone` (absent: none given). */
  zone?: string
  /** What an operator asked of this node (meta's record; absent: nothing). */
  admin?: NodeAdminState
  /** The filesystem the node stores blocks on (see Heartbeat.fsId); absent from older nodes. */
  fsId?: string
  /** Bytes free on that filesystem; absent from older nodes. */
  fsFree?: number
  /** The block names it accepts (Heartbeat.blockHashes); absent from older nodes (SHA-256 only). */
  blockHashes?: string[]
  /** Its last heartbeat said it left: its disk hangs (node/disk-canary.ts); counted dead since. */
  down?: true
}

/**
 * A node's life as the operator steers it (meta/node-admin.ts):
 *   up -> draining -> drained -> decommissioned (forgotten by meta)
 *   dead -> forgotten (its blocks re-protected first)
 * `drained` is not stored: a draining node with no replica rows left.
 */
export const NODE_ADMIN_STATES = ['draining', 'decommissioned', 'forgotten'] as const
export type NodeAdminState = (typeof NODE_ADMIN_STATES)[number]

export const NODE_STATES = ['up', 'full', 'draining'] as const
export type NodeState = (typeof NODE_STATES)[number]

const commitBody = z.object({
  rid,
  ino,
  session,
  size,
  chunks: z.array(chunkRef).max(MAX_PAGE),
  mtime: timespec.optional(),
  times: z.object({ atime: timeSet.optional(), mtime: timeSet.optional() }).optional(),
  // a fresh file's chmod/chown, deferred to its first commit (protocol 3, client/open-file.ts)
  mode: z.number().int().min(0).max(0o7777).optional(),
  uid: u32.optional(),
  gid: u32.optional(),
})

/** Every metadata operation: request schema and reply type. */
export const metaRequests = {
  /**
   * `protocol` and `release`: what the caller speaks and runs (common/compat.ts);
   * absent from releases before the check (protocol 1). Meta refuses a protocol
   * outside its range with EPROTO.
   */
  hello: z.object({ rid, session: session.optional(), protocol: z.number().int().min(0).max(1_000_000).optional(), release: z.string().max(128).optional() }),
  lookup: z.object({ rid, parent: ino, name }),
  getattr: z.object({ rid, ino }),
  setattr: z.object({
    rid,
    ino,
    mode: u32.optional(),
    uid: u32.optional(),
    gid: u32.optional(),
    size: size.optional(),
    atime: timeSet.optional(),
    mtime: timeSet.optional(),
  }),
  /**
   * Regular files, FIFOs, sockets, device nodes: the type is in `mode`. With
   * `session`, the new file is also opened by it (create = mknod + open in one
   * transaction); with `ino` too, its number is one reserved for that session
   * (`inos`), as for mkdir.
   */
  mknod: z.object({ rid, parent: ino, name, mode: u32, rdev: u32.default(0), ...caller, umask, session: session.optional(), ino: ino.optional() }),
  /**
   * With `ino` and `session`: the inode number is one meta reserved for that
   * session (`inos`), used in increasing order, so a mount can answer mkdir
   * before meta applied it (client/ahead-pipeline.ts).
   */
  mkdir: z.object({ rid, parent: ino, name, mode: u32, ...caller, umask, ino: ino.optional(), session: session.optional() }),
  /** Reserves `count` inode numbers for `session`'s mkdirs and creates ahead; replaces what it had left. */
  inos: z.object({ rid, session, count: z.number().int().min(1).max(MAX_RESERVED_INOS) }),
  unlink: z.object({ rid, parent: ino, name }),
  rmdir: z.object({ rid, parent: ino, name }),
  /**
   * Unlinks, rmdirs, mkdirs and creates a mount answered ahead, and the
   * commits of small files closed behind them (client/ahead-pipeline.ts), in
   * one request: applied in order, each on its own (a refused one leaves the
   * others), with one answer each. A meta
   * without it answers ENOSYS and the mount sends them one by one (no
   * protocol bump: no message changed).
   */
  ahead: z.object({
    rid,
    items: z
      .array(
        z.discriminatedUnion('op', [
          z.object({ op: z.literal('unlink'), parent: ino, name }),
          z.object({ op: z.literal('rmdir'), parent: ino, name }),
          z.object({ op: z.literal('mkdir'), parent: ino, name, mode: u32, ...caller, umask, ino, session }),
          z.object({ op: z.literal('mknod'), parent: ino, name, mode: u32, rdev: u32.default(0), ...caller, umask, ino, session }),
          commitBody.extend({ op: z.literal('commit') }),
          // a directory's chmod, chown and utimens (protocol 4): tar's at its end
          z.object({ op: z.literal('setattr'), ino, mode: u32.optional(), uid: u32.optional(), gid: u32.optional(), atime: timeSet.optional(), mtime: timeSet.optional() }),
        ]),
      )
      .min(1)
      .max(MAX_AHEAD),
  }),
  /** flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2) as in renameat2. */
  rename: z.object({ rid, parent: ino, name, newParent: ino, newName: name, flags: u32.default(0) }),
  link: z.object({ rid, ino, newParent: ino, newName: name }),
  symlink: z.object({ rid, parent: ino, name, target: z.string().min(1).max(8192), ...caller }),
  readlink: z.object({ rid, ino }),
  readdir: z.object({ rid, ino, cursor: z.string().max(1024).nullable().default(null), limit: z.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE) }),
  statfs: z.object({ rid }),
  getxattr: z.object({ rid, ino, name }),
  /** flags: XATTR_CREATE (1), XATTR_REPLACE (2). */
  setxattr: z.object({ rid, ino, name, value: bytes, flags: u32.default(0) }),
  listxattr: z.object({ rid, ino }),
  removexattr: z.object({ rid, ino, name }),
  /** Registers `session` as holding `ino` open; returns attr and the first page of chunks. */
  open: z.object({ rid, ino, session }),
  /** A page of the chunk map, starting at chunk index `from`. */
  // withAttr: the inode's attributes too (a read-only open in one read, docs/semantics.md#reads)
  chunks: z.object({ rid, ino, from: z.number().int().min(0).default(0), limit: z.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE), withAttr: z.boolean().optional() }),
  /**
   * Replaces the listed chunks and sets the size, in one transaction. Chunks
   * wholly past `size` are dropped and the last one is clipped to it.
   */
  // times: utimensat on a file with uncommitted writes, applied in the same transaction (wins over mtime)
  commit: commitBody,
  /**
   * copy_file_range inside the cluster (docs/semantics.md#writes): chunks
   * `from`..`from + count - 1` of `src` become chunks `to`.. of `dst`, naming
   * the same blocks (base and slices; each gains a reference), and `dst`'s size
   * becomes `size`, its mtime `mtime` (the writer's clock, as a write), in one
   * transaction. Only if `src` is still at content version `srcGen` (what the
   * caller read its chunk map at): EAGAIN otherwise, nothing applied. A chunk
   * kept inline in meta is refused (EINVAL): only files over 64 KiB are cloned.
   * Metas before this op answer ENOSYS; the client then copies by read + write.
   */
  clonechunks: z.object({
    rid,
    src: ino,
    srcGen: size,
    from: z.number().int().min(0).max(0x7fffffff),
    count: z.number().int().min(1).max(MAX_CLONE_CHUNKS),
    dst: ino,
    to: z.number().int().min(0).max(0x7fffffff),
    size,
    mtime: timespec.optional(),
  }),
  /** Releases `ino` and/or every inode in `inos` (clients batch their releases). */
  // holds: opens registered late (read-only opens, batched with releases), applied before the releases
  release: z.object({ rid, session, ino: ino.optional(), inos: z.array(ino).max(MAX_PAGE).default([]), holds: z.array(ino).max(MAX_PAGE).optional() }),
  /**
   * Opens (no `epoch`) or renews (`epoch` from the last reply) a client session.
   * A renewal of a session that expired, or was replaced, fails with ESTALE: its
   * open files may have been released, so the client must sessionRestore.
   */
  session: z.object({ rid, session, ttlMs: z.number().int().min(1000).max(3_600_000), host: z.string().max(256).default(''), epoch: z.number().int().min(1).optional() }),
  /**
   * After ESTALE: a new epoch for `session`, whose open files become exactly
   * `open` (ino, count); inodes that no longer exist come back in `lost`.
   * Longer lists go in pages: the first replaces (`first`), later ones add.
   */
  sessionRestore: z.object({
    rid,
    session,
    ttlMs: z.number().int().min(1000).max(3_600_000),
    host: z.string().max(256).default(''),
    open: z.array(z.object({ ino, count: z.number().int().min(1).max(0x7fffffff) })).max(MAX_PAGE * 10),
    first: z.boolean().default(true),
  }),
  sessionEnd: z.object({ rid, session }),
  /**
   * Sets or clears a byte-range lock (docs/semantics.md#locks, meta/locks.ts):
   * `posix` for fcntl record and OFD locks, `flock` for flock(2) (the range
   * [0, LOCK_EOF]). `owner` is the kernel's lock owner id in hex; an owner is
   * (session, owner). Never waits: a conflict answers `granted: false`, and
   * the client waits for an invalidation naming the inode in `locks`.
   */
  lock: z.object({
    rid,
    session,
    ino,
    kind: z.enum(['posix', 'flock']),
    owner: lockOwner,
    type: z.enum(['r', 'w', 'u']),
    start: lockOffset,
    end: lockOffset,
    pid: u32,
  }),
  /** F_GETLK: the first lock of another owner that would conflict with this one. Read-only. */
  getlk: z.object({ rid, session, ino, owner: lockOwner, type: z.enum(['r', 'w']), start: lockOffset, end: lockOffset }),
  status: z.object({ rid }),
  /**
   * Upload pin: `session` is about to upload (or has uploaded) these blocks and
   * will commit them; meta must not delete any of them until the session commits,
   * unpins or ends (docs/data-node.md#block-lifecycle).
   */
  pin: z.object({ rid, session, hashes: z.array(blockHash).min(1).max(MAX_PAGE) }),
  /** Drops this session's pins (an upload replaced before its commit). */
  unpin: z.object({ rid, session, hashes: z.array(blockHash).min(1).max(MAX_PAGE) }),
  /** A reader found `node`'s copy of `hash` bad (checksum, short, missing): meta drops it and repairs. */
  badCopy: z.object({ rid, hash: blockHash, node: z.string().min(1).max(64), reason: z.string().max(256).default('') }),
  /** Operator: drain, decommission or forget a data node (docs/data-node.md#drain-and-decommission). */
  nodeAdmin: z.object({ rid, node: z.string().min(1).max(64), action: z.enum(['drain', 'undrain', 'decommission', 'forget']) }),
  /**
   * A page of one node's inventory with meta's view of each copy (for fsck):
   * clients may not command nodes, so meta asks on their behalf. Read-only.
   */
  inventory: z.object({ rid, node: z.string().min(1).max(64), after: z.string().max(64).default(''), limit: z.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE) }),
  /** Operator (`berth gc`): what block GC would collect now and what waits in its grace. Read-only. */
  gcPlan: z.object({ rid }),
  /** Operator (`berth gc --run`): one block GC pass and one full reconciliation pass now. */
  gcRun: z.object({ rid }),
  /** Operator (`berth meta dump`): a consistent SQLite copy of the namespace, read with dumpRead. */
  dumpStart: z.object({ rid }),
  /** Up to `length` bytes of dump `id` from `offset`. */
  dumpRead: z.object({ rid, id: z.string().min(1).max(64), offset: size, length: z.number().int().min(1).max(DUMP_PAGE).default(DUMP_PAGE) }),
  /** The dump has been read (or is abandoned): meta deletes its copy. */
  dumpEnd: z.object({ rid, id: z.string().min(1).max(64) }),
} as const

export type MetaOp = keyof typeof metaRequests
export type MetaRequest<Op extends MetaOp> = z.input<(typeof metaRequests)[Op]>
export type MetaParsed<Op extends MetaOp> = z.output<(typeof metaRequests)[Op]>

export interface HelloReply {
  cluster: string
  metaId: string
  /** Bearer token for the data-plane HTTP API. */
  token: string
  chunkSize: number
  replicas: number
  nodes: NodeInfo[]
  /** The protocol meta speaks and the oldest it serves (common/compat.ts); absent from metas before the check. */
  protocol?: number
  minProtocol?: number
  /** Meta's release, "0.1.0 (commit ...)". */
  release?: string
  /**
   * This meta publishes `Invalidation.all` when it starts serving. A client
   * keeps its long default cache TTL only then; a meta that predates it
   * (absent) leaves lost invalidations bounded by the TTL alone, so the
   * client falls back to the short one (client/config.ts).
   */
  forgetsOnServe?: true
}

export interface StatfsReply {
  bsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  namemax: number
}

export interface StatusReply {
  metaId: string
  startedAt: number
  nodes: NodeInfo[]
  inodes: number
  blocks: number
  bytes: number
  /** Referenced blocks with fewer live replicas than min(R, live nodes): repair can fix these now. */
  underReplicated: number
  /** Referenced blocks with fewer live replicas than R: more than under-replicated when live nodes < R. */
  belowR: number
  /** How old blocks/bytes/underReplicated/belowR/sameZone are (meta/census.ts reuses a scan of a big table). */
  censusAgeMs: number
  /** R, as meta is configured. */
  replicas: number
  sessions: number
  openFiles: number
  /** The repair queue (meta/repair-queue.ts): what is left and how fast it goes. */
  repair: RepairProgress
  /** Nodes being drained: what is left on each. */
  drains: DrainProgress[]
  /** Referenced blocks whose live copies (2 or more) all sit in one zone while 2+ zones are live. */
  sameZone: number
  /** Usage off by more than 10% of the mean: the next move (meta/rebalance.ts); null when even. */
  rebalance: { from: string; to: string; bytes: number; etaS: number | null } | null
  /** A replicated meta (--ha): the answering leader's place in the log and its lease. */
  replication?: ReplicationReport
}

export interface ReplicationReport {
  role: string
  applied: number
  lastLogSeq: number
  leaseAgeMs: number
  /** Every replica heard from in the last few seconds (the leader included), with its lag in log entries. */
  replicas?: Array<{ metaId: string; role: string; applied: number; lag: number; seenMsAgo: number }>
  /** Sequence of the stored snapshot (null: none yet) and the log's first entry. */
  snapshotSeq?: number | null
  logFirstSeq?: number
  /** NATS server the leader sends its appends to directly, the log's stream leader (meta/log/append-route.ts); absent: through its own connection. */
  appendsTo?: string
}

export interface DrainProgress {
  node: string
  blocks: number
  bytes: number
  /** Seconds left at the current repair rate; null when nothing moves. */
  etaS: number | null
}

export interface RepairProgress {
  /** Blocks queued to be looked at (a queued block may turn out fine). */
  blocks: number
  /** Their bytes: an upper bound of what is left to copy. */
  bytes: number
  /** Blocks below R waiting for more live nodes. */
  parked: number
  /** Bytes per second copied over the last 30 s. */
  rate: number
  /** Seconds left at that rate; null when nothing moves. */
  etaS: number | null
}

/**
 * The attributes of the directories a namespace mutation changed, as they are
 * after its commit: the client caches them, so the kernel's GETATTR of the
 * parent (it drops the parent's attributes after every create, unlink, ...)
 * needs no round trip. Optional: an older meta leaves it out.
 */
export interface DirAttrs {
  dirs?: Attr[]
}

export interface MetaReplies {
  hello: HelloReply
  lookup: { attr: Attr }
  getattr: { attr: Attr }
  setattr: { attr: Attr }
  mknod: { attr: Attr } & DirAttrs
  mkdir: { attr: Attr } & DirAttrs
  unlink: DirAttrs
  rmdir: DirAttrs
  inos: { first: number; count: number }
  /** One per item, in order: its reply (a mkdir's or mknod's carries `attr`, a commit's is its own), or the error that refused it. */
  ahead: { results: Array<({ attr?: Attr } & DirAttrs) | MetaReplies['commit'] | { error: { code: string; message: string } }> }
  rename: DirAttrs
  link: { attr: Attr } & DirAttrs
  symlink: { attr: Attr } & DirAttrs
  readlink: { target: string }
  readdir: { entries: DirEntry[]; next: string | null }
  statfs: StatfsReply
  getxattr: { value: Uint8Array }
  setxattr: Record<string, never>
  listxattr: { names: string[] }
  removexattr: Record<string, never>
  open: { attr: Attr; chunks: ChunkRef[]; more: boolean }
  chunks: { chunks: ChunkRef[]; more: boolean; attr?: Attr }
  commit: { attr: Attr }
  /** dst's attributes after the clone. */
  clonechunks: { attr: Attr }
  /** gone: held inodes that no longer existed (freed before the hold arrived). */
  release: { gone?: number[] }
  session: { epoch: number }
  sessionRestore: { epoch: number; lost: number[] }
  sessionEnd: Record<string, never>
  /**
   * granted: false when another owner's lock conflicts (nothing changed, except
   * a flock conversion: see meta/locks.ts). A granted lock (not an unlock)
   * carries the inode's content generation and size, so the mount revalidates
   * a file open since before the last holder's writes without asking again.
   */
  lock: { granted: boolean; gen?: number; size?: number }
  /** `session` tells the asking mount whether `pid` is one of its own processes. */
  getlk: { conflict: { type: 'r' | 'w'; start: number; end: number; pid: number; session: string } | null }
  status: StatusReply
  pin: Record<string, never>
  unpin: Record<string, never>
  badCopy: Record<string, never>
  nodeAdmin: { node: string; admin: NodeAdminState | null; blocks: number }
  inventory: { entries: AuditedCopy[]; more: boolean }
  gcPlan: GcPlan
  gcRun: GcRunReport
  dumpStart: DumpInfo
  dumpRead: { data: Uint8Array; eof: boolean }
  dumpEnd: Record<string, never>
}

/** Unreferenced blocks as block GC sees them (meta/block-gc.ts). */
export interface GcPlan {
  /** meta's --gc-grace-ms and --orphan-age-ms. */
  graceMs: number
  orphanAgeMs: number
  /** Unreferenced, unpinned, past the grace: the next GC pass deletes these. */
  due: { blocks: number; bytes: number }
  /** Unreferenced, unpinned, still in the grace; `nextDueAt` = when the first one is due (ms epoch). */
  inGrace: { blocks: number; bytes: number; nextDueAt: number | null }
  /** Unreferenced but pinned by an upload not committed yet: never collected while pinned. */
  pinned: { blocks: number; bytes: number }
}

export interface GcRunReport {
  /** Blocks whose rows block GC removed (copies moved to the nodes' trash). */
  blocks: number
  bytes: number
  /** Orphan copies reconciliation moved to trash, and those kept (PUT since the decision). */
  orphansDeleted: number
  orphansKept: number
  /** Replica rows reconciliation removed (copy missing) or added (copy found). */
  rowsRemoved: number
  rowsAdded: number
}

export interface DumpInfo {
  id: string
  /** Bytes of the SQLite file and its SHA-256 (hex), to check the transfer. */
  size: number
  sha256: string
  /** PRAGMA user_version of the dump. */
  schemaVersion: number
  /** When the snapshot was taken (ms epoch). */
  at: number
}

/**
 * One copy on a node as meta sees it: `listed` (a replica row says so),
 * `unlisted` (a referenced block, but no row for this node), `pinned` (an
 * upload not committed yet), `zero` (unreferenced, in its grace period),
 * `orphan` (no block meta knows: collected after the orphan age).
 */
export interface AuditedCopy extends InventoryEntry {
  state: 'listed' | 'unlisted' | 'pinned' | 'zero' | 'orphan'
}

/** Read-only or idempotent operations: safe to retry even without a request id (no reply cache). */
export const IDEMPOTENT_OPS: ReadonlySet<MetaOp> = new Set<MetaOp>([
  'hello', 'lookup', 'getattr', 'readlink', 'readdir', 'statfs', 'getxattr', 'listxattr', 'chunks', 'status', 'session', 'badCopy', 'inventory', 'gcPlan', 'dumpRead', 'dumpEnd',
])

// ---- data plane control messages ----

/** `<cluster>.data.place`: served by data nodes in queue group `data`. */
export const placeRequest = z.object({
  size: z.number().int().min(0).max(64 * 1024 * 1024),
  replicas: z.number().int().min(1).max(16),
  /** Node ids the caller wants avoided (e.g. one that just failed). */
  exclude: z.array(z.string().max(64)).max(64).default([]),
})
export type PlaceRequest = z.input<typeof placeRequest>

export interface PlaceReply {
  /** First entry is the node that answered; the client PUTs there with the rest as chain. */
  targets: Array<{ id: string; url: string }>
}

/** `<cluster>.node.hb`: published by every data node every HEARTBEAT_MS. */
export const heartbeat = z.object({
  id: z.string().min(1).max(64),
  url: z.string().url().max(256),
  capacity: size,
  used: size,
  blocks: size,
  state: z.enum(NODE_STATES),
  startedAt: size,
  /** Failure domain (`--zone`): copies of a block go to different zones when enough are live. */
  zone: z.string().min(1).max(64).optional(),
  /**
   * Which filesystem holds the blocks ("<boot id>:<st_dev>"): nodes sharing one
   * disk report the same id, so df counts that disk once. Optional: older nodes
   * omit it and count as a filesystem of their own.
   */
  fsId: z.string().max(128).optional(),
  /** Bytes available on that filesystem (statfs bavail * bsize). */
  fsFree: size.optional(),
  /** The protocol and release the node runs (common/compat.ts); absent from nodes before the check (protocol 1). */
  protocol: z.number().int().min(0).max(1_000_000).optional(),
  release: z.string().max(128).optional(),
  /**
   * The hashes whose block names the node accepts (common/block-hash.ts).
   * Absent from nodes of releases before BLAKE3 names: SHA-256 only. Strings,
   * not an enum, so a hash added later does not make older receivers drop the
   * whole heartbeat.
   */
  blockHashes: z.array(z.string().max(16)).max(8).optional(),
  /**
   * The node takes itself out now (its disk hangs, node/disk-canary.ts) and
   * sends no more heartbeats until it is back: count it dead at once
   * (`seenAt`). Older receivers drop the field and count it dead
   * NODE_DEAD_MS later, as for any silent node.
   */
  down: z.literal(true).optional(),
})
export type Heartbeat = z.infer<typeof heartbeat>
export const HEARTBEAT_MS = 2000
/** A node unseen for this long is dead. */
export const NODE_DEAD_MS = 3 * HEARTBEAT_MS + 1000

/** The `seen` time to record for a heartbeat received at `now`: long enough ago to be dead when it says `down`. */
export function seenAt(hb: Pick<Heartbeat, 'down'>, now: number): number {
  return hb.down === true ? now - NODE_DEAD_MS - 1 : now
}

/** Heard from (`seen` set) but not within NODE_DEAD_MS; a node never heard from is not dead. */
export function heardButDead(seen: number | undefined, now: number = Date.now()): boolean {
  return seen !== undefined && now - seen > NODE_DEAD_MS
}

/**
 * `<cluster>.node.<id>.cmd`: direct commands from meta (and fsck) to one node.
 * Deletes are conditional (docs/data-node.md#block-lifecycle): the caller first
 * asks `clock` for a token (the node's own clock, ms), decides in one meta
 * transaction, then sends `delete {hashes, putBefore: token}`; the node removes
 * only copies not PUT (created or touched by a deduplicated PUT) since the
 * token, so a delete decided before a re-upload never removes the new copy.
 */
export const nodeCommand = z.discriminatedUnion('op', [
  z.object({ op: z.literal('delete'), hashes: z.array(blockHash).max(MAX_PAGE), putBefore: size }),
  z.object({ op: z.literal('replicate'), hash: blockHash, to: z.object({ id: z.string().max(64), url: z.string().max(256) }) }),
  z.object({ op: z.literal('inventory'), after: z.string().max(64).default(''), limit: z.number().int().min(1).max(MAX_PAGE).default(MAX_PAGE) }),
  z.object({ op: z.literal('has'), hashes: z.array(blockHash).max(MAX_PAGE) }),
  z.object({ op: z.literal('clock') }),
  /** Re-hash these copies now (a reader reported them bad); corrupt ones go to trash. */
  z.object({ op: z.literal('verify'), hashes: z.array(blockHash).max(64) }),
  /** Operator drain: stop (or resume) taking placements and new copies; heartbeats say `draining`. */
  z.object({ op: z.literal('drain'), on: z.boolean() }),
  /** Meta does not serve this node's protocol (common/compat.ts): the node logs `reason` and exits. */
  z.object({ op: z.literal('refuse'), reason: z.string().max(1024) }),
])
export type NodeCommand = z.input<typeof nodeCommand>
/** One stored copy in an inventory page. */
export interface InventoryEntry {
  hash: string
  size: number
  /** ms since the copy was last PUT (created or touched), by the node's clock. */
  age: number
}
export interface NodeCommandReplies {
  /** `deleted`: moved to trash; `kept`: PUT since the token (or absent: not counted). */
  delete: { deleted: number; kept: string[] }
  replicate: { ok: true }
  /** Sorted by hash, strictly after `after`; `now` is the node's clock (a delete token). */
  inventory: { entries: InventoryEntry[]; more: boolean; now: number }
  has: { present: string[] }
  clock: { now: number }
  /** `bad`: corrupt or short, moved to trash; `missing`: not stored here. */
  verify: { bad: string[]; missing: string[] }
  drain: { draining: boolean }
  refuse: { ok: true }
}

/** `<cluster>.inval`: published by meta after each mutation. */
export interface Invalidation {
  /** Inodes whose attributes (or chunk maps) changed. */
  inos: number[]
  /** Directories whose entries changed. */
  dirs: number[]
  /** Names that were removed or now name another inode: [parent, name] (clients drop them from the kernel's dentry cache). */
  entries?: Array<[number, string]>
  /**
   * The client part of the request id of the mutation that caused this (absent
   * for meta's own work: session expiry, GC). A mount recognises its own
   * changes by it: it applied them to its caches already and the kernel made
   * them itself, so it pushes nothing into the kernel for them.
   */
  by?: string
  /**
   * Forget everything: drop every cached entry and attribute (and push the
   * kernel's out too), as on a NATS reconnect. Published once by a meta
   * process when it starts serving (a single meta at start, a replica when it
   * becomes the leader), before it answers any request: a meta that died
   * between committing a mutation and publishing its invalidation left other
   * mounts with a stale entry that nothing else would drop (the client's
   * retry is answered from the request table and publishes nothing).
   * Sent with empty `inos` and `dirs`, so a client that predates the field
   * applies nothing and keeps its stale entry until its own TTL (30 s in
   * those releases), exactly as before: ignoring it is safe, so PROTOCOL is
   * not bumped.
   */
  all?: true
  /**
   * Inodes on which a lock was released or downgraded: mounts with a waiting
   * F_SETLKW or flock ask again (client/locks.ts). A client that predates the
   * field ignores it, and it comes with empty `inos` and `dirs`.
   */
  locks?: number[]
}

/** HTTP header naming the rest of the replica chain on a block PUT: `id=url,id=url`. */
export const CHAIN_HEADER = 'x-berth-chain'
/** JSON reply of a block PUT. */
export interface PutReply {
  hash: string
  /** Node ids on which the block is durable, the receiving node first. */
  stored: string[]
}
