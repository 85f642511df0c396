/**
 * Conformance of every metadata operation against a real `berth meta` (no data
 * nodes): success paths and the errno of each refusal.
 */
import t from 'tap'
import type { Attr } from '../common/protocol'
import { ROOT_INO } from '../common/protocol'
import type { MetaClient } from '../common/meta-client'
import { decode, request } from '../common/wire'
import { startCluster } from './helpers/cluster'

const DIR = 0o040000
const REG = 0o100000
const FIFO = 0o010000
const SOCK = 0o140000
const CHR = 0o020000
const LNK = 0o120000
const SGID = 0o2000
const who = { uid: 1000, gid: 1000 }
const hash = (n: number) => n.toString(16).padStart(64, '0')

const cmpTs = (a: [number, number], b: [number, number]) => a[0] - b[0] || a[1] - b[1]

let seq = 0
const uniq = (p: string) => `${p}-${seq++}`

t.test('metadata operations', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m: MetaClient = await c.metaClient()
  const mkdir = (parent: number, name: string, mode = 0o755) => m.call('mkdir', { parent, name, mode, ...who }).then((r) => r.attr)
  const mkfile = (parent: number, name: string, mode = 0o644) => m.call('mknod', { parent, name, mode: REG | mode, ...who }).then((r) => r.attr)
  const getattr = (ino: number) => m.call('getattr', { ino }).then((r) => r.attr)
  const code = (code: string) => ({ code })
  // every upload is pinned before its commit (docs/data-node.md#block-lifecycle)
  const commit = async (body: Parameters<typeof m.call<'commit'>>[1]) => {
    const hashes = body.chunks.flatMap((c) => (c.hash ? [c.hash] : []))
    if (hashes.length) await m.call('pin', { session: body.session, hashes })
    return m.call('commit', body)
  }
  /**
   * status.blocks from a census that started after this call: meta reuses a
   * census for ten times its own duration (meta/census.ts), so a count asked
   * right after a commit could predate it (seen once in CI: one short).
   */
  const blocksNow = async (): Promise<number> => {
    const asked = Date.now()
    for (let i = 0; ; i++) {
      const s = await m.call('status', {})
      if (Date.now() - s.censusAgeMs >= asked || i >= 250) return s.blocks
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  t.test('hello and root', async (t) => {
    const h = await m.call('hello', {})
    t.equal(h.cluster, 'berth')
    t.equal(h.token, c.secret)
    t.equal(h.chunkSize, 4 * 1024 * 1024)
    const root = await getattr(ROOT_INO)
    t.equal(root.mode, 0o40755)
    t.equal(root.uid, 0)
    t.equal(root.ino, 1)
    t.ok(Array.isArray(root.mtime) && root.mtime.length === 2)
  })

  t.test('mkdir, mknod, lookup, getattr', async (t) => {
    const rootBefore = await getattr(ROOT_INO)
    const d = await mkdir(ROOT_INO, uniq('d'))
    t.equal(d.mode, DIR | 0o755)
    t.equal(d.nlink, 2)
    t.equal(d.uid, 1000)
    t.equal((await getattr(ROOT_INO)).nlink, rootBefore.nlink + 1, 'parent nlink + 1')
    const f = await mkfile(d.ino, 'f')
    t.equal(f.mode, REG | 0o644)
    t.equal(f.nlink, 1)
    t.equal(f.size, 0)
    t.same((await m.call('lookup', { parent: d.ino, name: 'f' })).attr, f)
    t.same(await getattr(f.ino), f)
    // the new file's times and the directory's new mtime and ctime are one instant, as on a local disk
    const dAfter = await getattr(d.ino)
    for (const when of [f.atime, f.mtime, f.ctime, dAfter.ctime]) t.same(when, dAfter.mtime, 'one instant for the file and its directory')
    await t.rejects(mkfile(d.ino, 'f'), code('EEXIST'))
    await t.rejects(mkdir(d.ino, 'f'), code('EEXIST'))
    await t.rejects(m.call('lookup', { parent: d.ino, name: 'nope' }), code('ENOENT'))
    await t.rejects(m.call('lookup', { parent: f.ino, name: 'x' }), code('ENOTDIR'))
    await t.rejects(m.call('lookup', { parent: 999999, name: 'x' }), code('ENOENT'))
    await t.rejects(getattr(999999), code('ENOENT'))
    await t.rejects(mkfile(f.ino, 'x'), code('ENOTDIR'))
    const fifo = (await m.call('mknod', { parent: d.ino, name: 'fifo', mode: FIFO | 0o600, ...who })).attr
    t.equal(fifo.mode, FIFO | 0o600)
    const sock = (await m.call('mknod', { parent: d.ino, name: 'sock', mode: SOCK | 0o600, ...who })).attr
    t.equal(sock.mode, SOCK | 0o600)
    const dev = (await m.call('mknod', { parent: d.ino, name: 'dev', mode: CHR | 0o600, rdev: 0x0103, ...who })).attr
    t.equal(dev.mode, CHR | 0o600)
    t.equal(dev.rdev, 0x0103)
    await t.rejects(m.call('mknod', { parent: d.ino, name: 'dir', mode: DIR | 0o755, ...who }), code('EINVAL'))
  })

  t.test('names with / or NUL or over 255 bytes are refused', async (t) => {
    await t.rejects(mkfile(ROOT_INO, 'a/b'), code('EINVAL'))
    await t.rejects(mkfile(ROOT_INO, 'a\0b'), code('EINVAL'))
    await t.rejects(mkdir(ROOT_INO, 'x'.repeat(256)), code('ENAMETOOLONG'))
    await t.rejects(mkfile(ROOT_INO, 'é'.repeat(128)), code('ENAMETOOLONG'))
    await t.rejects(mkfile(ROOT_INO, '..'), code('EINVAL'))
    await t.rejects(m.call('lookup', { parent: ROOT_INO, name: 'a/b' }), code('EINVAL'))
    await t.rejects(m.call('rename', { parent: ROOT_INO, name: 'x', newParent: ROOT_INO, newName: 'a\0' }), code('EINVAL'))
    const ok = await mkfile(ROOT_INO, 'x'.repeat(255))
    t.equal(ok.nlink, 1, '255 bytes is fine')
  })

  t.test('setattr: mode keeps type, owner, times, ctime', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('sa'))
    const a = (await m.call('setattr', { ino: f.ino, mode: 0o4711 })).attr
    t.equal(a.mode, REG | 0o4711, 'type bits kept')
    t.ok(cmpTs(a.ctime, f.ctime) > 0, 'ctime moved')
    const b = (await m.call('setattr', { ino: f.ino, uid: 7, gid: 8 })).attr
    t.equal(b.uid, 7)
    t.equal(b.gid, 8)
    const c2 = (await m.call('setattr', { ino: f.ino, atime: [100, 123456789], mtime: [200, 987654321] })).attr
    t.same(c2.atime, [100, 123456789], 'exact ns')
    t.same(c2.mtime, [200, 987654321])
    const d = (await m.call('setattr', { ino: f.ino, mtime: 'now' })).attr
    t.ok(d.mtime[0] > 1_600_000_000, 'now is now')
    t.same((await getattr(f.ino)).mtime, d.mtime, 'stored')
    const dir = await mkdir(ROOT_INO, uniq('sad'))
    await t.rejects(m.call('setattr', { ino: dir.ino, size: 0 }), code('EISDIR'))
    await t.rejects(m.call('setattr', { ino: 999999, mode: 0o600 }), code('ENOENT'))
  })

  t.test('truncate down and up clips and drops chunks', async (t) => {
    const cs = 4 * 1024 * 1024
    const f = await mkfile(ROOT_INO, uniq('tr'))
    const s = uniq('sess')
    const chunks = [0, 1, 2].map((idx) => ({ idx, hash: hash(1000 + idx), len: cs, nodes: ['n1', 'n2'] }))
    const com = (await commit({ ino: f.ino, session: s, size: 3 * cs, chunks })).attr
    t.equal(com.size, 3 * cs)
    t.ok(com.gen > f.gen, 'commit bumps gen')
    const page = await m.call('chunks', { ino: f.ino })
    t.same(page.chunks.map((c) => [c.idx, c.len]), [[0, cs], [1, cs], [2, cs]])
    t.same(page.chunks[0]!.nodes, ['n1', 'n2'])
    t.equal(page.more, false)
    const down = (await m.call('setattr', { ino: f.ino, size: cs + 10 })).attr
    t.equal(down.size, cs + 10)
    t.ok(down.gen > com.gen, 'size change bumps gen')
    t.ok(cmpTs(down.mtime, com.mtime) >= 0)
    t.same((await m.call('chunks', { ino: f.ino })).chunks.map((c) => [c.idx, c.len]), [[0, cs], [1, 10]], 'dropped past size, last clipped')
    const up = (await m.call('setattr', { ino: f.ino, size: 5 * cs })).attr
    t.equal(up.size, 5 * cs)
    t.same((await m.call('chunks', { ino: f.ino })).chunks.map((c) => [c.idx, c.len]), [[0, cs], [1, 10]], 'growing leaves a hole')
    const zero = (await m.call('setattr', { ino: f.ino, size: 0 })).attr
    t.equal(zero.size, 0)
    t.same((await m.call('chunks', { ino: f.ino })).chunks, [])
    const st = await m.call('status', {})
    t.equal(st.blocks, 0, 'no block is referenced any more')
  })

  t.test('commit: replace chunks, refs, replicas union, holes, clip, errors', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('cm'))
    const s = uniq('sess')
    const before = await blocksNow()
    await commit({ ino: f.ino, session: s, size: 100, chunks: [{ idx: 0, hash: hash(1), len: 100, nodes: ['a'] }] })
    const g = await commit({ ino: f.ino, session: s, size: 150, chunks: [{ idx: 0, hash: hash(1), len: 150, nodes: ['b'] }], mtime: [300, 5] })
    t.same(g.attr.mtime, [300, 5], 'explicit mtime')
    const p = await m.call('chunks', { ino: f.ino })
    t.same(p.chunks, [{ idx: 0, hash: hash(1), len: 150, nodes: ['a', 'b'] }], 'replica nodes are a union')
    t.equal(await blocksNow(), before + 1)
    await commit({ ino: f.ino, session: s, size: 150, chunks: [{ idx: 0, hash: hash(2), len: 150, nodes: ['a'] }] })
    t.equal(await blocksNow(), before + 1, 'replaced block lost its reference')
    await commit({ ino: f.ino, session: s, size: 150, chunks: [{ idx: 0, hash: null, len: 0, nodes: [] }] })
    t.same((await m.call('chunks', { ino: f.ino })).chunks, [], 'a null hash makes a hole')
    await commit({ ino: f.ino, session: s, size: 10, chunks: [{ idx: 0, hash: hash(1), len: 100, nodes: ['a'] }, { idx: 3, hash: hash(3), len: 100, nodes: ['a'] }] })
    t.same((await m.call('chunks', { ino: f.ino })).chunks.map((c) => [c.idx, c.len]), [[0, 10]], 'chunks past size dropped and clipped')
    // a file's first commit (gen 0) has no old rows to replace (meta/files.ts), but is clipped all the same
    const fresh = await mkfile(ROOT_INO, uniq('cm'))
    await commit({ ino: fresh.ino, session: s, size: 10, chunks: [{ idx: 0, hash: hash(1), len: 100, nodes: ['a'] }, { idx: 3, hash: hash(3), len: 100, nodes: ['a'] }] })
    t.same((await m.call('chunks', { ino: fresh.ino })).chunks.map((c) => [c.idx, c.len]), [[0, 10]], 'a first commit: chunks past size dropped and clipped')
    const fresh2 = await mkfile(ROOT_INO, uniq('cm'))
    const cs = 4 * 1024 * 1024
    await commit({ ino: fresh2.ino, session: s, size: cs + 7, chunks: [{ idx: 0, hash: hash(1), len: cs, nodes: ['a'] }, { idx: 1, hash: hash(4), len: 7, nodes: ['a'] }] })
    const kept = (await m.call('chunks', { ino: fresh2.ino })).chunks
    t.same(kept.map((c) => [c.idx, c.len]), [[0, cs], [1, 7]], 'a first commit within its size keeps every chunk whole')
    await commit({ ino: fresh2.ino, session: s, size: 3, chunks: [] })
    t.same((await m.call('chunks', { ino: fresh2.ino })).chunks.map((c) => [c.idx, c.len]), [[0, 3]], 'the next commit replaces and clips what the first one wrote')
    await m.call('release', { ino: fresh2.ino, session: s })
    const dir = await mkdir(ROOT_INO, uniq('cmd'))
    await t.rejects(commit({ ino: dir.ino, session: s, size: 1, chunks: [] }), code('EISDIR'))
    await t.rejects(commit({ ino: 999999, session: s, size: 1, chunks: [] }), code('ENOENT'))
    await t.rejects(commit({ ino: f.ino, session: s, size: 1, chunks: [{ idx: 0, hash: hash(1), len: 5 * 1024 * 1024, nodes: [] }] }), code('EINVAL'))
  })

  t.test('slices: conditional appends, compaction, clip, references (docs/data-node.md#appends-slices-and-compaction)', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('sl'))
    const s = uniq('sess')
    const before = await blocksNow()
    await commit({ ino: f.ino, session: s, size: 100, chunks: [{ idx: 0, hash: hash(201), len: 100, nodes: ['a'] }] })
    const append = (h: number, at: number, last: number, len = 10) =>
      commit({ ino: f.ino, session: s, size: at + len, chunks: [{ idx: 0, hash: hash(h), len, nodes: ['b'], expect: { len: at, last: hash(last) }, append: true }] })
    await append(202, 100, 201)
    await append(203, 110, 202)
    const p = (await m.call('chunks', { ino: f.ino })).chunks
    t.same(p, [{ idx: 0, hash: hash(201), len: 100, nodes: ['a'], slices: [{ hash: hash(202), len: 10, nodes: ['b'] }, { hash: hash(203), len: 10, nodes: ['b'] }] }], 'base then slices in order, each with its replicas')
    t.equal(await blocksNow(), before + 3, 'each slice references its block')
    await t.rejects(append(204, 110, 202), code('EAGAIN'), 'an append to a chunk that moved on is refused')
    await t.rejects(append(204, 120, 202), code('EAGAIN'), 'the last block must match too')
    t.equal((await getattr(f.ino)).size, 120, 'a refused append changed nothing')
    await m.call('setattr', { ino: f.ino, size: 115 })
    t.same((await m.call('chunks', { ino: f.ino })).chunks[0]!.slices?.map((x) => x.len), [10, 5], 'truncate clips the slice across the cut')
    await m.call('setattr', { ino: f.ino, size: 105 })
    t.same((await m.call('chunks', { ino: f.ino })).chunks[0]!.slices?.map((x) => x.len), [5], 'and drops slices past it')
    t.equal(await blocksNow(), before + 2, 'a dropped slice gave up its reference')
    const mtime = (await getattr(f.ino)).mtime
    const compacted = await commit({ ino: f.ino, session: s, size: 105, chunks: [{ idx: 0, hash: hash(205), len: 105, nodes: ['a'], expect: { len: 105, last: hash(202) } }] })
    t.same(compacted.attr.mtime, mtime, 'a compaction keeps mtime')
    t.same((await m.call('chunks', { ino: f.ino })).chunks, [{ idx: 0, hash: hash(205), len: 105, nodes: ['a'] }], 'compaction: one block, no slices')
    t.equal(await blocksNow(), before + 1, 'the base and slice blocks gave up their references')
    await t.rejects(commit({ ino: f.ino, session: s, size: 105, chunks: [{ idx: 0, hash: hash(206), len: 105, nodes: ['a'], expect: { len: 105, last: hash(202) } }] }), code('EAGAIN'), 'a compaction of a chunk that changed is refused')
    await t.rejects(commit({ ino: f.ino, session: s, size: 5, chunks: [{ idx: 0, hash: hash(207), len: 5, nodes: ['a'], append: true }] }), code('EINVAL'), 'an append names what it extends')
    await t.rejects(commit({ ino: f.ino, session: s, size: 5, chunks: [{ idx: 1, hash: hash(207), len: 5, nodes: ['a'], expect: { len: 0, last: hash(1) }, append: true }] }), code('EAGAIN'), 'a hole cannot be appended to')
    await m.call('release', { ino: f.ino, session: s })
  })

  t.test('inline chunks: stored in meta, clipped, replaced by a block, refused when misused', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('in'))
    const s = uniq('sess')
    const bytes = Buffer.from('small file contents\n')
    await commit({ ino: f.ino, session: s, size: bytes.length, chunks: [{ idx: 0, hash: null, len: bytes.length, nodes: [], data: bytes }] })
    const opened = await m.call('open', { ino: f.ino, session: s })
    t.equal(opened.attr.size, bytes.length)
    t.same(opened.chunks.map((c) => [c.idx, c.hash, c.len]), [[0, null, bytes.length]])
    t.ok(Buffer.from(opened.chunks[0]!.data ?? []).equals(bytes), 'open returns the bytes')
    await m.call('setattr', { ino: f.ino, size: 5 })
    t.same(Buffer.from((await m.call('chunks', { ino: f.ino })).chunks[0]!.data ?? []).toString(), 'small', 'truncate clips inline bytes')
    const before = await blocksNow()
    await commit({ ino: f.ino, session: s, size: 200_000, chunks: [{ idx: 0, hash: hash(77), len: 200_000, nodes: ['a'] }] })
    const page = (await m.call('chunks', { ino: f.ino })).chunks
    t.same(page.map((c) => [c.idx, c.hash, c.data]), [[0, hash(77), undefined]], 'a block replaces the inline chunk')
    t.equal(await blocksNow(), before + 1)
    const one = (data: Buffer, len: number, extra: object = {}) => [{ idx: 0, hash: null, len, nodes: [], data, ...extra }]
    await t.rejects(commit({ ino: f.ino, session: s, size: 4, chunks: one(Buffer.from('abc'), 4) }), code('EINVAL'), 'len must match the bytes')
    await t.rejects(commit({ ino: f.ino, session: s, size: 3, chunks: one(Buffer.from('abc'), 3, { hash: hash(1) }) }), code('EINVAL'), 'bytes and a hash')
    await t.rejects(commit({ ino: f.ino, session: s, size: 10_000_000, chunks: one(Buffer.from('abc'), 3) }), code('EINVAL'), 'inline data in a big file')
    await t.rejects(commit({ ino: f.ino, session: s, size: 70_000, chunks: one(Buffer.alloc(70_000), 70_000) }), code('EBADMSG'), 'over 64 KiB of inline bytes')
    t.same((await m.call('chunks', { ino: f.ino })).chunks.map((c) => c.hash), [hash(77)], 'refused commits changed nothing')
    await m.call('release', { ino: f.ino, session: s })
  })

  t.test('open pages chunks; chunks paging', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('pg'))
    const s = uniq('sess')
    const chunks = Array.from({ length: 1000 }, (_, idx) => ({ idx, hash: hash(5000 + idx), len: 4 * 1024 * 1024, nodes: ['n1'] }))
    await commit({ ino: f.ino, session: s, size: 1000 * 4 * 1024 * 1024, chunks })
    await commit({ ino: f.ino, session: s, size: 1001 * 4 * 1024 * 1024, chunks: [{ idx: 1000, hash: hash(7000), len: 4 * 1024 * 1024, nodes: ['n1'] }] })
    const o = await m.call('open', { ino: f.ino, session: s })
    t.equal(o.attr.ino, f.ino)
    t.equal(o.chunks.length, 1000)
    t.equal(o.more, true)
    const rest = await m.call('chunks', { ino: f.ino, from: 1000 })
    t.same(rest.chunks.map((c) => c.idx), [1000])
    t.equal(rest.more, false)
    const p2 = await m.call('chunks', { ino: f.ino, from: 10, limit: 5 })
    t.same(p2.chunks.map((c) => c.idx), [10, 11, 12, 13, 14])
    t.equal(p2.more, true)
    await m.call('release', { ino: f.ino, session: s })
    await t.rejects(m.call('open', { ino: 999999, session: s }), code('ENOENT'))
  })

  t.test('link and unlink count links', async (t) => {
    const d = await mkdir(ROOT_INO, uniq('ln'))
    const f = await mkfile(d.ino, 'a')
    const l = (await m.call('link', { ino: f.ino, newParent: d.ino, newName: 'b' })).attr
    t.equal(l.nlink, 2)
    t.equal(l.ino, f.ino)
    t.equal((await m.call('lookup', { parent: d.ino, name: 'b' })).attr.ino, f.ino)
    await t.rejects(m.call('link', { ino: f.ino, newParent: d.ino, newName: 'a' }), code('EEXIST'))
    await t.rejects(m.call('link', { ino: d.ino, newParent: ROOT_INO, newName: uniq('dl') }), code('EPERM'))
    await t.rejects(m.call('link', { ino: f.ino, newParent: f.ino, newName: 'x' }), code('ENOTDIR'))
    await m.call('unlink', { parent: d.ino, name: 'a' })
    t.equal((await getattr(f.ino)).nlink, 1)
    await t.rejects(m.call('unlink', { parent: d.ino, name: 'a' }), code('ENOENT'))
    await m.call('unlink', { parent: d.ino, name: 'b' })
    await t.rejects(getattr(f.ino), code('ENOENT'), 'freed with the last link')
  })

  t.test('unlink and rmdir refusals', async (t) => {
    const dn = uniq('ur')
    const d = await mkdir(ROOT_INO, dn)
    await mkfile(d.ino, 'f')
    await t.rejects(m.call('unlink', { parent: ROOT_INO, name: dn }), code('EISDIR'))
    await t.rejects(m.call('rmdir', { parent: ROOT_INO, name: dn }), code('ENOTEMPTY'))
    await t.rejects(m.call('rmdir', { parent: d.ino, name: 'f' }), code('ENOTDIR'))
    await t.rejects(m.call('rmdir', { parent: d.ino, name: 'nope' }), code('ENOENT'))
    await t.rejects(m.call('rmdir', { parent: ROOT_INO, name: '.' }), code('EINVAL'))
    const rootNlink = (await getattr(ROOT_INO)).nlink
    await m.call('unlink', { parent: d.ino, name: 'f' })
    await m.call('rmdir', { parent: ROOT_INO, name: dn })
    t.equal((await getattr(ROOT_INO)).nlink, rootNlink - 1, 'parent nlink - 1')
    await t.rejects(getattr(d.ino), code('ENOENT'))
  })

  t.test('ahead: unlinks and rmdirs in order, each on its own, one invalidation and one remembered answer', async (t) => {
    const dn = uniq('rm')
    const d = await mkdir(ROOT_INO, dn)
    const sub = await mkdir(d.ino, 'sub')
    const kept = await mkdir(d.ino, 'kept')
    await mkfile(kept.ino, 'inside')
    for (const f of ['a', 'b', 'c']) await mkfile(d.ino, f)
    await mkfile(sub.ino, 'x')
    const inval = m.nc.subscribe(m.subjects.inval, { max: 1 })
    await m.nc.flush()
    const body = {
      rid: uniq('r'),
      items: [
        { op: 'unlink' as const, parent: d.ino, name: 'a' },
        { op: 'rmdir' as const, parent: d.ino, name: 'sub' }, // not empty yet
        { op: 'unlink' as const, parent: sub.ino, name: 'x' },
        { op: 'rmdir' as const, parent: d.ino, name: 'sub' }, // now it is
        { op: 'unlink' as const, parent: d.ino, name: 'nope' },
        { op: 'rmdir' as const, parent: d.ino, name: 'kept' },
        { op: 'unlink' as const, parent: d.ino, name: 'b' },
      ],
    }
    type Results = Array<{ dirs?: Attr[] } | { error: { code: string; message: string } }>
    const { results } = await request<{ results: Results }>(m.nc, m.subjects.meta('ahead'), body)
    t.same(results.map((r) => ('error' in r ? r.error.code : 'ok')), ['ok', 'ENOTEMPTY', 'ok', 'ok', 'ENOENT', 'ENOTEMPTY', 'ok'], 'each item answered in order')
    const last = results[6] as { dirs: Attr[] }
    t.equal(last.dirs[0]!.ino, d.ino, "an item's reply carries its parent's attributes")
    t.equal(last.dirs[0]!.nlink, 3, 'after the rmdir that stood: nlink 2 + kept')
    const names = (await m.call('readdir', { ino: d.ino })).entries.map((e) => e.name).sort()
    t.same(names, ['c', 'kept'], 'what stood is gone, what was refused is there')
    const again = await request<{ results: Results }>(m.nc, m.subjects.meta('ahead'), body)
    t.same(again.results, results, 'a repeated request id gets the first answers')
    for await (const msg of inval) {
      const got = decode(msg.data) as { inos: number[]; dirs: number[]; entries: Array<[number, string]> }
      t.same(got.entries, [[d.ino, 'a'], [sub.ino, 'x'], [d.ino, 'sub'], [d.ino, 'b']], 'one invalidation names every removed entry, none refused')
      t.ok(got.dirs.includes(d.ino) && got.dirs.includes(sub.ino), 'and the directories')
    }
    await t.rejects(request(m.nc, m.subjects.meta('ahead'), { rid: uniq('r'), items: [] }), code('EBADMSG'), 'an empty batch is refused')
  })

  t.test('inos: numbers reserved for a session, claimed once each, in increasing order, by mkdir', async (t) => {
    const session = uniq('s')
    await m.call('session', { session, ttlMs: 60_000 })
    await t.rejects(m.call('inos', { session: uniq('nobody'), count: 4 }), code('ESTALE'), 'no such session')
    const r = await m.call('inos', { session, count: 4 })
    t.equal(r.count, 4)
    const other = await m.call('mkdir', { parent: ROOT_INO, name: uniq('auto'), mode: 0o755, ...who })
    t.ok(other.attr.ino > r.first + 3, 'an ordinary mkdir gets a number past the reservation')
    const dn = uniq('res')
    const made = await m.call('mkdir', { parent: ROOT_INO, name: dn, mode: 0o755, ...who, ino: r.first + 1, session })
    t.equal(made.attr.ino, r.first + 1, 'mkdir takes the reserved number')
    t.equal((await m.call('lookup', { parent: ROOT_INO, name: dn })).attr.ino, r.first + 1)
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: uniq('x'), mode: 0o755, ...who, ino: r.first, session }), code('EINVAL'), 'a number below one used is gone')
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: uniq('x'), mode: 0o755, ...who, ino: r.first + 1, session }), code('EINVAL'), 'used once only')
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: uniq('x'), mode: 0o755, ...who, ino: other.attr.ino, session }), code('EINVAL'), 'not reserved')
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: dn, mode: 0o755, ...who, ino: r.first + 2, session }), code('EEXIST'))
    const again = await m.call('mkdir', { parent: ROOT_INO, name: uniq('y'), mode: 0o755, ...who, ino: r.first + 2, session })
    t.equal(again.attr.ino, r.first + 2, 'a refused mkdir did not use its number')
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: uniq('x'), mode: 0o755, ...who, ino: r.first + 3 }), code('EINVAL'), 'a number without its session')
    const next = await m.call('inos', { session, count: 2 })
    t.ok(next.first > other.attr.ino, 'a new reservation comes after everything handed out')
    await t.rejects(m.call('mkdir', { parent: ROOT_INO, name: uniq('x'), mode: 0o755, ...who, ino: r.first + 3, session }), code('EINVAL'), 'and replaces what was left')
    const batch = await request<{ results: Array<{ attr?: Attr } | { error: { code: string } }> }>(m.nc, m.subjects.meta('ahead'), {
      rid: uniq('r'),
      items: [
        { op: 'mkdir', parent: ROOT_INO, name: uniq('b'), mode: 0o700, ...who, ino: next.first, session },
        { op: 'mkdir', parent: ROOT_INO, name: dn, mode: 0o700, ...who, ino: next.first + 1, session },
        { op: 'rmdir', parent: ROOT_INO, name: dn },
      ],
    })
    t.same(batch.results.map((x) => ('error' in x ? x.error.code : (x.attr?.ino ?? 'ok'))), [next.first, 'EEXIST', 'ok'], 'mkdirs ride in ahead too')
    const more = await m.call('inos', { session, count: 2 })
    const fname = uniq('created')
    const files = await request<{ results: Array<{ attr?: Attr } | { error: { code: string } }> }>(m.nc, m.subjects.meta('ahead'), {
      rid: uniq('r'),
      items: [
        { op: 'mknod', parent: ROOT_INO, name: fname, mode: REG | 0o644, ...who, ino: more.first, session },
        { op: 'commit', ino: more.first, session, size: 3, chunks: [{ idx: 0, hash: null, len: 3, nodes: [], data: new Uint8Array([1, 2, 3]) }] },
        { op: 'commit', ino: more.first + 1, session, size: 1, chunks: [] },
      ],
    })
    t.same(files.results.map((x) => ('error' in x ? x.error.code : (x.attr?.ino ?? 'ok'))), [more.first, more.first, 'ENOENT'], 'a create and its commit ride together; a commit of a file never made fails')
    t.equal((await getattr(more.first)).size, 3, 'the commit stood')
    await t.rejects(m.call('mknod', { parent: ROOT_INO, name: uniq('x'), mode: REG | 0o644, ...who, ino: more.first + 1 }), code('EINVAL'), 'mknod: a number without its session')
  })

  t.test('symlink and readlink', async (t) => {
    const name = uniq('sl')
    const l = (await m.call('symlink', { parent: ROOT_INO, name, target: '../some/where', ...who })).attr
    t.equal(l.mode, LNK | 0o777)
    t.equal(l.size, '../some/where'.length)
    t.equal((await m.call('readlink', { ino: l.ino })).target, '../some/where')
    const f = await mkfile(ROOT_INO, uniq('nl'))
    await t.rejects(m.call('readlink', { ino: f.ino }), code('EINVAL'))
    await t.rejects(m.call('symlink', { parent: ROOT_INO, name, target: 'x', ...who }), code('EEXIST'))
    await t.rejects(m.call('symlink', { parent: ROOT_INO, name: uniq('sl'), target: 'x'.repeat(4096), ...who }), code('ENAMETOOLONG'))
  })

  t.test('setgid directories pass on their group', async (t) => {
    const d = await mkdir(ROOT_INO, uniq('sg'), 0o2775)
    t.equal(d.mode, DIR | 0o2775)
    await m.call('setattr', { ino: d.ino, gid: 4242 })
    const f = (await m.call('mknod', { parent: d.ino, name: 'f', mode: REG | 0o644, uid: 1, gid: 1 })).attr
    t.equal(f.gid, 4242, 'file takes the dir group')
    t.equal(f.mode & SGID, 0, 'files do not get S_ISGID')
    const sub = (await m.call('mkdir', { parent: d.ino, name: 'sub', mode: 0o755, uid: 1, gid: 1 })).attr
    t.equal(sub.gid, 4242)
    t.equal(sub.mode & SGID, SGID, 'subdirs inherit S_ISGID')
    const plain = await mkdir(ROOT_INO, uniq('nsg'))
    const g = (await m.call('mknod', { parent: plain.ino, name: 'f', mode: REG | 0o644, uid: 1, gid: 77 })).attr
    t.equal(g.gid, 77, 'without setgid the caller gid')
  })

  t.test('rename', async (t) => {
    const a = await mkdir(ROOT_INO, uniq('ra'))
    const b = await mkdir(ROOT_INO, uniq('rb'))
    const f = await mkfile(a.ino, 'f')
    const g = await mkfile(a.ino, 'g')
    const rn = (parent: number, name: string, newParent: number, newName: string, flags = 0) => m.call('rename', { parent, name, newParent, newName, flags })

    await rn(a.ino, 'f', a.ino, 'f2')
    t.equal((await m.call('lookup', { parent: a.ino, name: 'f2' })).attr.ino, f.ino, 'within a directory')
    await t.rejects(m.call('lookup', { parent: a.ino, name: 'f' }), code('ENOENT'))

    await rn(a.ino, 'f2', a.ino, 'g')
    t.equal((await m.call('lookup', { parent: a.ino, name: 'g' })).attr.ino, f.ino, 'over an existing file')
    await t.rejects(getattr(g.ino), code('ENOENT'), 'replaced file freed')

    await rn(a.ino, 'g', b.ino, 'moved')
    t.equal((await m.call('lookup', { parent: b.ino, name: 'moved' })).attr.ino, f.ino, 'across directories')

    // directories
    const sub = await mkdir(a.ino, 'sub')
    const aN = (await getattr(a.ino)).nlink
    const bN = (await getattr(b.ino)).nlink
    await rn(a.ino, 'sub', b.ino, 'sub')
    t.equal((await getattr(a.ino)).nlink, aN - 1, 'old parent loses a link')
    t.equal((await getattr(b.ino)).nlink, bN + 1, 'new parent gains a link')

    await mkdir(a.ino, 'empty')
    await rn(b.ino, 'sub', a.ino, 'empty')
    t.equal((await m.call('lookup', { parent: a.ino, name: 'empty' })).attr.ino, sub.ino, 'dir over an empty dir')
    t.equal((await getattr(a.ino)).nlink, aN, 'parent link count stays right')
    t.equal((await getattr(b.ino)).nlink, bN)

    const full = await mkdir(b.ino, 'full')
    await mkfile(full.ino, 'x')
    await t.rejects(rn(a.ino, 'empty', b.ino, 'full'), code('ENOTEMPTY'), 'dir over non-empty dir')
    const deep = await mkdir(sub.ino, 'deep')
    await t.rejects(rn(a.ino, 'empty', deep.ino, 'loop'), code('EINVAL'), 'dir into its own subtree')
    await t.rejects(rn(a.ino, 'empty', sub.ino, 'self'), code('EINVAL'), 'dir into itself')
    await t.rejects(rn(b.ino, 'moved', b.ino, 'full'), code('EISDIR'), 'file over dir')
    await t.rejects(rn(b.ino, 'full', b.ino, 'moved'), code('ENOTDIR'), 'dir over file')
    await t.rejects(rn(b.ino, 'nope', b.ino, 'x'), code('ENOENT'))
    await t.rejects(rn(b.ino, 'moved', f.ino, 'x'), code('ENOTDIR'), 'target parent not a dir')

    // same inode: no-op
    await m.call('link', { ino: f.ino, newParent: b.ino, newName: 'hard' })
    await rn(b.ino, 'moved', b.ino, 'hard')
    t.equal((await getattr(f.ino)).nlink, 2, 'rename onto a link of the same inode does nothing')
    t.equal((await m.call('lookup', { parent: b.ino, name: 'moved' })).attr.ino, f.ino)

    // flags
    await t.rejects(rn(b.ino, 'moved', b.ino, 'full', 1), code('EEXIST'), 'RENAME_NOREPLACE')
    await rn(b.ino, 'moved', b.ino, 'fresh', 1)
    t.equal((await m.call('lookup', { parent: b.ino, name: 'fresh' })).attr.ino, f.ino)
    const aBefore = (await getattr(a.ino)).nlink
    const bBefore = (await getattr(b.ino)).nlink
    await rn(b.ino, 'fresh', a.ino, 'empty', 2)
    t.equal((await m.call('lookup', { parent: a.ino, name: 'empty' })).attr.ino, f.ino, 'RENAME_EXCHANGE swaps')
    t.equal((await m.call('lookup', { parent: b.ino, name: 'fresh' })).attr.ino, sub.ino)
    t.equal((await getattr(a.ino)).nlink, aBefore - 1, 'exchange moves the dir link')
    t.equal((await getattr(b.ino)).nlink, bBefore + 1)
    await t.rejects(rn(b.ino, 'fresh', a.ino, 'absent', 2), code('ENOENT'))
    await t.rejects(rn(b.ino, 'fresh', a.ino, 'empty', 3), code('EINVAL'))
  })

  t.test('readdir pages by cursor in name order', async (t) => {
    const d = await mkdir(ROOT_INO, uniq('rd'))
    const names = Array.from({ length: 2500 }, (_, i) => `e${String(i).padStart(5, '0')}`)
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((n) => mkfile(d.ino, n)))
    }
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page: { entries: Array<{ name: string; attr: Attr }>; next: string | null } = await m.call('readdir', { ino: d.ino, cursor, limit: 700 })
      t.ok(page.entries.length <= 700)
      for (const e of page.entries) {
        seen.push(e.name)
        if (e.attr.mode !== (REG | 0o644)) t.fail(`attr of ${e.name}`)
      }
      cursor = page.next
      pages++
    } while (cursor !== null)
    t.equal(pages, 4)
    t.same(seen, names, 'every entry once, in order, no . or ..')
    const empty = await m.call('readdir', { ino: (await mkdir(ROOT_INO, uniq('re'))).ino })
    t.same([empty.entries, empty.next], [[], null])
    const f = await mkfile(ROOT_INO, uniq('rf'))
    await t.rejects(m.call('readdir', { ino: f.ino }), code('ENOTDIR'))
  })

  t.test('xattrs', async (t) => {
    const f = await mkfile(ROOT_INO, uniq('xa'))
    const v = (s: string) => Buffer.from(s)
    await t.rejects(m.call('getxattr', { ino: f.ino, name: 'user.a' }), code('ENODATA'))
    await m.call('setxattr', { ino: f.ino, name: 'user.a', value: v('1') })
    t.same(Buffer.from((await m.call('getxattr', { ino: f.ino, name: 'user.a' })).value), v('1'))
    await t.rejects(m.call('setxattr', { ino: f.ino, name: 'user.a', value: v('2'), flags: 1 }), code('EEXIST'), 'XATTR_CREATE')
    await t.rejects(m.call('setxattr', { ino: f.ino, name: 'user.b', value: v('2'), flags: 2 }), code('ENODATA'), 'XATTR_REPLACE')
    await m.call('setxattr', { ino: f.ino, name: 'user.a', value: v('3'), flags: 2 })
    await m.call('setxattr', { ino: f.ino, name: 'user.b', value: Buffer.alloc(0), flags: 1 })
    t.same(Buffer.from((await m.call('getxattr', { ino: f.ino, name: 'user.a' })).value), v('3'))
    t.same((await m.call('listxattr', { ino: f.ino })).names, ['user.a', 'user.b'])
    await m.call('removexattr', { ino: f.ino, name: 'user.a' })
    await t.rejects(m.call('removexattr', { ino: f.ino, name: 'user.a' }), code('ENODATA'))
    t.same((await m.call('listxattr', { ino: f.ino })).names, ['user.b'])
    await t.rejects(m.call('setxattr', { ino: f.ino, name: 'u'.repeat(256), value: v('x') }), code('ERANGE'))
    await t.rejects(m.call('setxattr', { ino: f.ino, name: 'user.big', value: Buffer.alloc(65537) }), code('E2BIG'))
    await m.call('setxattr', { ino: f.ino, name: 'user.max', value: Buffer.alloc(65536, 7) })
    t.equal((await m.call('getxattr', { ino: f.ino, name: 'user.max' })).value.length, 65536)
    await t.rejects(m.call('listxattr', { ino: 999999 }), code('ENOENT'))
  })

  t.test('an unlinked file lives while open', async (t) => {
    const name = uniq('uo')
    const f = await mkfile(ROOT_INO, name)
    const s = uniq('sess')
    await m.call('session', { session: s, ttlMs: 60_000, host: 'test' })
    await commit({ ino: f.ino, session: s, size: 5, chunks: [{ idx: 0, hash: hash(42), len: 5, nodes: ['n'] }] })
    await m.call('open', { ino: f.ino, session: s })
    await m.call('unlink', { parent: ROOT_INO, name })
    await t.rejects(m.call('lookup', { parent: ROOT_INO, name }), code('ENOENT'))
    const a = await getattr(f.ino)
    t.equal(a.nlink, 0, 'still there by ino')
    t.equal(a.size, 5)
    await commit({ ino: f.ino, session: s, size: 6, chunks: [{ idx: 0, hash: hash(43), len: 6, nodes: ['n'] }] })
    t.equal((await getattr(f.ino)).size, 6, 'still writable')
    t.equal((await m.call('status', {})).openFiles >= 1, true)
    await m.call('release', { ino: f.ino, session: s })
    await t.rejects(getattr(f.ino), code('ENOENT'), 'gone after the last release')
  })

  t.test('session end and expiry release open files', async (t) => {
    const s1 = uniq('sess')
    const f1 = await mkfile(ROOT_INO, uniq('se'))
    await m.call('session', { session: s1, ttlMs: 60_000 })
    await m.call('open', { ino: f1.ino, session: s1 })
    await m.call('open', { ino: f1.ino, session: s1 })
    await m.call('unlink', { parent: ROOT_INO, name: `se-${seq - 1}` })
    await m.call('release', { ino: f1.ino, session: s1 })
    t.equal((await getattr(f1.ino)).nlink, 0, 'one open left')
    await m.call('sessionEnd', { session: s1 })
    await t.rejects(getattr(f1.ino), code('ENOENT'), 'session end released it')

    const s2 = uniq('sess')
    const n2 = uniq('ex')
    const f2 = await mkfile(ROOT_INO, n2)
    await m.call('session', { session: s2, ttlMs: 1000 })
    await m.call('open', { ino: f2.ino, session: s2 })
    await m.call('unlink', { parent: ROOT_INO, name: n2 })
    t.equal((await getattr(f2.ino)).nlink, 0)
    const until = Date.now() + 10_000
    let gone = false
    while (!gone && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200))
      gone = await getattr(f2.ino).then(() => false, () => true)
    }
    t.ok(gone, 'expired session released its open file')
  })

  t.test('statfs and status', async (t) => {
    const st = await m.call('statfs', {})
    t.equal(st.bsize, 4096)
    t.equal(st.namemax, 255)
    t.equal(st.blocks, 0, 'no data nodes, no space')
    t.ok(st.files > 0 && st.ffree < st.files)
    const s = await m.call('status', {})
    t.ok(s.metaId.startsWith('meta-'))
    t.same(s.nodes, [])
    t.ok(s.inodes > 1)
    t.equal(s.underReplicated, s.blocks, 'with no live node every block is under-replicated')
  })

  t.test('a repeated request id gets the first answer', async (t) => {
    const name = uniq('rid')
    const body = { rid: uniq('r'), parent: ROOT_INO, name, mode: 0o755, ...who }
    const first = await request<{ attr: Attr }>(m.nc, m.subjects.meta('mkdir'), body)
    const again = await request<{ attr: Attr }>(m.nc, m.subjects.meta('mkdir'), body)
    t.same(again, first, 'not applied twice')
    await t.rejects(request(m.nc, m.subjects.meta('mkdir'), { ...body, rid: uniq('r') }), code('EEXIST'), 'a new rid runs again')
    const linkBody = { rid: uniq('r'), ino: first.attr.ino, newParent: ROOT_INO, newName: uniq('x') }
    await t.rejects(request(m.nc, m.subjects.meta('link'), linkBody), code('EPERM'))
    await t.rejects(request(m.nc, m.subjects.meta('link'), linkBody), code('EPERM'), 'errors are remembered too')
  })

  t.test('mutations publish invalidations', async (t) => {
    const sub = m.nc.subscribe(m.subjects.inval)
    const got: Array<{ inos: number[]; dirs: number[]; entries?: Array<[number, string]> }> = []
    const done = (async () => {
      for await (const msg of sub) {
        got.push(decode(msg.data) as { inos: number[]; dirs: number[] })
        if (got.length === 3) break
      }
    })()
    await m.nc.flush()
    const name = uniq('iv')
    const d = await mkdir(ROOT_INO, name)
    await m.call('setattr', { ino: d.ino, mode: 0o700 })
    await m.call('rmdir', { parent: ROOT_INO, name })
    await done
    t.ok(got[0]!.dirs.includes(ROOT_INO), 'mkdir invalidates the parent directory')
    t.equal(got[0]!.entries, undefined, 'a new name invalidates no entry (misses are not cached)')
    t.ok(got[1]!.inos.includes(d.ino), 'setattr invalidates the inode')
    t.same(got[2]!.entries, [[ROOT_INO, name]], 'rmdir names the removed entry')
  })

  t.test("a mutation's invalidation reaches its client before the reply (meta sends both in one write)", async (t) => {
    const heard: string[] = []
    const sub = m.nc.subscribe(m.subjects.inval, {
      callback: (_err, msg) => {
        const inv = decode(msg.data) as { entries?: Array<[number, string]> }
        for (const [, n] of inv.entries ?? []) heard.push(n)
      },
    })
    t.teardown(() => sub.unsubscribe())
    await m.nc.flush()
    for (let i = 0; i < 20; i++) {
      const name = uniq('order')
      await mkdir(ROOT_INO, name)
      await m.call('rmdir', { parent: ROOT_INO, name })
      t.ok(heard.includes(name), `rmdir ${i}: invalidation heard when the reply came`)
    }
  })
})
