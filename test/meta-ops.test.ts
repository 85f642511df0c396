/**
 * Conformance of every metadata operation against a real `berth meta` (no data
 * nodes): success paths and the errno of each refusal.
 */
import t from 'tap'
import type { Attr } from '../common/protocol'
import { ROOT_INO } from '../common/protocol'
import type { MetaClient } from '../common/meta-client'
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

let seq = 0
const uniq = (p: string) => `${p}-${seq++}`

t.test('metadata operations', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const m: MetaClient = await c.metaClient()
  const mkdir = (parent: number, name: string, mode = 0o755) => m.call('mkdir', { parent, name, mode, ...who }).then((r) => r.attr)
  const mkfile = (parent: number, name: string, mode = 0o644) => m.call('mknod', { parent, name, mode: REG | mode, ...who }).then((r) => r.attr)
  const getattr = (ino: number) => m.call('getattr', { ino }).then((r) => r.attr)
  const code = (code: string) => ({ code })

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
})
