/**
 * meta's live dashboard (docs/operations.md#dashboard) in a real headless
 * Chromium against a real cluster (nats-server, meta, 3 data nodes, a mount):
 * the page shows 3 live nodes and the mount's session, a data node killed
 * with SIGKILL turns dead on the page by itself, requests without the token
 * are refused with 401, and the page loads nothing from anywhere but meta.
 * The screenshot is kept in test-artifacts/ (gitignored).
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import t from 'tap'
import { OpsSampler, SAMPLE_MS } from '../meta/dashboard/sampler'
import type { DashboardLeaderState } from '../meta/dashboard/types'
import { launchBrowser } from './helpers/browser'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

const ARTIFACTS = resolve(__dirname, '..', '..', 'test-artifacts')

t.test('the sampler turns requests into per-interval rates and latency quantiles', async (t) => {
  let now = 1_000_000
  const s = new OpsSampler(() => ({ copyRate: 5 }), () => now)
  for (let i = 0; i < 98; i++) s.observe('lookup', 0.001, null)
  s.observe('lookup', 0.001, 'ENOENT')
  s.observe('commit', 0.2, null)
  now += SAMPLE_MS
  s.tick()
  const [x] = s.since(0)
  t.ok(x)
  t.equal(x!.opsPerS, 100 / (SAMPLE_MS / 1000), 'requests per second over the interval')
  t.equal(x!.errorsPerS, 1 / (SAMPLE_MS / 1000), 'errors per second')
  t.ok(x!.p50Ms >= 1 && x!.p50Ms < 1.2, `p50 is the 1 ms bucket (${x!.p50Ms})`)
  t.ok(x!.p99Ms >= 1 && x!.p99Ms < 1.2, `p99 of 100 with one slow request is still 1 ms (${x!.p99Ms})`)
  t.equal(x!.maxMs, 200, 'max is exact')
  t.equal(x!.copyBytesPerS, 5)
  t.same(s.topOps(60_000).map((o) => o.op), ['lookup', 'commit'], 'busiest first')
  now += SAMPLE_MS
  s.tick()
  t.equal(s.since(x!.t).length, 1, 'since= returns only newer samples')
  t.equal(s.since(0)[1]!.p99Ms, 0, 'an idle interval has no latency')
})

t.test('the dashboard follows a real cluster in headless Chromium', async (t) => {
  const secrets = mkdtempSync(join(tmpdir(), 'berth-ui-'))
  t.teardown(() => rmSync(secrets, { recursive: true, force: true }))
  const token = randomBytes(24).toString('base64url')
  const tokenFile = join(secrets, 'ui-token')
  writeFileSync(tokenFile, token + '\n', { mode: 0o600 })

  const t0 = Date.now()
  const phase = (what: string) => t.comment(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`)
  // Chromium starts while the cluster does (each takes several seconds on a busy machine)
  const [c, browser] = await Promise.all([startCluster(t, { nodes: 3, replicas: 2, metaArgs: ['--ui-listen', '127.0.0.1:0', '--ui-token-file', tokenFile] }), launchBrowser(t)])
  phase('cluster (nats, meta, 3 nodes) and Chromium started')
  const ui = String(c.meta.ready.ui)
  t.match(ui, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'meta says where the dashboard is (no token in it)')

  // the data endpoint needs the token; the page itself holds none
  const state = (headers: Record<string, string> = {}, query = '') => fetch(`${ui}api/state${query}`, { headers })
  for (const [what, res] of [
    ['no token', await state()],
    ['a wrong bearer token', await state({ authorization: `Bearer ${token}x` })],
    ['a wrong ?token=', await state({}, `?token=${token.slice(1)}`)],
  ] as const) {
    t.equal(res.status, 401, `${what}: 401`)
    await res.body?.cancel()
  }
  const ok = await state({ authorization: `Bearer ${token}` })
  t.equal(ok.status, 200, 'the bearer token opens it')
  const body = (await ok.json()) as DashboardLeaderState
  t.equal(body.role, 'single')
  const viaQuery = await state({}, `?token=${encodeURIComponent(token)}`)
  t.equal(viaQuery.status, 200, '?token= opens it too')
  await viaQuery.body?.cancel()
  const page0 = await fetch(ui)
  t.equal(page0.status, 200, 'the page is served')
  t.match(page0.headers.get('content-security-policy') ?? '', /default-src 'none'.*connect-src 'self'/, 'its CSP allows no other origin')
  t.notMatch(await page0.text(), /<script[^>]+src=|<link[^>]+href=|https?:\/\/(?!www\.w3\.org)/, 'no external asset in the page')
  const leader = await fetch(`${ui}leader`)
  t.equal(leader.status, 200, '/leader: this meta serves')
  await leader.body?.cancel()

  // a real mount: a session, and requests for the charts
  const m = await mountCluster(t, c)
  mkdirSync(join(m.dir, 'd'))
  // small files (inline in meta) and a few with blocks on the nodes
  for (let i = 0; i < 5; i++) writeFileSync(join(m.dir, 'd', `f${i}`), randomBytes(1000))
  for (let i = 0; i < 2; i++) writeFileSync(join(m.dir, 'd', `big${i}`), randomBytes(512 * 1024))

  phase('mounted and written')
  if (!browser) return
  const page = browser.pages()[0] ?? (await browser.newPage())
  const requests: string[] = []
  page.on('request', (r) => requests.push(r.url()))
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  await page.goto(`${ui}?token=${encodeURIComponent(token)}`)
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr[data-state="live"]').length === 3, null, { timeout: 30_000 })
  t.pass('the page shows 3 live nodes')
  phase('the page shows 3 live nodes')
  t.equal(await page.textContent('#live-count'), '3 / 3')
  t.equal(page.url(), ui, 'the token left the address bar (kept in sessionStorage)')
  await page.waitForFunction(() => document.querySelectorAll('#sessions tbody tr[data-session]').length >= 1, null, { timeout: 15_000 })
  t.pass('the mount is listed under sessions')
  // the writes above are counted in the next sample (every 2 s)
  await page.waitForFunction(() => Number(document.querySelector('#ops tbody tr td.num')?.textContent ?? 0) > 0, null, { timeout: 15_000 })
  t.pass('the busiest-requests table and charts have the mount\'s requests')
  t.ok(await page.$('#chart-ops path.line'), 'the requests chart has a line')

  const victim = c.nodes[1]!
  const id = String(victim.ready.id)
  const killedAt = Date.now()
  await victim.kill()
  await page.waitForFunction((id) => (document.querySelector(`#nodes tr[data-node="${id}"]`) as HTMLElement | null)?.dataset.state === 'dead', id, { timeout: 30_000, polling: 250 })
  t.comment(`the page showed ${id} dead ${((Date.now() - killedAt) / 1000).toFixed(1)} s after kill -9 (meta's dead-node timeout is 7 s)`)
  t.equal(await page.textContent('#live-count'), '2 / 3', 'two live of three')

  mkdirSync(ARTIFACTS, { recursive: true })
  phase('node shown dead')
  const shot = join(ARTIFACTS, 'dashboard.png')
  await page.screenshot({ path: shot, fullPage: true })
  t.comment(`screenshot: ${shot}`)

  const origin = new URL(ui).origin
  t.same(requests.filter((u) => new URL(u).origin !== origin), [], 'every request went to meta itself')
  t.same(errors, [], 'no script error on the page')

  // another tab has no token: it asks for one, a wrong one is refused, the right one opens
  const bare = await browser.newPage()
  await bare.goto(ui)
  await bare.waitForSelector('#auth:not([hidden])', { timeout: 10_000 })
  await bare.fill('#token-input', 'not-the-token-at-all')
  await bare.click('#auth-form button')
  await bare.waitForFunction(() => document.querySelector('#auth-error')?.textContent?.includes('refused') === true, null, { timeout: 10_000 })
  t.pass('a wrong token is refused on the page')
  await bare.fill('#token-input', token)
  await bare.click('#auth-form button')
  await bare.waitForSelector('#live:not([hidden])', { timeout: 10_000 })
  t.pass('the right token opens it')

  t.notOk(c.meta.stderr().includes(token), 'meta never logs the token')
})
