/**
 * POSIX ACLs as on a local disk (docs/semantics.md#acls): setfacl/getfacl,
 * the mode and the mask kept in step both ways, default ACLs inherited by new
 * files and directories (the umask ignored under them, applied elsewhere),
 * and the kernel enforcing them for another user. test/helpers/acl-seq.sh
 * runs the same commands in a local directory (ext4 under /var/tmp) and on
 * the mount; every line it prints must be equal. Before, every ACL call gave
 * ENOTSUP.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ACL_ACCESS, ACL_DEFAULT, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, serializeAcl } from '../common/acl'
import type { MetaClient } from '../common/meta-client'
import { ROOT_INO } from '../common/protocol'
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'
import { PYTHON3 } from './helpers/python'

const SCRIPT = join(__dirname, '..', '..', 'test', 'helpers', 'acl-seq.sh')

function missing(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (su to nobody)'
  if (spawnSync('setfacl', ['--version']).status !== 0) return "needs setfacl/getfacl (Debian's acl package)"
  return false
}

function sh(cmd: string, cwd?: string): { status: number | null; out: string } {
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

/** As the unprivileged user `nobody`: the kernel's permission checks apply. */
const asNobody = (cmd: string) => sh(`su -s /bin/sh nobody -c '${cmd}'`)

function run(dir: string): string[] {
  const r = spawnSync('bash', [SCRIPT], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PYTHON3 } })
  if (r.status !== 0) throw new Error(`acl-seq.sh in ${dir}: ${r.stderr}`)
  return `${r.stdout}${r.stderr}`.trim().split('\n')
}

t.test('setfacl, getfacl, inheritance and enforcement: as on a local disk', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c, { args: ['-o', 'acl,allow_other'] })
  const local = mkdtempSync('/var/tmp/berth-acl-')
  t.teardown(() => rmSync(local, { recursive: true, force: true }))
  mkdirSync(join(local, 'acl'), { mode: 0o755 })
  mkdirSync(join(m.dir, 'acl'), { mode: 0o755 })
  const want = run(join(local, 'acl'))
  const got = run(join(m.dir, 'acl'))
  t.ok(want.length > 100, `${want.length} lines from the local directory`)
  t.same(got, want, "every line equal to the local directory's")
  t.ok(want.includes('user:65534:rwx\t#effective:r--'), 'chmod 640 narrowed the mask under a named entry')
  t.ok(want.includes('hi'), 'a named-user entry let nobody read a mode 600 file')
  // the kernel forgets every inode and its cached ACL: they come back from meta (the binding's table of inodes with ACLs refilled by lookups)
  const tree = (dir: string) => sh('sync; echo 3 > /proc/sys/vm/drop_caches; find . | sort | xargs getfacl -n', dir).out
  t.same(tree(join(m.dir, 'acl')), tree(join(local, 'acl')), 'getfacl -R after dropping the kernel caches: the same')
})

t.test('an ACL set on one mount holds on another at once, not after the attribute timeout', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const a = await mountCluster(t, c, { args: ['-o', 'acl,allow_other'] })
  // the other mount's kernel keeps attributes and entries an hour: only meta's invalidation can change its answer
  const b = await mountCluster(t, c, { args: ['-o', 'acl,allow_other,entry_timeout=3600,attr_timeout=3600'] })
  writeFileSync(join(a.dir, 'secret'), 'for nobody\n', { mode: 0o600 })
  const onB = join(b.dir, 'secret')
  t.match(asNobody(`cat ${onB}`).out, /Permission denied/, 'mode 600: nobody is refused on the other mount')
  t.equal(sh(`setfacl -m u:nobody:r ${join(a.dir, 'secret')}`).status, 0, 'setfacl -m u:nobody:r on the first mount')
  t.ok(await eventually(() => asNobody(`cat ${onB}`).out === 'for nobody\n', 10_000, 50), 'nobody reads it on the other mount')
  t.equal(sh(`setfacl -x u:nobody ${join(a.dir, 'secret')}`).status, 0, 'setfacl -x u:nobody on the first mount')
  t.ok(await eventually(() => /Permission denied/.test(asNobody(`cat ${onB}`).out), 10_000, 50), 'and is refused there again')
  t.match(sh(`getfacl -n ${onB}`).out, /mask::---/, 'the other mount reads the ACL as it is now')
})

