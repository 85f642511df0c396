/**
 * `berth node --advertise URL`: the URL in heartbeats (and so in meta's node
 * table and every placement) is the one given, not the --listen address; a
 * malformed one is refused at start.
 */
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { BERTH_BIN } from '../cli/spawn-service'
import { startCluster } from './helpers/cluster'
import { freePort } from './helpers/net'

t.test('a node advertises the --advertise URL', async (t) => {
  const c = await startCluster(t, { nodes: 0 })
  const port = await freePort()
  const node = await c.startNode({ args: ['--listen', `0.0.0.0:${port}`, '--advertise', `http://localhost:${port}`] })
  t.equal(node.ready.url, `http://localhost:${port}`, 'ready event carries the advertised URL')
  const meta = await c.metaClient()
  let urls: string[] = []
  for (let i = 0; i < 50 && urls.length === 0; i++) {
    urls = (await meta.call('status', {})).nodes.map((n) => n.url)
    if (urls.length === 0) await new Promise((r) => setTimeout(r, 200))
  }
  t.same(urls, [`http://localhost:${port}`], 'meta knows the node by its advertised URL')
  const r = await fetch(`http://localhost:${port}/healthz`)
  t.equal(r.status, 200, 'and it answers there')

  const bad = spawnSync(process.execPath, [BERTH_BIN, 'node', '--nats', c.nats.url, '--dir', c.dir, '--listen', '127.0.0.1:0', '--advertise', 'localhost:7070'], {
    encoding: 'utf8', env: { ...process.env, ...c.env('node') }, timeout: 20_000,
  })
  t.equal(bad.status, 1, 'a malformed --advertise is refused')
  t.match(bad.stderr, /--advertise must be/, 'saying what it wants')
})
