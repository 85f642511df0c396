/**
 * File contents and client sessions: open/release, chunk maps, commit.
 *
 * A commit replaces the listed chunks (or appends a slice to one), moves block
 * references (+1 for the new block, -1 for each replaced base or slice), records
 * replica locations and sets the size, all in one transaction: a reader sees
 * either the old map or the new one. Appends and compactions are conditional
 * on the chunk being what the writer built on (EAGAIN otherwise;
 * docs/data-node.md#appends-slices-and-compaction).
 * Sessions are leases: an expired session's open files are released, which may
 * free inodes that were unlinked while open.
 */
import { fsError } from '../common/errors'
import { INLINE_MAX, MAX_SLICES, type ChunkRef, type MetaParsed, type MetaReplies, type SliceRef } from '../common/protocol'
import type { Changes, MetaEnv } from './context'
import { isDir, isReg, PERM_BITS, S_IFMT } from '../common/modes'
import { chmodAcl } from './acls'
import { clipChunks, freeIfUnused, mustInode, refBlock, toAttr, unrefBlock } from './inodes'
import type { Conn } from './sqlite'
import { enqueue } from './repair-queue'
import { dropSessionLocks, ensureSession } from './sessions'
import { clockMs, nowTs } from './time'

/**
 * Budget of one chunk-map page in bytes (a reply is at most MAX_MESSAGE_BYTES):
 * fragmented chunks carry up to MAX_SLICES slices each, so a page ends early
 * when its slices would not fit. A page always holds at least one chunk.
 */
const PAGE_BYTES = 512 * 1024
const REF_BYTES = 200

async function chunkPage(c: Conn, ino: number, from: number, limit: number): Promise<{ chunks: ChunkRef[]; more: boolean }> {
  const rows = await c.all<{ idx: number; hash: string | null; len: number; data: Buffer | null; sums: Buffer | null }>(
    `SELECT c.idx AS idx, c.hash AS hash, c.len AS len, NULL AS data, b.sums AS sums FROM chunks c LEFT JOIN blocks b ON b.hash = c.hash WHERE c.ino = ? AND c.idx >= ?
     UNION ALL SELECT idx, NULL, length(data), data, NULL FROM inline_chunks WHERE ino = ? AND idx >= ?
     ORDER BY idx LIMIT ?`,
    [ino, from, ino, from, limit + 1],
  )
  let more = rows.length > limit
  let page = more ? rows.slice(0, limit) : rows
  const slices = new Map<number, SliceRef[]>()
  const nodes = new Map<string, string[]>()
  if (page.length) {
    const first = page[0]!.idx
    const last = page[page.length - 1]!.idx
    // a page of inline bytes and holes only (every small file) has no slices
    // (they follow a block) and no replicas: two queries fewer per open
    const blocks = page.some((r) => r.hash !== null)
    const sl = blocks
      ? await c.all<{ idx: number; hash: string; len: number; sums: Buffer | null }>(
          'SELECT s.idx AS idx, s.hash AS hash, s.len AS len, b.sums AS sums FROM slices s LEFT JOIN blocks b ON b.hash = s.hash WHERE s.ino = ? AND s.idx BETWEEN ? AND ? ORDER BY s.idx, s.pos',
          [ino, first, last],
        )
      : []
    for (const r of sl) {
      const list = slices.get(r.idx) ?? []
      list.push({ hash: r.hash, len: r.len, nodes: [], ...(r.sums ? { sums: r.sums } : {}) })
      slices.set(r.idx, list)
    }
    let bytes = 0
    let n = 0
    for (const r of page) {
      let cost = REF_BYTES + (r.data?.length ?? 0) + (r.sums?.length ?? 0)
      for (const s of slices.get(r.idx) ?? []) cost += REF_BYTES + (s.sums?.length ?? 0)
      if (n > 0 && bytes + cost > PAGE_BYTES) break
      bytes += cost
      n++
    }
    if (n < page.length) {
      page = page.slice(0, n)
      more = true
    }
    const reps = blocks
      ? await c.all<{ hash: string; node_id: string }>(
          `SELECT r.hash, r.node_id FROM replicas r
       WHERE r.hash IN (SELECT hash FROM chunks WHERE ino = ? AND idx BETWEEN ? AND ? UNION SELECT hash FROM slices WHERE ino = ? AND idx BETWEEN ? AND ?)
       ORDER BY r.node_id`,
          [ino, first, page[page.length - 1]!.idx, ino, first, page[page.length - 1]!.idx],
        )
      : []
    for (const r of reps) {
      const list = nodes.get(r.hash) ?? []
      list.push(r.node_id)
      nodes.set(r.hash, list)
    }
  }
  const where = (hash: string) => (nodes.get(hash) ?? []).slice(0, 16)
  return {
    chunks: page.map((r): ChunkRef => {
      if (r.hash === null) return { idx: r.idx, hash: null, len: r.len, nodes: [], data: r.data ?? Buffer.alloc(0) }
      const ref: ChunkRef = { idx: r.idx, hash: r.hash, len: r.len, nodes: where(r.hash), ...(r.sums ? { sums: r.sums } : {}) }
      const sl = slices.get(r.idx)
      if (sl) ref.slices = sl.map((s) => ({ ...s, nodes: where(s.hash) }))
      return ref
    }),
    more,
  }
}

