/**
 * Names are bytes, as on a local disk (docs/semantics.md#names): a name,
 * symlink target or xattr name that is not UTF-8 is stored and comes back
 * byte for byte. Before, the binding refused such names with EILSEQ (meta
 * keeps names as text), so `tar x` of an old Latin-1 archive, or an rsync of
 * such a tree, failed. The binding now writes each such byte as an escape
 * (client/native/berth-fuse.c name_str), and U+F700 itself, the escape, still
 * round-trips.
 *
 * test/helpers/raw-names.py runs the same operations on a local directory
 * (ext4 under /var/tmp) and on the mount; every line it prints must be equal.
 */
import { spawnSync } from 'node:child_process'
import { linkSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { kernelBytes, validateName } from '../common/names'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { PYTHON3 } from './helpers/python'

const SCRIPT = join(__dirname, '..', '..', 'test', 'helpers', 'raw-names.py')

function probe(dir: string): string[] {
  const r = spawnSync(PYTHON3, [SCRIPT, dir], { encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`raw-names.py ${dir}: ${r.stderr}`)
  return r.stdout.trim().split('\n')
}

/** A path whose last component is raw bytes (Node passes Buffer paths through as they are). */
const raw = (dir: string, ...bytes: number[]) => Buffer.concat([Buffer.from(dir + '/'), Buffer.from(bytes)])
const names = (dir: string | Buffer) => (readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('hex')).sort()

t.test('names, symlink targets and xattr names that are not UTF-8, or hold the escape: as on a local disk', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const local = mkdtempSync('/var/tmp/berth-raw-names-')
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  const want = probe(local)
  const got = probe(m.dir)
  t.ok(want.length > 60, `${want.length} lines from the local directory`)
  t.same(got, want, 'every line equal to the local directory\'s')
  t.ok(want.includes('create 636166e9 ok') && want.includes('create 636166e8 ok'), 'Latin-1 "café" and "cafè" are two files')

  // a second mount lists the same bytes, and follows the first one's changes to such names
  // kernel entries kept an hour there: only the invalidation meta pushes can drop the name
  const m2 = await mountCluster(t, c, { args: ['-o', 'entry_timeout=3600,attr_timeout=3600'] })
  const d1 = join(m.dir, 'names')
  const d2 = join(m2.dir, 'names')
  t.same(names(d2), names(d1), 'the other mount lists the same bytes')
  // a second link keeps the inode alive: its attributes stay valid, so only the
  // entry invalidation (which must carry the name's bytes) can drop the name
  linkSync(raw(d1, 0xff), join(d1, 'other link'))
  statSync(raw(d2, 0xff))
  unlinkSync(raw(d1, 0xff))
  const gone = () => {
    try {
      statSync(raw(d2, 0xff))
      return false
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT'
    }
  }
  t.ok(await eventually(gone, 10_000, 20), 'an unlink of one of two links on one mount: the other mount\'s kernel forgets the name (the invalidation names its bytes)')
  t.equal(statSync(join(d2, 'other link')).nlink, 1, 'the other link stays')
  renameSync(raw(d1, 0x80), raw(d1, 0x63, 0x61, 0x66, 0xe7))
  t.ok(await eventually(() => names(d2).includes('636166e7') && !names(d2).includes('80'), 10_000, 20), 'a rename to such a name is seen by the other mount')
})

t.test('tar of a tree with Latin-1 names: extracted onto the mount, it compares equal', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  const local = mkdtempSync('/var/tmp/berth-raw-tar-')
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  const src = join(local, 'src')
  mkdirSync(src)
  mkdirSync(raw(src, 0x72, 0xe9, 0x70))
  for (let i = 0; i < 20; i++) writeFileSync(raw(src, 0x72, 0xe9, 0x70, 0x2f, 0x66, 0xe0 + i), `file ${i}\n`)
  writeFileSync(raw(src, 0xef, 0x9c, 0x80, 0xe9), 'escape then a raw byte\n')
  symlinkSync(Buffer.from([0x72, 0xe9, 0x70]), join(src, 'link'))
  const tarball = join(local, 'src.tar')
  t.equal(spawnSync('tar', ['cf', tarball, '-C', src, '.']).status, 0, 'tar cf of the local tree')
  const x = spawnSync('tar', ['xf', tarball, '-C', m.dir], { encoding: 'utf8' })
  t.equal(x.status, 0, `tar xf onto the mount ${x.stderr}`)
  const d = spawnSync('tar', ['df', tarball, '-C', m.dir], { encoding: 'utf8' })
  t.equal(d.status, 0, `tar df: no differences ${d.stdout}${d.stderr}`)
  t.same(names(m.dir), names(src), 'the same names at the top')
  t.same(names(raw(m.dir, 0x72, 0xe9, 0x70)), names(raw(src, 0x72, 0xe9, 0x70)), '20 Latin-1 names inside')
})

t.test('kernelBytes counts each escape as the bytes it stands for (NAME_MAX, PATH_MAX, a symlink\'s size)', async (t) => {
  t.equal(kernelBytes('café'), 5, 'UTF-8 as it is')
  t.equal(kernelBytes('caf\uf700\uf7e9'), 4, 'an escaped raw byte: one byte')
  t.equal(kernelBytes('\uf700\uf700'), 3, 'a doubled escape: one U+F700')
  t.equal(kernelBytes('\uf700x'), 4, 'a U+F700 kept as it is')
  t.equal(kernelBytes('\uf700\uf700\uf700\uf780'), 4, 'U+F700, then an escaped 0x80')
  t.equal(kernelBytes('\uf700'.repeat(3)), 9 - 3, 'three: a doubled one and a single one')
  t.doesNotThrow(() => validateName('\uf700\uf7ff'.repeat(255)), '255 escaped bytes fit NAME_MAX')
  t.throws(() => validateName('\uf700\uf7ff'.repeat(256)), { code: 'ENAMETOOLONG' }, '256 do not')
})
