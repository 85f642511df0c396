/**
 * `/metrics` in Prometheus text on meta (`--metrics-listen`), on a data node
 * (its block API) and on a mount (`-o metrics=`): counters move with real work
 * done through a real mount, and bad listen addresses are refused clearly.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { spawnService } from '../cli/spawn-service'
import { startCluster } from './helpers/cluster'
import { mountCluster } from './helpers/mount'

async function scrape(url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(url, { headers })
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`)
  const type = res.headers.get('content-type') ?? ''
  if (!type.startsWith('text/plain')) throw new Error(`${url}: content-type ${type}`)
  return res.text()
}

/** Sum of a metric's samples whose labels include every `want` pair. */
function sample(text: string, name: string, want: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? ([^ ]+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const labels = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) sum += Number(m[4])
  }
  return sum
}

t.test('meta, node and client metrics follow real work', async (t) => {
  const c = await startCluster(t, { nodes: 2, replicas: 2, metaArgs: ['--metrics-listen', '127.0.0.1:0'] })
  const metaUrl = String(c.meta.ready.metrics)
  t.match(metaUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'meta says where its metrics are')
  const m = await mountCluster(t, c, { args: ['-o', 'metrics=127.0.0.1:0'] })
  const clientUrl = String(m.client.ready.metrics)
  t.match(clientUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'the mount says where its metrics are')

  const before = await scrape(clientUrl)
  const data = randomBytes(256 * 1024)
  writeFileSync(join(m.dir, 'a.bin'), data)
  t.same(readFileSync(join(m.dir, 'a.bin')), data)

  const client = await scrape(clientUrl)
  t.ok(sample(client, 'berth_client_bytes_total', { direction: 'write' }) >= data.length, 'bytes written counted')
  t.ok(sample(client, 'berth_client_fuse_ops_total', { op: 'create', result: 'ok' }) > sample(before, 'berth_client_fuse_ops_total', { op: 'create', result: 'ok' }), 'create counted')
  t.ok(sample(client, 'berth_client_fuse_op_seconds_count', { op: 'write' }) > 0, 'write latency histogram')
  // the kernel may answer the read-back from its page cache, so only the families are certain
  t.match(client, /# TYPE berth_client_block_cache_hits_total counter/)
  t.match(client, /# TYPE berth_client_block_cache_misses_total counter/)
  t.ok(sample(client, 'berth_client_block_cache_bytes') >= data.length, 'the written block sits in the cache')

  const meta = await scrape(metaUrl)
  t.ok(sample(meta, 'berth_meta_ops_total', { op: 'commit', result: 'ok' }) >= 1, 'meta counted the commit')
  t.ok(sample(meta, 'berth_meta_ops_total', { op: 'hello', result: 'ok' }) >= 1, 'and the hello')
  t.ok(sample(meta, 'berth_meta_op_seconds_count', { op: 'lookup' }) >= 1, 'lookup latency histogram')
  t.equal(sample(meta, 'berth_meta_live_nodes'), 2, 'two live nodes')

  // a failed lookup is counted with its errno name
  t.throws(() => readFileSync(join(m.dir, 'nope')), { code: 'ENOENT' })
  const meta2 = await scrape(metaUrl)
  t.ok(sample(meta2, 'berth_meta_ops_total', { op: 'lookup', result: 'ENOENT' }) >= 1, 'ENOENT lookups counted')

  const nodeUrl = `${String(c.nodes[0]!.ready.url)}/metrics`
  const node = await scrape(nodeUrl, { authorization: `Bearer ${c.secret}` })
  t.ok(sample(node, 'berth_node_http_requests_total', { route: 'blocks', method: 'PUT' }) >= 1, 'the node counted block PUTs')

  const res = await fetch(metaUrl.replace('/metrics', '/other'))
  t.equal(res.status, 404, 'only /metrics is served')
  await res.body?.cancel()
})

t.test('a bad --metrics-listen is refused before anything starts', async (t) => {
  const c = await startCluster(t, { nodes: 1, replicas: 1 })
  await t.rejects(spawnService(['meta', '--nats', c.nats.url, '--db', join(c.dir, 'other.db'), '--metrics-listen', 'nowhere'], { env: c.env('meta'), readyTimeoutMs: 10_000 }), /--metrics-listen must be HOST:PORT/)
})