/** The chunk as meta holds it: bytes, last block, slice count; undefined when it has no block. */
async function chunkEnd(tx: Conn, ino: number, idx: number): Promise<{ len: number; last: string; slices: number } | undefined> {
  const base = await tx.get<{ hash: string; len: number }>('SELECT hash, len FROM chunks WHERE ino = ? AND idx = ?', [ino, idx])
  if (!base) return undefined
  const tail = await tx.get<{ pos: number; hash: string; len: number; n: number }>(
    'SELECT pos, hash, len, (SELECT COUNT(*) FROM slices WHERE ino = ? AND idx = ?) AS n FROM slices WHERE ino = ? AND idx = ? ORDER BY pos DESC LIMIT 1',
    [ino, idx, ino, idx],
  )
  return tail ? { len: tail.pos + tail.len, last: tail.hash, slices: tail.n } : { len: base.len, last: base.hash, slices: 0 }
}

/** Records that `session` holds `ino` open (keeps an unlinked inode alive). */
export async function registerOpen(tx: Conn, session: string, ino: number): Promise<void> {
  await ensureSession(tx, session)
  await tx.run('INSERT INTO open_files (session, ino, count) VALUES (?, ?, 1) ON CONFLICT (session, ino) DO UPDATE SET count = count + 1', [session, ino])
}

export async function open(env: MetaEnv, b: MetaParsed<'open'>): Promise<MetaReplies['open']> {
  return env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    if (row.nlink <= 0 && !(await tx.get('SELECT 1 AS x FROM open_files WHERE ino = ?', [b.ino]))) {
      throw fsError('ENOENT', `inode ${b.ino} was removed`)
    }
    await registerOpen(tx, b.session, b.ino)
    const page = await chunkPage(tx, b.ino, 0, 1000)
    return { attr: toAttr(row), ...page }
  })
}

export async function chunks(env: MetaEnv, b: MetaParsed<'chunks'>): Promise<MetaReplies['chunks']> {
  const row = await mustInode(env.db.read, b.ino)
  const page = await chunkPage(env.db.read, b.ino, b.from, b.limit)
  return b.withAttr ? { ...page, attr: toAttr(row) } : page
}

