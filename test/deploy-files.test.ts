/**
 * The shipped deployment files, checked by the tools that consume them:
 * `systemd-analyze verify` on tools/systemd's units (and on the units that
 * systemd-fstab-generator makes from tools/systemd/fstab.example), and
 * `docker-compose config -q` on compose.yml alone and with the test override.
 * Each check is first shown to fail on a broken copy, so a pass means something.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import t from 'tap'

const REPO = resolve(__dirname, '..', '..')
const SYSTEMD_DIR = join(REPO, 'tools', 'systemd')
const GENERATOR = '/lib/systemd/system-generators/systemd-fstab-generator'
const COMPOSE = '/usr/bin/docker-compose'
const ci = process.env.CI === 'true'

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, cwd: REPO, timeout: 60_000 })
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() }
}

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0
}

/** verify prints warnings (unknown keys, ...) but still exits 0: both must be clean. */
function verify(dir: string, units: string[]) {
  return run('systemd-analyze', ['verify', ...units.map((u) => join(dir, u))], { ...process.env, SYSTEMD_LOG_COLOR: '0' })
}

t.test('systemd-analyze verify accepts the shipped .mount and .automount', { skip: !ci && !has('systemd-analyze') ? 'systemd-analyze not installed (apt-get install systemd)' : false }, async (t) => {
  const units = readdirSync(SYSTEMD_DIR).filter((f) => /\.(mount|automount)$/.test(f)).sort()
  t.same(units, ['mnt-berth.automount', 'mnt-berth.mount'])
  const ok = verify(SYSTEMD_DIR, units)
  t.equal(ok.code, 0, 'exit 0')
  t.equal(ok.out, '', 'no warnings')

  // the same check on broken copies: a misspelt key, a unit name that does not match Where=
  const bad = join(t.testdir(), 'bad')
  mkdirSync(bad)
  writeFileSync(join(bad, 'mnt-berth.mount'), readFileSync(join(SYSTEMD_DIR, 'mnt-berth.mount'), 'utf8').replace('Type=', 'Tpye='))
  const typo = verify(bad, ['mnt-berth.mount'])
  t.match(typo.out, /Unknown key 'Tpye'/, 'a misspelt key is reported')
  copyFileSync(join(SYSTEMD_DIR, 'mnt-berth.mount'), join(bad, 'mnt-other.mount'))
  t.not(verify(bad, ['mnt-other.mount']).code, 0, 'a name that does not match Where= fails')
})

t.test('the fstab line becomes a remote automount through systemd-fstab-generator', { skip: !ci && !existsSync(GENERATOR) ? 'systemd-fstab-generator not installed' : false }, async (t) => {
  const out = t.testdir()
  const r = run(GENERATOR, [out, out, out], { ...process.env, SYSTEMD_FSTAB: join(SYSTEMD_DIR, 'fstab.example'), SYSTEMD_LOG_LEVEL: 'warning' })
  t.equal(r.code, 0, `generator: ${r.out}`)
  t.ok(existsSync(join(out, 'remote-fs.target.requires', 'mnt-berth.automount')), 'an automount pulled in by remote-fs.target (_netdev, x-systemd.automount)')
  const mount = readFileSync(join(out, 'mnt-berth.mount'), 'utf8')
  t.match(mount, /^Type=fuse\.berth$/m)
  t.match(mount, /^What=nats:\/\/127\.0\.0\.1:4222$/m)
  t.match(mount, /credentials=\/etc\/berth\/client\.env/)
  const v = verify(out, ['mnt-berth.mount', 'mnt-berth.automount'])
  t.equal(v.code, 0, `generated units verify: ${v.out}`)
})

t.test('docker-compose config -q: compose.yml, and with the test override', { skip: !ci && !existsSync(COMPOSE) ? 'docker-compose not installed (apt-get install docker-compose)' : false }, async (t) => {
  const example = join(REPO, 'compose.example.env')
  const base = ['-f', 'compose.yml', '--env-file', example, '--project-directory', REPO]
  const alone = run(COMPOSE, [...base, 'config', '-q'])
  t.equal(alone.code, 0, `compose.yml: ${alone.out}`)
  const env = join(t.testdir(), 'test.env')
  writeFileSync(env, `${readFileSync(example, 'utf8')}\nBERTH_TEST_NATS_PORT=14222\nBERTH_TEST_NATS_HTTP_PORT=18222\n`)
  const withOverride = run(COMPOSE, ['-f', 'compose.yml', '-f', 'test/compose/host-network.yml', '--env-file', env, '--project-directory', REPO, 'config', '-q'])
  t.equal(withOverride.code, 0, `compose.yml + host-network.yml: ${withOverride.out}`)

  // the services really end up on the host network only with the override
  const merged = run(COMPOSE, ['-f', 'compose.yml', '-f', 'test/compose/host-network.yml', '--env-file', env, '--project-directory', REPO, 'config'])
  t.equal((merged.out.match(/network_mode: host/g) ?? []).length, 3, 'override: nats, meta and data on the host network')
  const plain = run(COMPOSE, [...base, 'config'])
  t.notMatch(plain.out, /network_mode/, 'compose.yml itself keeps normal networks')

  // and a missing secret is refused with the message compose.yml gives
  const noSecret = join(t.testdir(), 'nosecret.env')
  writeFileSync(noSecret, readFileSync(example, 'utf8').replace(/^BERTH_SECRET=.*$/m, ''))
  const refused = run(COMPOSE, ['-f', 'compose.yml', '--env-file', noSecret, '--project-directory', REPO, 'config', '-q'])
  t.not(refused.code, 0, 'no BERTH_SECRET: refused')
  t.match(refused.out, /BERTH_SECRET/)
})
