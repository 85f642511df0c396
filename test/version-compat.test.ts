/**
 * Protocol checks between client, meta and nodes (common/compat.ts), with
 * BERTH_FAKE_PROTOCOL making a real client or node claim an older or newer
 * protocol than this build: meta refuses it, and the refused process exits
 * non-zero with a message naming both sides and what to upgrade.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { MIN_PEER_PROTOCOL, PROTOCOL, refuseMeta, refusePeer } from '../common/compat'
import { startCluster, type TestCluster } from './helpers/cluster'
import { fusermountUz } from './helpers/mount'
import { testDir } from './helpers/test-dir'

function berth(c: TestCluster, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<{ code: number; stderr: string; ms: number }> {
  const start = Date.now()
  return new Promise((resolve) => {
    execFile(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, _out, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr, ms: Date.now() - start }),
    )
  })
}

t.test('the rules, as pure functions', async (t) => {
  t.equal(refusePeer('client', 'this client', { protocol: PROTOCOL }), null, 'same protocol: served')
  t.equal(refusePeer('node', 'node n', {}), null, 'a peer that announces nothing speaks protocol 1: served')
  t.match(refusePeer('client', 'this client', { protocol: MIN_PEER_PROTOCOL.client - 1, release: '0.0.1 (commit old)' }), /this client speaks berth protocol \d+ \(berth 0\.0\.1 \(commit old\)\); meta \(berth .*\) serves clients of protocols \d+ to \d+: upgrade the client/)
  t.match(refusePeer('node', 'node n', { protocol: PROTOCOL + 1 }), /upgrade meta first/)
  t.equal(refuseMeta({ protocol: PROTOCOL }, { protocol: PROTOCOL, release: 'x' }), null)
  t.match(refuseMeta({}, { protocol: 2, release: '0.2.0' }), /meta speaks berth protocol 1 \(berth release before version checks\), this client speaks 2 \(berth 0\.2\.0\): upgrade meta first/, 'a client refuses a meta older than itself')
})

t.test('meta refuses a client or node of an unsupported protocol, with what to upgrade', async (t) => {
  const c = await startCluster(t, { nodes: 1 })
  // not testDir(t): a second call wipes the cluster's folder (startCluster's)
  const mnt = mkdtempSync(join(tmpdir(), 'berth-compat-mnt-'))
  t.teardown(() => {
    fusermountUz(mnt)
    rmSync(mnt, { recursive: true, force: true })
  })
  const conn = ['--nats', c.nats.url]

  const old = await berth(c, ['mount', c.nats.url, mnt], { ...c.env('client'), BERTH_FAKE_PROTOCOL: String(MIN_PEER_PROTOCOL.client - 1) })
  t.not(old.code, 0, `an old client's mount fails (exit ${old.code}, ${old.ms} ms)`)
  t.match(old.stderr, new RegExp(`this client speaks berth protocol ${MIN_PEER_PROTOCOL.client - 1} .*serves clients of protocols ${MIN_PEER_PROTOCOL.client} to ${PROTOCOL}: upgrade the client`), 'naming both protocols and what to upgrade')
  t.ok(old.ms < 15_000, 'within seconds')
  t.comment(`old client: ${old.stderr.trim()}`)

  const newer = await berth(c, ['info', '--from-root', '/', ...conn], { ...c.env('client'), BERTH_FAKE_PROTOCOL: String(PROTOCOL + 1) })
  t.equal(newer.code, 1, 'a newer client is refused too (berth info)')
  t.match(newer.stderr, new RegExp(`speaks berth protocol ${PROTOCOL + 1} .*upgrade meta first`))

  const same = await berth(c, ['info', '--from-root', '/', ...conn], c.env('client'))
  t.equal(same.code, 0, `this build's client is served: ${same.stderr}`)

  // a node of an old protocol: refused, stops with status 1 and says why; meta never lists it
  const started = Date.now()
  const node = spawn(process.execPath, [BERTH_BIN, 'node', '--nats', c.nats.url, '--dir', join(c.dir, 'old-node'), '--listen', '127.0.0.1:0'], {
    env: { ...process.env, ...c.env('node'), BERTH_FAKE_PROTOCOL: String(MIN_PEER_PROTOCOL.node - 1) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => {
    if (node.exitCode === null) node.kill('SIGKILL')
  })
  let err = ''
  node.stderr.setEncoding('utf8').on('data', (s: string) => (err += s))
  node.stdout.resume()
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), 30_000)
    node.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
  t.comment(`old node: ${err.trim().split('\n').find((l) => l.includes('refused by meta')) ?? err}`)
  t.equal(code, 1, `the old node exits 1 (after ${Date.now() - started} ms)`)
  t.match(err, new RegExp(`refused by meta: node \\S+ \\(http://127\\.0\\.0\\.1:\\d+\\) speaks berth protocol ${MIN_PEER_PROTOCOL.node - 1} .*upgrade the node`), 'its stderr says why')
  const meta = await c.metaClient()
  const ids = (await meta.call('status', {})).nodes.map((n) => n.id)
  t.same(ids, [c.nodes[0]!.ready.id], 'meta lists only the node it serves')
  t.match(c.meta.stderr(), /refused by meta: node .* speaks berth protocol/, "and meta's log says it refused it")
})