export async function commit(env: MetaEnv, b: MetaParsed<'commit'>, ch: Changes): Promise<MetaReplies['commit']> {
  const byIdx = new Map<number, ChunkRef>()
  for (const c of b.chunks) {
    if (c.len > env.chunkSize) throw fsError('EINVAL', `chunk ${c.idx}: len ${c.len} over chunk size ${env.chunkSize}`)
    if (c.data !== undefined) {
      if (c.hash !== null) throw fsError('EINVAL', `chunk ${c.idx}: inline data and a block hash`)
      if (c.data.length !== c.len) throw fsError('EINVAL', `chunk ${c.idx}: inline data is ${c.data.length} bytes, len says ${c.len}`)
      // small files only: meta is not a place for bulk data
      if (b.size > INLINE_MAX) throw fsError('EINVAL', `chunk ${c.idx}: inline data in a file of ${b.size} bytes (at most ${INLINE_MAX})`)
    } else if (c.hash === null && c.len !== 0) throw fsError('EINVAL', `chunk ${c.idx}: a hole has len 0`)
    if (c.slices !== undefined) throw fsError('EINVAL', `chunk ${c.idx}: slices are added one commit each (append), not listed`)
    if ((c.expect || c.append) && c.hash === null) throw fsError('EINVAL', `chunk ${c.idx}: expect/append need a block`)
    if (c.append && !c.expect) throw fsError('EINVAL', `chunk ${c.idx}: an append names the chunk it extends (expect)`)
    if (c.append && c.expect!.len + c.len > env.chunkSize) throw fsError('EINVAL', `chunk ${c.idx}: append of ${c.len} at ${c.expect!.len} passes the chunk size ${env.chunkSize}`)
    byIdx.set(c.idx, c)
  }
  return env.db.write(async (tx) => {
    const row = await mustInode(tx, b.ino)
    if (isDir(row.mode)) throw fsError('EISDIR', `inode ${b.ino} is a directory`)
    if (!isReg(row.mode)) throw fsError('EINVAL', `inode ${b.ino} is not a regular file`)
    const nowMs = clockMs(tx)
    // conditional refs first, so a refusal leaves nothing half applied (the savepoint rolls back anyway)
    for (const c of byIdx.values()) {
      if (!c.expect) continue
      const now = await chunkEnd(tx, b.ino, c.idx)
      if (!now || now.len !== c.expect.len || now.last !== c.expect.last) {
        throw fsError('EAGAIN', `chunk ${c.idx} changed since the writer read it (it expected ${c.expect.len} bytes ending with ${c.expect.last.slice(0, 12)}); rewrite the whole chunk`)
      }
      if (c.append && now.slices >= MAX_SLICES) throw fsError('EAGAIN', `chunk ${c.idx} has ${now.slices} slices already (at most ${MAX_SLICES}); rewrite the whole chunk`)
    }
    // A file at content version 0 has never had a chunk row: every statement
    // that writes a chunk map (commit, clonechunks) moves gen in the same
    // transaction. Its first commit (every new file's, with a small file's
    // create) has nothing to look up, replace or clip beyond what it writes:
    // 6-11 statements fewer per create (docs/bench.md).
    const first = row.gen === 0
    for (const c of byIdx.values()) {
      const old = c.append || first ? undefined : await tx.get<{ hash: string }>('SELECT hash FROM chunks WHERE ino = ? AND idx = ?', [b.ino, c.idx])
      const oldSlices = c.append || first ? [] : await tx.all<{ hash: string }>('SELECT hash FROM slices WHERE ino = ? AND idx = ?', [b.ino, c.idx])
      if (!first) await tx.run('DELETE FROM inline_chunks WHERE ino = ? AND idx = ?', [b.ino, c.idx])
      if (c.data !== undefined) {
        if (!first) await tx.run('DELETE FROM chunks WHERE ino = ? AND idx = ?', [b.ino, c.idx])
        await tx.run('INSERT INTO inline_chunks (ino, idx, data) VALUES (?, ?, ?)', [b.ino, c.idx, Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength)])
      } else if (c.hash) {
        // A block meta has no row for is not pinned by anyone and may already
        // be deleted (or be about to be, by a delete decided earlier): its
        // copies cannot be vouched for. The writer must upload it again.
        if (!(await tx.get('SELECT 1 AS x FROM blocks WHERE hash = ?', [c.hash]))) {
          throw fsError('ESTALE', `chunk ${c.idx}: block ${c.hash} is not pinned and no longer known (collected); upload it again`)
        }
        await refBlock(tx, c.hash, c.len)
        // sums describe the block's bytes, so the first writer's are everyone's
        if (c.sums) await tx.run('UPDATE blocks SET sums = ? WHERE hash = ? AND sums IS NULL', [Buffer.from(c.sums.buffer, c.sums.byteOffset, c.sums.byteLength), c.hash])
        await releasePin(tx, c.hash, b.session)
        // since: meta learnt of this copy now (reconciliation keeps rows newer than its page)
        for (const node of c.nodes) {
          await tx.run('INSERT INTO replicas (hash, node_id, since) VALUES (?, ?, ?) ON CONFLICT (hash, node_id) DO UPDATE SET since = excluded.since', [c.hash, node, nowMs])
        }
        // a writer that reached fewer than R nodes, or a draining one (placed
        // before it left placement): repair adds or moves the copies. More
        // than R listed (a deduplicated block committed again with copies on
        // other nodes, or a chain's late copy beside the one placed instead):
        // repair trims them; no other event would ever queue the block.
        const listed = (await tx.get<{ n: number }>('SELECT COUNT(*) AS n FROM replicas WHERE hash = ?', [c.hash]))?.n ?? 0
        if (c.nodes.length < env.replicas || listed > env.replicas || c.nodes.some((n) => env.nodes.adminOf(n))) await enqueue(tx, [c.hash], nowMs)
        if (c.append) {
          await tx.run('INSERT INTO slices (ino, idx, pos, hash, len) VALUES (?, ?, ?, ?, ?)', [b.ino, c.idx, c.expect!.len, c.hash, c.len])
        } else {
          await tx.run('INSERT INTO chunks (ino, idx, hash, len) VALUES (?, ?, ?, ?) ON CONFLICT (ino, idx) DO UPDATE SET hash = excluded.hash, len = excluded.len', [
            b.ino,
            c.idx,
            c.hash,
            c.len,
          ])
        }
      } else if (!first) {
        await tx.run('DELETE FROM chunks WHERE ino = ? AND idx = ?', [b.ino, c.idx])
      }
      if (oldSlices.length) await tx.run('DELETE FROM slices WHERE ino = ? AND idx = ?', [b.ino, c.idx])
      if (old) await unrefBlock(tx, old.hash, nowMs)
      for (const sl of oldSlices) await unrefBlock(tx, sl.hash, nowMs)
    }
    // a compaction only changes how the bytes are stored: size and times stay
    // (the chunk map's version, gen, still moves so caches take the new map)
    const compaction = byIdx.size > 0 && [...byIdx.values()].every((c) => c.expect && !c.append)
    if (compaction) {
      await tx.run('UPDATE inodes SET gen = gen + 1 WHERE ino = ?', [b.ino])
      ch.ino(b.ino)
      return { attr: toAttr(await mustInode(tx, b.ino)) }
    }
    // a first commit's rows are all its own: clipped only if one passes the size
    if (!first || [...byIdx.values()].some((c) => c.idx * env.chunkSize + c.len > b.size)) await clipChunks(tx, b.ino, b.size, env.chunkSize, nowMs)
    const now = nowTs(tx)
    const set = b.times?.mtime
    const mtime = set === 'now' ? now : (set ?? b.mtime ?? now)
    await tx.run('UPDATE inodes SET size = ?, gen = gen + 1, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?', [
      b.size,
      mtime[0],
      mtime[1],
      now[0],
      now[1],
      b.ino,
    ])
    const atime = b.times?.atime === 'now' ? now : b.times?.atime
    if (atime) await tx.run('UPDATE inodes SET atime_s = ?, atime_ns = ? WHERE ino = ?', [atime[0], atime[1], b.ino])
    // a fresh file's chmod/chown, which its writer deferred to this commit (the kernel checked them)
    if (b.mode !== undefined || b.uid !== undefined || b.gid !== undefined) {
      const mode = b.mode === undefined ? row.mode : (row.mode & S_IFMT) | (b.mode & PERM_BITS)
      if (b.mode !== undefined) await chmodAcl(tx, row, mode)
      await tx.run('UPDATE inodes SET mode = ?, uid = ?, gid = ? WHERE ino = ?', [mode, b.uid ?? row.uid, b.gid ?? row.gid, b.ino])
    }
    ch.ino(b.ino)
    return { attr: toAttr(await mustInode(tx, b.ino)) }
  })
}

