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
import { unitCommand } from './helpers/unit-command'
import { testDir } from './helpers/test-dir'

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
  const bad = join(testDir(t), 'bad')
  mkdirSync(bad)
  writeFileSync(join(bad, 'mnt-berth.mount'), readFileSync(join(SYSTEMD_DIR, 'mnt-berth.mount'), 'utf8').replace('Type=', 'Tpye='))
  const typo = verify(bad, ['mnt-berth.mount'])
  t.match(typo.out, /Unknown key 'Tpye'/, 'a misspelt key is reported')
  copyFileSync(join(SYSTEMD_DIR, 'mnt-berth.mount'), join(bad, 'mnt-other.mount'))
  t.not(verify(bad, ['mnt-other.mount']).code, 0, 'a name that does not match Where= fails')
})

const SERVICES = ['berth-meta.service', 'berth-nats.service', 'berth-node.service']

/** The units with /usr/local/bin/berth pointing at this checkout (verify wants an executable there). */
function servicesHere(dir: string, edit: (text: string) => string = (x) => x): void {
  for (const u of SERVICES) writeFileSync(join(dir, u), edit(readFileSync(join(SYSTEMD_DIR, u), 'utf8').replaceAll('/usr/local/bin/berth', join(REPO, 'bin', 'berth.js'))))
}

t.test('systemd-analyze verify accepts the nats, meta and node services', { skip: !ci && !has('systemd-analyze') ? 'systemd-analyze not installed (apt-get install systemd)' : !existsSync('/usr/sbin/nats-server') ? 'nats-server not at /usr/sbin (apt-get install nats-server)' : false }, async (t) => {
  t.same(readdirSync(SYSTEMD_DIR).filter((f) => f.endsWith('.service')).sort(), SERVICES)
  const here = join(testDir(t), 'ok')
  mkdirSync(here)
  servicesHere(here)
  const ok = verify(here, SERVICES)
  t.equal(ok.code, 0, 'exit 0')
  t.equal(ok.out, '', 'no warnings')
  for (const u of SERVICES) t.match(readFileSync(join(SYSTEMD_DIR, u), 'utf8'), /^EnvironmentFile=\/etc\/berth\/\w+\.env$|^ExecStart=\/usr\/sbin\/nats-server -c \/etc\/berth\/nats\.conf$/m, `${u}: reads /etc/berth`)

  const bad = join(testDir(t), 'bad')
  mkdirSync(bad)
  servicesHere(bad, (x) => x.replace('RestartSec=', 'RestratSec='))
  t.match(verify(bad, ['berth-meta.service']).out, /Unknown key name 'RestratSec'|Unknown key 'RestratSec'/, 'a misspelt key is reported')
})

t.test("the services' command lines are ones berth accepts, with init-cluster's env files", async (t) => {
  const dir = testDir(t)
  const init = run(process.execPath, [join(REPO, 'bin', 'berth.js'), 'init-cluster', '--dir', join(dir, 'etc'), '--listen', '10.0.0.5'])
  t.equal(init.code, 0, init.out)
  // what an operator adds on a node host
  writeFileSync(join(dir, 'etc', 'node.env'), `${readFileSync(join(dir, 'etc', 'node.env'), 'utf8')}BERTH_NODE_ADVERTISE=http://10.0.0.6:7001\n`)
  const paths = (p: string) => p.replace('/etc/berth/', `${join(dir, 'etc')}/`).replace('/var/lib/berth/', `${join(dir, 'var')}/`).replace('/usr/local/bin/berth', join(REPO, 'bin', 'berth.js'))
  for (const [unit, role] of [['berth-meta.service', 'meta'], ['berth-node.service', 'node']] as const) {
    const cmd = unitCommand(join(SYSTEMD_DIR, unit), paths)
    t.equal(cmd.argv[1], role)
    t.equal(cmd.env.BERTH_NATS_USER, role, `${unit}: ${role} credentials from /etc/berth/${role}.env`)
    t.ok(cmd.env.BERTH_SECRET, `${unit}: the secret too`)
    // unknown flags fail before --help is looked at: exit 0 means every flag is known
    const r = run(process.execPath, [...cmd.argv, '--help'], { ...process.env, ...cmd.env })
    t.equal(r.code, 0, `${cmd.argv.slice(1).join(' ')}: flags accepted (${r.out.split('\n')[0]})`)
  }
  const node = unitCommand(join(SYSTEMD_DIR, 'berth-node.service'), paths)
  t.same(node.argv.slice(node.argv.indexOf('--listen'), node.argv.indexOf('--listen') + 4), ['--listen', '0.0.0.0:7001', '--advertise', 'http://10.0.0.6:7001'], 'listens on every address, advertises the one in node.env')
  const nats = unitCommand(join(SYSTEMD_DIR, 'berth-nats.service'), paths)
  t.match(readFileSync(nats.argv[2]!, 'utf8'), /^listen: 0\.0\.0\.0:4222$/m, 'nats-server reads the generated nats.conf')
})

t.test('the fstab line becomes a remote automount through systemd-fstab-generator', { skip: !ci && !existsSync(GENERATOR) ? 'systemd-fstab-generator not installed' : false }, async (t) => {
  const out = testDir(t)
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
  const env = join(testDir(t), 'test.env')
  const ports = [0, 1, 2].map((i) => `BERTH_TEST_NATS_PORT_${i}=${14222 + i}\nBERTH_TEST_NATS_HTTP_PORT_${i}=${18222 + i}\nBERTH_TEST_NATS_ROUTE_PORT_${i}=${16222 + i}\n`).join('')
  const urls = 'BERTH_TEST_NATS_URL=nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224\nBERTH_TEST_NATS_ROUTES=nats://127.0.0.1:16222,nats://127.0.0.1:16223,nats://127.0.0.1:16224\n'
  writeFileSync(env, `${readFileSync(example, 'utf8')}\n${ports}${urls}`)
  const withOverride = run(COMPOSE, ['-f', 'compose.yml', '-f', 'test/compose/host-network.yml', '--env-file', env, '--project-directory', REPO, 'config', '-q'])
  t.equal(withOverride.code, 0, `compose.yml + host-network.yml: ${withOverride.out}`)

  // the services really end up on the host network only with the override
  const merged = run(COMPOSE, ['-f', 'compose.yml', '-f', 'test/compose/host-network.yml', '--env-file', env, '--project-directory', REPO, 'config'])
  t.equal((merged.out.match(/network_mode: host/g) ?? []).length, 5, 'override: the three NATS servers, meta and data on the host network')
  const plain = run(COMPOSE, [...base, 'config'])
  t.notMatch(plain.out, /network_mode/, 'compose.yml itself keeps normal networks')

  // and a missing secret is refused with the message compose.yml gives
  const noSecret = join(testDir(t), 'nosecret.env')
  writeFileSync(noSecret, readFileSync(example, 'utf8').replace(/^BERTH_SECRET=.*$/m, ''))
  const refused = run(COMPOSE, ['-f', 'compose.yml', '--env-file', noSecret, '--project-directory', REPO, 'config', '-q'])
  t.not(refused.code, 0, 'no BERTH_SECRET: refused')
  t.match(refused.out, /BERTH_SECRET/)
})
