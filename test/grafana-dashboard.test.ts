/**
 * tools/grafana/berth.json queries only metrics that meta and the data nodes
 * really export: every metric name in every panel's PromQL is looked up in a
 * scrape of a real cluster's /metrics endpoints (meta's --metrics-listen, a
 * node's block API). A renamed metric fails here, not on an operator's screen.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startCluster } from './helpers/cluster'

const DASHBOARD = join(__dirname, '..', '..', 'tools', 'grafana', 'berth.json')

interface Panel {
  id: number
  type: string
  title: string
  datasource?: { uid?: string }
  targets?: Array<{ expr: string }>
  panels?: Panel[]
}

/** Metric names a scrape exports: every sample's name, and a histogram's or summary's derived series. */
function exported(text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)$/.exec(line)
    if (type) {
      names.add(type[1]!)
      if (type[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(type[1]! + s)
      if (type[2] === 'summary') for (const s of ['_sum', '_count']) names.add(type[1]! + s)
      continue
    }
    const sample = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(line)
    if (sample) names.add(sample[1]!)
  }
  return names
}

/** berth metric names in a PromQL expression (labels, functions and range selectors are not names). */
function queried(expr: string): string[] {
  const noLabels = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '')
  return [...noLabels.matchAll(/\bberth_[a-z0-9_]+\b/g)].map((m) => m[0])
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
}

t.test('every metric the Grafana dashboard queries is exported by meta or a node', async (t) => {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; title: string; panels: Panel[]; templating: { list: Array<{ name: string; type: string }> } }
  t.ok(dash.uid && dash.title, 'a uid and a title')
  t.ok(dash.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'), 'the Prometheus data source is a variable, chosen at import')
  const panels = allPanels(dash.panels)
  t.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'panel ids are unique')
  const withQueries = panels.filter((p) => p.type !== 'row')
  t.ok(withQueries.length >= 10, `${withQueries.length} panels`)
  for (const p of withQueries) {
    t.ok(p.targets?.length, `${p.title}: has queries`)
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the data source variable`)
  }
  const wanted = new Map<string, string>()
  for (const p of withQueries) for (const q of p.targets ?? []) for (const name of queried(q.expr)) wanted.set(name, p.title)
  t.ok(wanted.size >= 20, `${wanted.size} distinct metric names queried`)

  const c = await startCluster(t, { nodes: 1, replicas: 1, metaArgs: ['--metrics-listen', '127.0.0.1:0'] })
  // one real request each, so the labelled series exist too
  await (await c.metaClient()).call('status', {})
  const scrape = async (url: string, headers: Record<string, string> = {}) => {
    const res = await fetch(url, { headers })
    t.equal(res.status, 200, `${url} answers`)
    return res.text()
  }
  const nodeMetrics = `${String(c.nodes[0]!.ready.url)}/metrics`
  await scrape(nodeMetrics, { authorization: `Bearer ${c.secret}` })
  const names = new Set([...exported(await scrape(String(c.meta.ready.metrics))), ...exported(await scrape(nodeMetrics, { authorization: `Bearer ${c.secret}` }))])
  const missing = [...wanted].filter(([name]) => !names.has(name)).map(([name, panel]) => `${name} (panel "${panel}")`)
  t.same(missing, [], 'every queried metric is exported')
})