/**
 * copy_file_range inside the cluster: chunks of `src` become chunks of `dst`
 * naming the same blocks (docs/semantics.md#writes). One transaction, only if
 * `src` is still at `srcGen` (the chunk map the client planned the copy on).
 * The destination chunks it replaces lose their references as in a commit;
 * the size, mtime and ctime change as in a commit (the client sends the size
 * it sees and its clock as mtime; ctime is meta's).
 */
export async function clonechunks(env: MetaEnv, b: MetaParsed<'clonechunks'>, ch: Changes): Promise<MetaReplies['clonechunks']> {
  const cs = env.chunkSize
  if ((b.to + b.count - 1) * cs >= b.size) throw fsError('EINVAL', `clone to chunks ${b.to}..${b.to + b.count - 1}: size ${b.size} ends before the last of them`)
  if (b.src === b.dst && b.from < b.to + b.count && b.to < b.from + b.count) throw fsError('EINVAL', `clone of chunks ${b.from}.. onto ${b.to}.. of one file overlaps`)
  return env.db.write(async (tx) => {
    const src = await mustInode(tx, b.src)
    const dst = b.dst === b.src ? src : await mustInode(tx, b.dst)
    for (const [row, what] of [[src, 'source'], [dst, 'destination']] as const) {
      if (isDir(row.mode)) throw fsError('EISDIR', `${what} inode ${row.ino} is a directory`)
      if (!isReg(row.mode)) throw fsError('EINVAL', `${what} inode ${row.ino} is not a regular file`)
    }
    if (src.gen !== b.srcGen) throw fsError('EAGAIN', `inode ${b.src} changed since the copy was planned (gen ${src.gen}, expected ${b.srcGen})`)
    const last = b.from + b.count - 1
    if (await tx.get('SELECT 1 AS x FROM inline_chunks WHERE ino = ? AND idx BETWEEN ? AND ?', [b.src, b.from, last])) {
      throw fsError('EINVAL', `inode ${b.src} keeps chunks ${b.from}..${last} in meta (a file of at most 64 KiB): copy it by read and write`)
    }
    // read the source rows first: with src = dst the ranges do not overlap, but the writes below must not see each other
    const bases = await tx.all<{ idx: number; hash: string; len: number }>('SELECT idx, hash, len FROM chunks WHERE ino = ? AND idx BETWEEN ? AND ?', [b.src, b.from, last])
    const slices = await tx.all<{ idx: number; pos: number; hash: string; len: number }>('SELECT idx, pos, hash, len FROM slices WHERE ino = ? AND idx BETWEEN ? AND ?', [b.src, b.from, last])
    const nowMs = clockMs(tx)
    const shift = b.to - b.from
    const dstLast = b.to + b.count - 1
    // the destination's chunks in the range go, as a commit replacing them would drop them
    const oldBases = await tx.all<{ hash: string }>('SELECT hash FROM chunks WHERE ino = ? AND idx BETWEEN ? AND ?', [b.dst, b.to, dstLast])
    const oldSlices = await tx.all<{ hash: string }>('SELECT hash FROM slices WHERE ino = ? AND idx BETWEEN ? AND ?', [b.dst, b.to, dstLast])
    await tx.run('DELETE FROM chunks WHERE ino = ? AND idx BETWEEN ? AND ?', [b.dst, b.to, dstLast])
    await tx.run('DELETE FROM slices WHERE ino = ? AND idx BETWEEN ? AND ?', [b.dst, b.to, dstLast])
    await tx.run('DELETE FROM inline_chunks WHERE ino = ? AND idx BETWEEN ? AND ?', [b.dst, b.to, dstLast])
    // references first, then the old ones go: a block both held keeps its count above zero throughout
    for (const r of bases) {
      await refBlock(tx, r.hash, r.len)
      await tx.run('INSERT INTO chunks (ino, idx, hash, len) VALUES (?, ?, ?, ?)', [b.dst, r.idx + shift, r.hash, r.len])
    }
    for (const r of slices) {
      await refBlock(tx, r.hash, r.len)
      await tx.run('INSERT INTO slices (ino, idx, pos, hash, len) VALUES (?, ?, ?, ?, ?)', [b.dst, r.idx + shift, r.pos, r.hash, r.len])
    }
    for (const o of oldBases) await unrefBlock(tx, o.hash, nowMs)
    for (const o of oldSlices) await unrefBlock(tx, o.hash, nowMs)
    await clipChunks(tx, b.dst, b.size, cs, nowMs)
    const now = nowTs(tx)
    const mtime = b.mtime ?? now
    await tx.run('UPDATE inodes SET size = ?, gen = gen + 1, mtime_s = ?, mtime_ns = ?, ctime_s = ?, ctime_ns = ? WHERE ino = ?', [b.size, mtime[0], mtime[1], now[0], now[1], b.dst])
    ch.ino(b.dst)
    return { attr: toAttr(await mustInode(tx, b.dst)) }
  })
}