t.test("the binding's table of inodes with ACLs full: JS answers every ACL question, still exactly", { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  process.env.BERTH_ACL_TABLE_MAX = '3'
  const m = await mountCluster(t, c, { args: ['-o', 'acl'] }).finally(() => delete process.env.BERTH_ACL_TABLE_MAX)
  const r = sh('for i in 1 2 3 4 5 6; do touch f$i; setfacl -m u:nobody:r f$i; done; touch plain; sync; echo 3 > /proc/sys/vm/drop_caches; ' +
    'for i in 1 2 3 4 5 6; do getfacl -n f$i | grep -c "^user:65534:r--"; done; getfacl -n plain | grep -c "^user:65534"', m.dir)
  t.equal(r.out, '1\n1\n1\n1\n1\n1\n0\n', 'six files with an ACL past a table of three, and one without: each read right')
})

t.test('without -o acl: no ACLs, and the kernel applies the umask', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c)
  t.match(sh('setfacl -m u:nobody:r f', m.dir).out + sh('touch f && setfacl -m u:nobody:r f', m.dir).out, /Operation not supported/, 'setfacl: ENOTSUP')
  t.equal(sh('umask 027; touch g; mkdir h; stat -c %a g h', m.dir).out, '640\n750\n', 'umask 027: 640 and 750')
  t.match(sh('getfacl -n f', m.dir).out, /user::rw-\ngroup::r--\nother::r--/, 'getfacl shows the mode')
})

t.test('meta refuses a malformed ACL and changes nothing', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await c.metaClient()
  const f = (await m.call('mknod', { parent: ROOT_INO, name: 'f', mode: 0o100644, uid: 1, gid: 2 })).attr
  const d = (await m.call('mkdir', { parent: ROOT_INO, name: 'd', mode: 0o755, uid: 1, gid: 2 })).attr
  const base = [
    { tag: ACL_USER_OBJ, perm: 6, id: 0 },
    { tag: ACL_GROUP_OBJ, perm: 4, id: 0 },
    { tag: ACL_OTHER, perm: 4, id: 0 },
  ]
  const bad: Array<[string, Buffer]> = [
    ['a short value', Buffer.from([2, 0, 0])],
    ['version 1', Buffer.concat([Buffer.from([1, 0, 0, 0]), serializeAcl(base).subarray(4)])],
    ['a torn entry', Buffer.concat([serializeAcl(base), Buffer.from([1, 2, 3])])],
    ['no other::', serializeAcl(base.slice(0, 2))],
    ['a named user without a mask', serializeAcl([base[0]!, { tag: ACL_USER, perm: 7, id: 5 }, base[1]!, base[2]!])],
    ['entries out of order', serializeAcl([base[1]!, base[0]!, base[2]!])],
    ['a repeated named user', serializeAcl([base[0]!, { tag: ACL_USER, perm: 7, id: 5 }, { tag: ACL_USER, perm: 7, id: 5 }, base[1]!, { tag: ACL_MASK, perm: 7, id: 0 }, base[2]!])],
    ['perm 8', serializeAcl([{ ...base[0]!, perm: 8 }, base[1]!, base[2]!])],
    ['tag 0x40', serializeAcl([...base, { tag: 0x40, perm: 1, id: 0 }])],
  ]
  for (const [why, value] of bad) {
    await t.rejects(m.call('setxattr', { ino: f.ino, name: ACL_ACCESS, value: new Uint8Array(value) }), { code: 'EINVAL' }, `${why}: EINVAL`)
  }
  const named = serializeAcl([base[0]!, { tag: ACL_USER, perm: 7, id: 5 }, base[1]!, { tag: ACL_MASK, perm: 5, id: 0 }, base[2]!])
  await t.rejects(m.call('setxattr', { ino: f.ino, name: ACL_DEFAULT, value: new Uint8Array(named) }), { code: 'EACCES' }, 'a default ACL on a file: EACCES')
  const after = (await m.call('getattr', { ino: f.ino })).attr
  t.same([after.mode, after.acl, after.ctime], [f.mode, f.acl, f.ctime], 'the file is as it was: mode, no ACL, ctime')
  t.same((await m.call('listxattr', { ino: f.ino })).names, [], 'no xattr stored')
  // and a good one takes effect: the mask sets the group bits
  await m.call('setxattr', { ino: f.ino, name: ACL_ACCESS, value: new Uint8Array(named) })
  const set = (await m.call('getattr', { ino: f.ino })).attr
  t.same([set.mode & 0o777, set.acl], [0o654, 1], 'a valid ACL: mode 654 (mask r-x), the access bit')
  await m.call('setxattr', { ino: d.ino, name: ACL_DEFAULT, value: new Uint8Array(named) })
  const child = (await m.call('mknod', { parent: d.ino, name: 'c', mode: 0o100666, uid: 1, gid: 2, umask: 0o077 })).attr
  t.same([child.mode & 0o777, child.acl], [0o644, 1], 'created under the default ACL: the umask ignored, mode 644 from it, an access ACL')
  const plain = (await m.call('mknod', { parent: ROOT_INO, name: 'p', mode: 0o100666, uid: 1, gid: 2, umask: 0o027 })).attr
  t.same([plain.mode & 0o777, plain.acl], [0o640, undefined], 'no default ACL: the umask applies')
})

