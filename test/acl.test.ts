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
import { startCluster } from './helpers/cluster'
import { eventually } from './helpers/lifecycle'
import { mountCluster } from './helpers/mount'

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
  const r = spawnSync('bash', [SCRIPT], { cwd: dir, encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`acl-seq.sh in ${dir}: ${r.stderr}`)
  return `${r.stdout}${r.stderr}`.trim().split('\n')
}

t.test('setfacl, getfacl, inheritance and enforcement: as on a local disk', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c, { args: ['-o', 'allow_other'] })
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
})

t.test('an ACL set on one mount holds on another at once, not after the attribute timeout', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const a = await mountCluster(t, c, { args: ['-o', 'allow_other'] })
  // the other mount's kernel keeps attributes and entries an hour: only meta's invalidation can change its answer
  const b = await mountCluster(t, c, { args: ['-o', 'allow_other,entry_timeout=3600,attr_timeout=3600'] })
  writeFileSync(join(a.dir, 'secret'), 'for nobody\n', { mode: 0o600 })
  const onB = join(b.dir, 'secret')
  t.match(asNobody(`cat ${onB}`).out, /Permission denied/, 'mode 600: nobody is refused on the other mount')
  t.equal(sh(`setfacl -m u:nobody:r ${join(a.dir, 'secret')}`).status, 0, 'setfacl -m u:nobody:r on the first mount')
  t.ok(await eventually(() => asNobody(`cat ${onB}`).out === 'for nobody\n', 10_000, 50), 'nobody reads it on the other mount')
  t.equal(sh(`setfacl -x u:nobody ${join(a.dir, 'secret')}`).status, 0, 'setfacl -x u:nobody on the first mount')
  t.ok(await eventually(() => /Permission denied/.test(asNobody(`cat ${onB}`).out), 10_000, 50), 'and is refused there again')
  t.match(sh(`getfacl -n ${onB}`).out, /mask::---/, 'the other mount reads the ACL as it is now')
})

t.test('-o noacl: no ACLs, and the kernel applies the umask', { skip: missing() }, async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  const m = await mountCluster(t, c, { args: ['-o', 'noacl'] })
  t.match(sh('setfacl -m u:nobody:r f', m.dir).out + sh('touch f && setfacl -m u:nobody:r f', m.dir).out, /Operation not supported/, 'setfacl: ENOTSUP')
  t.equal(sh('umask 027; touch g; mkdir h; stat -c %a g h', m.dir).out, '640\n750\n', 'umask 027: 640 and 750')
  t.match(sh('getfacl -n f', m.dir).out, /user::rw-\ngroup::r--\nother::r--/, 'getfacl shows the mode')
})