async function releaseOne(tx: Conn, session: string, ino: number, ch: Changes): Promise<void> {
  await tx.run('UPDATE open_files SET count = count - 1 WHERE session = ? AND ino = ?', [session, ino])
  await tx.run('DELETE FROM open_files WHERE session = ? AND ino = ? AND count <= 0', [session, ino])
  if (await freeIfUnused(tx, ino, clockMs(tx))) ch.ino(ino)
}

export async function release(env: MetaEnv, b: MetaParsed<'release'>, ch: Changes): Promise<MetaReplies['release']> {
  const inos = b.ino === undefined ? b.inos : [b.ino, ...b.inos]
  return env.db.write(async (tx) => {
    // late registrations first: a release in the same batch may be of an earlier open of the same inode
    const gone: number[] = []
    for (const ino of b.holds ?? []) {
      if (await tx.get('SELECT 1 AS x FROM inodes WHERE ino = ?', [ino])) await registerOpen(tx, b.session, ino)
      else gone.push(ino)
    }
    for (const ino of inos) await releaseOne(tx, b.session, ino, ch)
    return gone.length ? { gone } : {}
  })
}

/**
 * Upload pins (docs/data-node.md#block-lifecycle): a pinned block is never
 * collected, trimmed or treated as an orphan. A pin on a block meta does not
 * know yet creates its row with no references, so GC, reconciliation and
 * commit all see one lifecycle. Pins are counted per (hash, session): one per
 * upload, released by the commit of that upload or by `unpin`, so two uploads
 * of the same content (all-zero chunks) stay protected until both are done.
 */
