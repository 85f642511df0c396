/**
 * `berth up --no-mount`: ready quickly, `berth status` sees every node, and
 * SIGTERM leaves no child process behind.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'

/** Pids of all descendants of `pid`, from /proc. */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parentOf.set(Number(entry), ppid)
    } catch {
      // process exited while we looked
    }
  }
  const out: number[] = []
  const walk = (p: number) => {
    for (const [child, parent] of parentOf) if (parent === p) out.push(child), walk(child)
  }
  walk(pid)
  return out
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('berth up --no-mount starts, reports status, and stops every child on SIGTERM', async (t) => {
  const dir = t.testdir()
  const started = Date.now()
  const up = spawn(process.execPath, [BERTH_BIN, 'up', '--no-mount', '--dir', join(dir, 'cluster'), '--nodes', '3'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BERTH_LOG: 'warn' },
  })
  let stderr = ''
  up.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  t.teardown(() => {
    if (up.exitCode === null) up.kill('SIGKILL')
  })
  const ready = await new Promise<{ nats: string; credentials: string; nodes: unknown[] }>((resolve, reject) => {
    let out = ''
    up.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c
      const line = out.split('\n').find((l) => l.includes('"event":"ready"'))
      if (line) resolve(JSON.parse(line))
    })
    up.once('exit', (code) => reject(new Error(`berth up exited ${code}\n${stderr}`)))
    setTimeout(() => reject(new Error(`berth up not ready in 20 s\n${stderr}`)), 20_000)
  })
  const elapsed = Date.now() - started
  t.ok(elapsed < 10_000, `ready in ${elapsed} ms (< 10 s)`)
  t.equal(ready.nodes.length, 3, 'three data nodes')
  t.match(ready.nats, /^nats:\/\/127\.0\.0\.1:\d+$/)

  const children = descendants(up.pid!)
  t.ok(children.length >= 5, `nats-server, meta and 3 nodes are children (${children.length})`)

  // Heartbeats reach meta within one period.
  let status: { nodes: Array<{ alive: boolean }> } = { nodes: [] }
  for (let i = 0; i < 20 && status.nodes.filter((n) => n.alive).length < 3; i++) {
    const r = spawnSync(process.execPath, [BERTH_BIN, 'status', '--json', '--credentials', ready.credentials], { encoding: 'utf8' })
    t.equal(r.status, 0, `berth status exits 0 ${r.stderr}`)
    status = JSON.parse(r.stdout)
    if (status.nodes.filter((n) => n.alive).length < 3) await new Promise((r) => setTimeout(r, 500))
  }
  t.equal(status.nodes.filter((n) => n.alive).length, 3, 'status lists three live nodes')

  const text = spawnSync(process.execPath, [BERTH_BIN, 'status', '--credentials', ready.credentials], { encoding: 'utf8' })
  t.match(text.stdout, /nodes: 3 live of 3/, 'human status output')

  up.kill('SIGTERM')
  const code = await new Promise<number | null>((resolve) => up.once('exit', (c) => resolve(c)))
  t.equal(code, 0, 'berth up exits 0 on SIGTERM')
  const left = children.filter(alive)
  t.same(left, [], 'no child process left behind')
})

t.test('berth status without a cluster fails clearly', async (t) => {
  const r = spawnSync(process.execPath, [BERTH_BIN, 'status', '--nats', 'nats://127.0.0.1:1'], { encoding: 'utf8', cwd: t.testdir() })
  t.not(r.status, 0)
  t.match(r.stderr, /cannot connect to NATS/)
})
