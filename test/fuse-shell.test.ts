// Shell tools on the mount behave as on a local disk (docs/semantics.md#reads,
// #writes, #directories, #permissions).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const sh = (cmd: string, cwd?: string): string => execFileSync('bash', ['-c', `set -euo pipefail; ${cmd}`], { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
const ROOT = resolve(__dirname, '..', '..')
// type, mode, size (not for directories: their size is the filesystem's own business) and path
const LIST = "find . \\( -type d -printf '%y %m - %p\\n' \\) -o -printf '%y %m %s %p\\n' | sort"
// 64 MiB is 16 chunks: the copy in and out crosses chunk ends as 256 MiB did;
// that one took 9.8 s of the file's 41.6 s in a full run (BERTH_SHELL_MB=256)
const BIG_MB = Number(process.env.BERTH_SHELL_MB ?? 64)

t.test('shell tools', async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  // allow_other: the unprivileged subtest runs the tools as uid 65534
  const m = await mountCluster(t, c, { args: ['-o', 'allow_other'] })
  const local = mkdtempSync(join(tmpdir(), 'berth-local-'))
  t.teardown(() => rmSync(local, { recursive: true, force: true }))

  await t.test(`cp a ${BIG_MB} MiB file in and out: identical SHA-256`, async (t) => {
    sh(`head -c ${BIG_MB * 1024 * 1024} /dev/urandom > ${local}/big`)
    sh(`cp ${local}/big ${m.dir}/big && cp ${m.dir}/big ${local}/big.out`)
    const [a, b, inMount] = sh(`sha256sum ${local}/big ${local}/big.out ${m.dir}/big | cut -d' ' -f1`).trim().split('\n')
    t.equal(b, a, 'copied out')
    t.equal(inMount, a, 'read in place')
    t.equal(sh(`stat -c %s ${m.dir}/big`).trim(), String(BIG_MB * 1024 * 1024))
    sh(`rm ${m.dir}/big ${local}/big ${local}/big.out`)
  })

  await t.test('dd with 4 KiB and 1 MiB blocks round-trips', async (t) => {
    sh(`head -c ${20 * 1024 * 1024 + 777} /dev/urandom > ${local}/dd.src`)
    for (const bs of ['4k', '1M']) {
      sh(`dd if=${local}/dd.src of=${m.dir}/dd.${bs} bs=${bs} status=none && dd if=${m.dir}/dd.${bs} of=${local}/dd.${bs} bs=${bs} status=none`)
      t.equal(sh(`cmp ${local}/dd.src ${local}/dd.${bs} && echo same`).trim(), 'same', `bs=${bs}`)
    }
    // partial overwrite in the middle of a chunk (read-modify-write), conv=notrunc
    sh(`printf 'HELLO' | dd of=${m.dir}/dd.1M bs=1 seek=5000000 conv=notrunc status=none`)
    sh(`printf 'HELLO' | dd of=${local}/dd.src bs=1 seek=5000000 conv=notrunc status=none`)
    t.equal(sh(`cmp ${local}/dd.src ${m.dir}/dd.1M && echo same`).trim(), 'same', 'overwrite inside a chunk')
  })

  await t.test('tar extract of a real source tree, diff -r and find | wc -l match', async (t) => {
    const src = join(local, 'src')
    sh(`mkdir -p ${src} && cp -a ${ROOT}/node_modules/@tapjs ${ROOT}/node_modules/zod ${ROOT}/node_modules/typescript ${src}/`)
    sh(`cd ${src} && ln -s zod/package.json link-to-file && ln -s typescript link-to-dir && ln -s /nonexistent dangling && mkdir -p deep/a/b/c && ln -s ../../../../zod deep/a/b/c/up`)
    sh(`tar -C ${local} -cf ${local}/src.tar src`)
    sh(`tar -C ${m.dir} -xf ${local}/src.tar`)
    const count = Number(sh(`cd ${local} && find src | wc -l`).trim())
    t.ok(count > 2500, `tree has ${count} entries`)
    t.equal(sh(`cd ${m.dir} && find src | wc -l`).trim(), String(count), 'find | wc -l matches')
    t.equal(sh(`diff -r --no-dereference ${src} ${m.dir}/src && echo none`).trim(), 'none', 'diff -r shows nothing')
    t.equal(sh(`readlink ${m.dir}/src/dangling`).trim(), '/nonexistent')
    t.equal(sh(`cat ${m.dir}/src/deep/a/b/c/up/package.json | head -c 1`), '{', 'relative symlink resolves')
    t.equal(sh(`cd ${src} && ${LIST}`), sh(`cd ${m.dir}/src && ${LIST}`), 'types, modes and sizes match')
  })

  await t.test('git and an editor work on the mount', async (t) => {
    const g = join(m.dir, 'repo')
    const git = 'git -c user.email=t@example.invalid -c user.name=t -c init.defaultBranch=main'
    sh(`mkdir ${g} && cp -r ${ROOT}/common ${ROOT}/meta ${g}/ && cd ${g} && ${git} init -q . && ${git} add -A && ${git} commit -qm one`)
    sh(`cd ${g} && echo '// edited' >> common/wire.ts && ${git} commit -qam two`)
    t.equal(sh(`cd ${g} && ${git} log --oneline | wc -l`).trim(), '2', 'two commits')
    t.equal(sh(`cd ${g} && ${git} status --porcelain`), '', 'clean work tree')
    sh(`cd ${g} && ${git} fsck --strict && ${git} gc -q && ${git} fsck --strict`)
    sh(`${git} clone -q ${g} ${m.dir}/clone`)
    t.equal(sh(`diff -r --exclude=.git ${g} ${m.dir}/clone && echo same`).trim(), 'same', 'a clone on the mount matches')
    // vim writes through a swap file and a backup rename, as editors do
    // (.ci/run installs vim; elsewhere the step is skipped, visibly)
    if (sh('command -v vim || true').trim() === '') t.comment('vim is not installed: editor step skipped')
    else {
      sh(`cd ${g} && vim -u NONE -i NONE -n -es -c '%s/edited/changed by vim/' -c 'wq' common/wire.ts`)
      t.match(sh(`tail -n 1 ${g}/common/wire.ts`), /changed by vim/, 'vim saved the edit')
      t.equal(sh(`cd ${g} && ${git} diff --stat | tail -n 1`).trim(), '1 file changed, 1 insertion(+), 1 deletion(-)', 'git sees exactly that edit')
    }
    sh(`rm -rf ${g} ${m.dir}/clone`)
  })

  await t.test('coreutils behave as on a local disk', async (t) => {
    // the same script in both places; its output must be identical
    const script = [
      'umask 022',
      'mkdir -p w/x/y/z',
      'echo hello > w/f',
      'cp -a w w2',
      'mv w2/f w2/g',
      'ln w/f w/hard',
      'ln -s f w/soft',
      'chmod 640 w/f',
      'chmod 755 w/x',
      'chown 12345:23456 w/x/y',
      'truncate -s 100000 w/sparse',
      'truncate -s 10 w/hard',
      'echo more >> w/f',
      // after the last write to w/f, so the times printed below are fixed
      "touch -d '2001-02-03 04:05:06' w/f",
      // ls's "total" line counts allocated blocks, which differ between any two filesystems
      "ls -l --time-style=+%s w | tail -n +2 | awk '{print $1, $2, $3, $4, $5, $9, $10, $11}'",
      "stat -c '%F %a %h %s %u %g' w/f w/hard w/soft w/sparse w/x/y w2/g",
      "stat -c '%n %Y %X' w/f w/hard",
      'cat w/f w/soft | od -c | head -5',
      'cat w/sparse | od -c | tail -3',
      'rm -r w2',
      'ls -a w',
      'rm -r w/x',
      'ls w',
    ].join('\n')
    const run = (dir: string) => execFileSync('bash', ['-c', `set -euo pipefail\n${script}`], { cwd: dir, encoding: 'utf8' })
    const ldir = join(local, 'cmp')
    sh(`mkdir -p ${ldir} ${m.dir}/cmp`)
    const expected = run(ldir)
    const got = run(join(m.dir, 'cmp'))
    t.equal(got, expected)

    // The same tools as an unprivileged user (setpriv to uid/gid 65534, no
    // groups): everything but the chown, plus cp/tar/dd of real bytes.
    const asNobody = script.replace(/^chown .*$/m, 'true').replace('stat -c \'%F %a %h %s %u %g\'', 'stat -c \'%F %a %h %s\'') + '\n' +
      ['head -c 3000000 /dev/urandom > r.bin', 'cp r.bin r2.bin && cmp r.bin r2.bin', 'dd if=r.bin of=r3.bin bs=4k status=none && cmp r.bin r3.bin',
       'tar -cf t.tar w && mkdir u && tar -C u -xf t.tar && diff -r w u/w && echo tar-ok', 'mv r2.bin r4.bin && ln r4.bin r5.bin && stat -c %h r5.bin',
       'chmod 600 r5.bin && stat -c %a r4.bin', 'rm -r u r.bin r3.bin r4.bin r5.bin t.tar w && ls -A'].join('\n')
    const runAs = (dir: string) =>
      execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', '-c', `set -euo pipefail\n${asNobody}`], { cwd: dir, encoding: 'utf8' })
    sh(`mkdir -p ${local}/nobody ${m.dir}/nobody && chown 65534:65534 ${local}/nobody ${m.dir}/nobody && chmod 755 ${local}`)
    const expectedNobody = runAs(join(local, 'nobody'))
    t.match(expectedNobody, /tar-ok/, 'the unprivileged script runs to the end locally')
    t.equal(runAs(join(m.dir, 'nobody')), expectedNobody, 'as uid 65534: same output as on a local disk')
  })
})