export async function pin(env: MetaEnv, b: MetaParsed<'pin'>): Promise<MetaReplies['pin']> {
  await env.db.write(async (tx) => {
    await ensureSession(tx, b.session)
    const nowMs = clockMs(tx)
    for (const hash of b.hashes) {
      await tx.run('INSERT INTO blocks (hash, refs, size, zero_since) VALUES (?, 0, 0, NULL) ON CONFLICT (hash) DO UPDATE SET zero_since = NULL', [hash])
      await tx.run('INSERT INTO pins (hash, session, since, count) VALUES (?, ?, ?, 1) ON CONFLICT (hash, session) DO UPDATE SET since = excluded.since, count = count + 1', [
        hash,
        b.session,
        nowMs,
      ])
    }
  })
  return {}
}

/** A block left with no references and no pins starts its grace period. */
async function startGraceIfFree(tx: Conn, hash: string, nowMs: number): Promise<void> {
  await tx.run('UPDATE blocks SET zero_since = ? WHERE hash = ? AND refs <= 0 AND zero_since IS NULL AND NOT EXISTS (SELECT 1 FROM pins WHERE hash = ?)', [nowMs, hash, hash])
}

/** Releases one pin of `session` on `hash` (one upload committed or given up). */
async function releasePin(tx: Conn, hash: string, session: string): Promise<void> {
  await tx.run('UPDATE pins SET count = count - 1 WHERE hash = ? AND session = ?', [hash, session])
  await tx.run('DELETE FROM pins WHERE hash = ? AND session = ? AND count <= 0', [hash, session])
}

/** Drops all of a session's pins on these blocks (the session ended). */
async function dropPins(tx: Conn, session: string, hashes: string[], nowMs: number): Promise<void> {
  for (const hash of hashes) {
    await tx.run('DELETE FROM pins WHERE hash = ? AND session = ?', [hash, session])
    await startGraceIfFree(tx, hash, nowMs)
  }
}

/** One release per listed hash: list a hash twice to release two uploads of it. */
export async function unpin(env: MetaEnv, b: MetaParsed<'unpin'>): Promise<MetaReplies['unpin']> {
  await env.db.write(async (tx) => {
    const nowMs = clockMs(tx)
    for (const hash of b.hashes) {
      await releasePin(tx, hash, b.session)
      await startGraceIfFree(tx, hash, nowMs)
    }
  })
  return {}
}

async function endSession(tx: Conn, id: string, ch: Changes): Promise<void> {
  const held = await tx.all<{ ino: number }>('SELECT ino FROM open_files WHERE session = ?', [id])
  const pinned = await tx.all<{ hash: string }>('SELECT hash FROM pins WHERE session = ?', [id])
  await dropPins(
    tx,
    id,
    pinned.map((p) => p.hash),
    clockMs(tx),
  )
  await tx.run('DELETE FROM open_files WHERE session = ?', [id])
  await dropSessionLocks(tx, id, ch)
  await tx.run('DELETE FROM sessions WHERE id = ?', [id])
  const nowMs = clockMs(tx)
  for (const h of held) if (await freeIfUnused(tx, h.ino, nowMs)) ch.ino(h.ino)
}

export async function sessionEnd(env: MetaEnv, b: MetaParsed<'sessionEnd'>, ch: Changes): Promise<MetaReplies['sessionEnd']> {
  await env.db.write((tx) => endSession(tx, b.session, ch))
  return {}
}

/** Ends every session whose lease ran out; returns how many. */
export async function expireSessions(env: MetaEnv, ch: Changes): Promise<number> {
  const expired = await env.db.read.all<{ id: string }>('SELECT id FROM sessions WHERE expires < ? LIMIT 1000', [clockMs(null)])
  for (const s of expired) {
    await env.db.write(async (tx) => {
      // Renewed since we looked? Then it stays.
      const still = await tx.get('SELECT 1 AS x FROM sessions WHERE id = ? AND expires < ?', [s.id, clockMs(tx)])
      if (still) await endSession(tx, s.id, ch)
    })
  }
  return expired.length
}
