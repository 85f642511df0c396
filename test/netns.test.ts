/**
 * test/helpers/netns.ts: two "hosts" in their own network namespaces reach
 * each other through the lab's switch, `cut` separates them (packets are
 * dropped), `heal` joins them again, and `destroy` leaves no namespace and
 * no process behind; the machine's own interfaces never change.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { createLab, listNetns, netnsUnavailable } from './helpers/netns'

const why = netnsUnavailable()

/** One TCP connect from `from` to ip:port, given up after 1.5 s: "ok", "timeout" or the error code. */
const CONNECT = `
const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) })
s.setTimeout(1500, () => { console.log('timeout'); process.exit(0) })
s.on('connect', () => { console.log('ok'); process.exit(0) })
s.on('error', (e) => { console.log(e.code); process.exit(0) })`

/** A process that exists and is not a zombie (an orphan's zombie waits for whoever adopts it). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

function links(): string {
  return spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.replace(/\s+link\/.*$/gm, '')
}

t.test('lab hosts talk through the switch; cut and heal; destroy cleans up', { skip: why ? `network namespaces unavailable: ${why}` : false }, async (t) => {
  const before = links()
  const lab = createLab(t)
  const a = lab.addHost('a')
  const b = lab.addHost('b')
  t.equal(a.ip, '10.77.0.1')
  t.equal(b.ip, '10.77.0.2')
  t.ok(listNetns().includes(a.ns) && listNetns().includes(lab.switchNs), 'namespaces exist')
  t.equal(links(), before, "the machine's own interfaces are untouched")

  const server = lab.spawnIn(a, process.execPath, ['-e', `require('net').createServer((s) => s.end()).listen(7777, '${a.ip}', () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    server.stdout?.once('data', () => resolve())
    server.once('exit', (code) => reject(new Error(`server exited ${code}`)))
  })
  const connect = () => lab.run(b, process.execPath, ['-e', CONNECT, a.ip, '7777']).out
  t.equal(connect(), 'ok', 'b reaches a')
  t.not(lab.run(b, process.execPath, ['-e', CONNECT, '127.0.0.1', '7777']).out, 'ok', "a's port is not on b's loopback")

  lab.cut(a)
  t.equal(connect(), 'timeout', 'cut: packets are dropped, the connect hangs')
  lab.heal(a)
  let healed = ''
  // the port needs a moment to forward again after it comes up
  for (let i = 0; i < 20 && healed !== 'ok'; i++) {
    healed = connect()
    if (healed !== 'ok') await new Promise((r) => setTimeout(r, 250))
  }
  t.equal(healed, 'ok', 'heal: b reaches a again')

  // a child left behind by a process the lab stops (sh dies on SIGTERM, its sleep does not)
  const sh = lab.spawnIn(b, 'sh', ['-c', 'sleep 300 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const orphan = await new Promise<number>((resolve) => sh.stdout?.once('data', (d: Buffer) => resolve(Number(String(d).trim()))))

  const pid = server.pid!
  await lab.destroy()
  t.notOk(listNetns().some((n) => n.startsWith(lab.id)), 'destroy deleted every namespace of the lab')
  t.notOk(running(pid), 'and killed the process it started')
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(running(orphan), 'and the child a stopped process left in its namespace')
  t.equal(links(), before, 'the machine still has the same interfaces')
})
