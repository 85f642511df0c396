/**
 * Starting nats-servers for `berth up --ha` and the tests. nats-server says
 * "Server is ready" before it binds its route port; a server whose route port
 * another process took in the meantime exits just after. CI once mounted on
 * such a server (CONNECTION_REFUSED). The launcher must not call it ready, and
 * a cluster launch must start again on new ports.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { connect } from 'nats'
import t, { type Test } from 'tap'
import { freeLocalPort, freeLocalPorts, launchNatsCluster, launchNatsServer } from '../cli/nats-server'
import { eventually } from './helpers/lifecycle'
import { testDir } from './helpers/test-dir'

async function holdPort(t: Test): Promise<number> {
  // servers of a failed attempt dial it as a route: hang up on them
  const srv: Server = createServer((socket) => socket.destroy())
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok))
  t.teardown(() => new Promise<void>((ok) => srv.close(() => ok())))
  return (srv.address() as { port: number }).port
}

t.test('a server whose route port is taken is not ready: the launch fails and says why', async (t) => {
  const taken = await holdPort(t)
  const launched = launchNatsServer({ dir: testDir(t), route: { serverName: 'x', port: taken, routes: [taken] } })
  // on failure to reject, stop what was started so the test leaves nothing behind
  launched.then((h) => h.stop(), () => undefined)
  await t.rejects(launched, /address already in use/)
})

t.test('a cluster whose first port was taken before nats-server bound it starts on new ports', async (t) => {
  const taken = await holdPort(t)
  let picks = 0
  // picks go client, route per server: the fourth is server 1's route port
  const pickPort = async () => (++picks === 4 ? taken : freeLocalPort())
  const c = await launchNatsCluster({ dir: testDir(t), n: 3, pickPort })
  t.teardown(() => c.stop())
  t.ok(picks > 6, `ports were picked again (${picks} picks)`)
  t.notOk(c.servers.some((s) => s.port === taken), 'no server on the taken port')
  for (const s of c.servers) {
    const nc = await connect({ servers: s.url, user: c.users.client.user, pass: c.users.client.pass })
    await nc.flush()
    await nc.close()
    t.pass(`${s.url} answers`)
  }
})

t.test('a server that is not ready in time is killed, not left running', async (t) => {
  const dir = testDir(t)
  await t.rejects(launchNatsServer({ dir, readyTimeoutMs: 1 }), /did not start within 1 ms/)
  // its config file names its folder: no process may still run with it
  const running = () =>
    readdirSync('/proc').filter((p) => /^\d+$/.test(p)).some((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)
      } catch {
        return false // gone meanwhile
      }
    })
  t.ok(await eventually(() => !running(), 5000), 'no nats-server runs with its folder')
})

t.test('ports picked for one layout are all different (a route port was once its own client port)', async (t) => {
  const seq = [5001, 5001, 5002, 5000, 5003, 5002, 5004]
  const pick = async () => seq.shift()!
  t.same(await freeLocalPorts(3, [5000], pick), [5001, 5002, 5003], 'repeats and the avoided port skipped')
  const real = await freeLocalPorts(6)
  t.equal(new Set(real).size, 6, `six real ports, all different: ${real.join(' ')}`)
})
