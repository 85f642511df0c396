/**
 * `berth up` starts meta's dashboard: its ready output prints the address with
 * the token, the token is a 0600 file in the folder (never on a command line
 * nor in a log), and the address works.
 */
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { parseConfig } from '../meta/config'
import type { DashboardLeaderState } from '../meta/dashboard/types'
import { readyLine } from './helpers/ready-line'
import { testDir } from './helpers/test-dir'

t.test('berth up prints the dashboard address with its token, and it answers', async (t) => {
  const dir = join(testDir(t), 'cluster')
  const up = spawn(process.execPath, [BERTH_BIN, 'up', '--json', '--no-mount', '--nodes', '1', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BERTH_LOG: 'info' } })
  let stderr = ''
  up.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
  })
  const ready = await readyLine<{ ui: string[]; uiToken: string }>(up, 60_000, () => stderr)
  const m = /^ {2}dashboard +(http:\/\/127\.0\.0\.1:(\d+)\/\?token=(\S+))$/m.exec(stderr)
  t.ok(m, 'the ready output has the dashboard line')
  if (!m) return t.comment(stderr)
  const token = decodeURIComponent(m[3]!)
  t.equal(ready.ui[0], `http://127.0.0.1:${m[2]}/`, 'the JSON ready line names it without the token')
  t.equal(ready.uiToken, join(dir, 'ui-token'))
  t.equal(readFileSync(join(dir, 'ui-token'), 'utf8').trim(), token, 'the token is the one in DIR/ui-token')
  t.equal(statSync(join(dir, 'ui-token')).mode & 0o777, 0o600, 'readable by its owner only')
  t.same(JSON.parse(readFileSync(join(dir, 'ui.json'), 'utf8')), { ports: [Number(m[2])] }, 'the port is kept for the next start')

  const url = new URL(m[1]!)
  const res = await fetch(`${url.origin}/api/state`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(res.status, 200, 'the printed token opens the state')
  const state = (await res.json()) as DashboardLeaderState
  t.equal(state.role, 'single')
  const refused = await fetch(`${url.origin}/api/state`)
  t.equal(refused.status, 401, 'and nothing opens it without the token')
  await refused.body?.cancel()

  const cmdlines = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8')
      } catch {
        return ''
      }
    })
  t.notOk(cmdlines.some((c) => c.includes(token)), 'no command line carries the token (ps)')

  const exited = new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
  up.kill('SIGTERM')
  t.equal(await exited, 0, 'berth up stops')
  const logs = join(dir, 'logs')
  for (const f of readdirSync(logs)) t.notOk(readFileSync(join(logs, f), 'utf8').includes(token), `${f} does not hold the token`)
})

t.test('meta refuses --ui-listen without a usable token', async (t) => {
  const base = ['--nats', 'nats://127.0.0.1:1', '--db', '/nonexistent/meta.db']
  const env = { BERTH_SECRET: 'test-secret' }
  t.throws(() => parseConfig([...base, '--ui-listen', '127.0.0.1:0'], env), /--ui-listen needs a read-only dashboard token/, 'no token')
  t.throws(() => parseConfig([...base, '--ui-listen', '127.0.0.1:0'], { ...env, BERTH_UI_TOKEN: 'short' }), /at least 16 characters/, 'a short token')
  t.throws(() => parseConfig([...base, '--ui-token-file', '/nonexistent/ui-token'], env), /--ui-token-file needs --ui-listen/, 'a token file without a listener')
  t.throws(() => parseConfig([...base, '--ui-listen', '127.0.0.1:0', '--ui-token-file', '/nonexistent/ui-token'], env), /cannot read --ui-token-file/, 'an unreadable token file')
  const ok = parseConfig([...base, '--ui-listen', ':7070'], { ...env, BERTH_UI_TOKEN: 'a-token-of-24-characters' })
  t.same(ok?.ui, { listen: { host: '127.0.0.1', port: 7070 }, token: 'a-token-of-24-characters' }, 'an empty host is 127.0.0.1')
  t.equal(parseConfig(base, env)?.ui, null, 'off by default')
})