t.test('replicated meta: ACLs, and what they make of new files, survive kill -9 of the leader', { skip: missing(), timeout: 300_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 1, natsServers: 3, metaArgs: ['--ha', '--log-replicas', '3', '--lease-ttl-ms', '3000'] })
  const metas = [c.meta, await c.startMeta({ db: join(c.dir, 'meta2.db') })]
  const mc: MetaClient = await c.metaClient({ deadlineMs: 60_000 })
  const caughtUp = async () => {
    const replicas = (await mc.call('status', {})).replication?.replicas ?? []
    return replicas.length >= 2 && replicas.every((r) => r.lag <= 5)
  }
  t.ok(await eventually(caughtUp, 60_000, 500), 'two replicas report in')
  const m = await mountCluster(t, c, { args: ['-o', 'acl,allow_other'] })
  const setup = sh('chmod 755 . && echo secret > s && chmod 600 s && setfacl -m u:nobody:r s && mkdir d && setfacl -d -m u:nobody:rwx d && umask 077 && touch d/before', m.dir)
  t.equal(setup.status, 0, `setfacl on a file, a default ACL on a directory, a file created under it ${setup.out}`)
  const acls = () => sh('getfacl -n s d d/before', m.dir).out
  const before = acls()
  t.match(before, /user:65534:r--/, 'the ACLs are there')
  t.match(sh('getfacl -n -c d/before', m.dir).out, /^user:65534:rwx\t#effective:rw-$[^]*^mask::rw-$/m, 'a file created under the default ACL inherited it (mode 0666 masks it; the umask 077 does not)')
  t.ok(await eventually(caughtUp, 30_000, 200), 'the follower has applied them')
  const leader = (await mc.call('status', {})).metaId
  const victim = metas.find((x) => x.ready.metaId === leader)
  t.ok(victim, 'the leader is one of the two')
  await victim!.kill()
  t.ok(await eventually(async () => (await mc.call('status', {}).catch(() => null))?.metaId !== leader, 60_000, 250), 'the other replica leads')
  t.equal(acls(), before, 'getfacl after the failover: the same ACLs')
  t.equal(asNobody(`cat ${join(m.dir, 's')}`).out, 'secret\n', 'nobody still reads the file its entry grants')
  t.equal(sh('umask 077 && touch d/after && getfacl -n -c d/after', m.dir).out, sh('getfacl -n -c d/before', m.dir).out, 'a file created under the default ACL after the failover gets the same ACL (the umask ignored)')
})
