/**
 * `berth init-cluster`: the files docs/deploy.md installs, their modes, their
 * contents agreeing with each other, and no overwrite; `--listen` refusals of
 * init-cluster and `berth up` (which must be given an address others reach).
 * The files' use on separate hosts is test/multi-host.test.ts.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { readCredentialsFile } from '../common/credentials'
import { testDir } from './helpers/test-dir'

function berth(args: string[]) {
  const r = spawnSync(process.execPath, [BERTH_BIN, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

t.test('init-cluster writes nats.conf and one env file per role, mode 0600, never overwriting', async (t) => {
  const dir = join(testDir(t), 'cluster')
  const r = berth(['init-cluster', '--dir', dir, '--listen', '10.0.0.5', '--nats-port', '4333', '--cluster', 'prod', '--json'])
  t.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { natsUrl: string; files: Record<string, string> }
  t.equal(out.natsUrl, 'nats://10.0.0.5:4333')
  t.same(Object.keys(out.files).sort(), ['client.env', 'meta.env', 'nats.conf', 'node.env'])
  for (const f of Object.values(out.files)) t.equal(statSync(f).mode & 0o777, 0o600, `${f} is 0600`)

  const meta = readCredentialsFile(join(dir, 'meta.env'))
  const node = readCredentialsFile(join(dir, 'node.env'))
  const client = readCredentialsFile(join(dir, 'client.env'))
  const conf = readFileSync(join(dir, 'nats.conf'), 'utf8')
  t.match(conf, /^listen: 0\.0\.0\.0:4333$/m, 'NATS listens on every address at the port')
  for (const [role, env] of [['meta', meta], ['node', node], ['client', client]] as const) {
    t.equal(env.BERTH_NATS_URL, 'nats://10.0.0.5:4333', `${role}.env: the URL others dial`)
    t.equal(env.BERTH_CLUSTER, 'prod')
    t.equal(env.BERTH_NATS_USER, role)
    t.ok(conf.includes(`{ user: "${role}", password: ${JSON.stringify(env.BERTH_NATS_PASS)}, permissions:`), `nats.conf has ${role}'s password and permissions`)
    t.ok(conf.includes('"prod.meta.'), 'permissions name the cluster\'s subjects')
  }
  t.ok(meta.BERTH_SECRET && meta.BERTH_SECRET === node.BERTH_SECRET, 'meta and nodes share the secret')
  t.equal(client.BERTH_SECRET, undefined, 'clients do not get it')
  t.not(meta.BERTH_NATS_PASS, node.BERTH_NATS_PASS, 'each role its own password')

  writeFileSync(join(dir, 'marker'), '')
  const before = readFileSync(join(dir, 'node.env'), 'utf8')
  const again = berth(['init-cluster', '--dir', dir, '--listen', '10.0.0.5'])
  t.equal(again.code, 1, 'a second run refuses')
  t.match(again.stderr, /never overwrites credentials/)
  t.equal(readFileSync(join(dir, 'node.env'), 'utf8'), before, 'and changes nothing')
})

t.test('--listen must be an address others can reach', async (t) => {
  const dir = testDir(t)
  const wild = berth(['init-cluster', '--dir', join(dir, 'a'), '--listen', '0.0.0.0'])
  t.equal(wild.code, 1)
  t.match(wild.stderr, /give the address other hosts reach/)
  const missing = berth(['init-cluster', '--dir', join(dir, 'b')])
  t.equal(missing.code, 2, 'no --listen: usage error')
  const up = berth(['up', '--dir', join(dir, 'up'), '--no-mount', '--listen', '0.0.0.0'])
  t.equal(up.code, 1, 'berth up --listen 0.0.0.0 is refused')
  t.match(up.stderr, /a wildcard cannot be advertised/)
  const name = berth(['up', '--dir', join(dir, 'up2'), '--no-mount', '--listen', 'myhost'])
  t.equal(name.code, 1)
  t.match(name.stderr, /--listen must be an IP address of this host/)
})
