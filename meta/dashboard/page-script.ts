/// <reference lib="dom" />
/**
 * The dashboard page's script (runs in the browser, not in meta). Compiled by
 * the project's tsc like every other file, then inlined into the page by
 * meta/dashboard/page.ts inside `(function (exports) { ... })({})`: it may
 * import types only (nothing is loaded at run time).
 *
 * Loop: read the token (a `?token=` is moved into sessionStorage and taken
 * out of the address bar), GET /api/state every POLL_MS with it, render.
 * Samples are asked for with `since=` the newest one held, so a poll carries
 * a few numbers, not the whole history. A failed poll keeps the last view,
 * marked stale; a 401 asks for the token again.
 */
import type { Backlog, DashboardFollowerState, DashboardLeaderState, DashboardNode, DashboardSample, DashboardState } from './types'

const POLL_MS = 1500
const TOKEN_KEY = 'berth-dashboard-token'
const WINDOW_MS = 10 * 60_000

let token: string | null = null
let samples: DashboardSample[] = []
let lastMeta = ''

function $(id: string): HTMLElement {
  const el = document.getElementById(id)
  if (!el) throw new Error(`page has no #${id}`)
  return el
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: { text?: string; cls?: string; data?: Record<string, string>; title?: string } = {}, children: Node[] = []): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  if (props.text !== undefined) e.textContent = props.text
  if (props.cls) e.className = props.cls
  if (props.title) e.title = props.title
  for (const [k, v] of Object.entries(props.data ?? {})) e.dataset[k] = v
  for (const c of children) e.appendChild(c)
  return e
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

function seconds(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`
  if (s < 5400) return `${Math.round(s / 60)} min`
  return `${(s / 3600).toFixed(1)} h`
}

function num(n: number, digits = 1): string {
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(digits)
}

function readToken(): string | null {
  const url = new URL(location.href)
  const given = url.searchParams.get('token')
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given)
    // out of the address bar, the history and any screenshot of it
    url.searchParams.delete('token')
    history.replaceState(null, '', url.pathname + url.search + url.hash)
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

function show(section: 'auth' | 'follower' | 'live'): void {
  for (const id of ['auth', 'follower', 'live']) $(id).hidden = id !== section
}

function setConn(text: string, cls: 'ok' | 'stale' | 'bad'): void {
  const c = $('conn')
  c.textContent = text
  c.className = `conn ${cls}`
  document.body.classList.toggle('stale', cls !== 'ok')
}

async function poll(): Promise<void> {
  if (!token) {
    show('auth')
    setConn('token needed', 'bad')
    return
  }
  const since = samples.length ? samples[samples.length - 1]!.t : 0
  let res: Response
  try {
    res = await fetch(`/api/state?since=${since}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' })
  } catch {
    setConn('meta unreachable, retrying', 'stale')
    return
  }
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY)
    token = null
    $('auth-error').textContent = 'The token was refused.'
    show('auth')
    setConn('token refused', 'bad')
    return
  }
  if (!res.ok) {
    setConn(`meta answered ${res.status}, retrying`, 'stale')
    return
  }
  const state = (await res.json()) as DashboardState
  render(state)
  setConn(`live, updated ${new Date(state.at).toLocaleTimeString()}`, 'ok')
}

function render(s: DashboardState): void {
  $('cluster').textContent = `cluster ${s.cluster}`
  if (s.metaId !== lastMeta) {
    // another meta (a restart, a new leader): its history is its own
    samples = []
    lastMeta = s.metaId
  }
  if (isLeader(s)) renderLeader(s)
  else renderFollower(s)
}

function isLeader(s: DashboardState): s is DashboardLeaderState {
  return s.role === 'leader' || s.role === 'single'
}

function renderLeader(s: DashboardLeaderState): void {
  $('meta').textContent = `meta ${s.metaId}${s.role === 'leader' ? ' (--ha leader)' : ''}, up ${seconds((s.at - s.startedAt) / 1000)}`
  show('live')
  samples = samples.concat(s.samples).filter((x) => x.t > s.at - WINDOW_MS)
  renderCards(s)
  renderNodes(s)
  renderWork(s)
  renderCharts(s)
  renderOps(s)
  renderSessions(s)
  renderReplication(s)
}

function renderFollower(s: DashboardFollowerState): void {
  $('meta').textContent = `meta ${s.metaId} (${s.role})`
  show('follower')
  $('follower').replaceChildren(
    el('h2', { text: 'This meta is a follower' }),
    el('p', {
      text: `${s.metaId} is a ${s.role === 'follower' ? 'follower' : 'stopped replica'} of a replicated meta (--ha): it applies the leader's log but holds no live state (nodes, sessions, requests). ${s.leader ? `The leader is ${s.leader}: open the dashboard of that meta.` : 'No leader is heard right now.'} This page switches by itself if this meta becomes the leader.`,
    }),
  )
}

function card(label: string, value: string, opts: { id?: string; warn?: boolean; title?: string } = {}): HTMLElement {
  const v = el('div', { text: value, cls: 'value' })
  if (opts.id) v.id = opts.id
  return el('div', { cls: `card${opts.warn ? ' warn' : ''}`, title: opts.title }, [v, el('div', { text: label, cls: 'label' })])
}

function renderCards(s: DashboardLeaderState): void {
  const live = s.nodes.filter((n) => n.alive).length
  const last = samples[samples.length - 1]
  $('cards').replaceChildren(
    card('nodes live', `${live} / ${s.nodes.length}`, { id: 'live-count', warn: live < s.nodes.length }),
    card('used of raw capacity', `${bytes(s.capacity.used)} of ${bytes(s.capacity.capacity)}`, { title: `raw bytes on live nodes, each of ${s.capacity.filesystems} filesystem(s) once; files take R=${s.replicas} times their size` }),
    card('files and directories', String(s.inodes)),
    card('blocks', `${s.blocks} (${bytes(s.bytes)})`, { title: s.censusAgeMs >= 5000 ? `counted ${Math.round(s.censusAgeMs / 1000)} s ago` : 'counted just now' }),
    card('under-replicated', String(s.underReplicated), { id: 'under-replicated', warn: s.underReplicated > 0, title: `blocks with fewer live copies than min(R, live nodes); below R=${s.replicas}: ${s.belowR}` }),
    card('below R', String(s.belowR), { warn: s.belowR > 0, title: 'more than under-replicated when fewer than R nodes are live' }),
    card('corrupt copies', `${s.suspectCopies} / ${s.corruptConfirmed}`, { id: 'corrupt', warn: s.suspectCopies + s.corruptConfirmed > 0, title: 'reported bad and waiting for their node to re-hash them / confirmed corrupt and replaced since meta started' }),
    card('sessions (mounts)', `${s.sessions.length}${s.sessions.length >= 200 ? '+' : ''}`, { title: `${s.openFiles} open file(s)` }),
    card('requests / s', last ? num(last.opsPerS) : '-', { title: `over the last ${s.sampleMs / 1000} s` }),
    card('latency p99', last && last.opsPerS > 0 ? `${num(last.p99Ms, 2)} ms` : '-', { title: 'time from receiving a request to answering it' }),
  )
}

function stateBadge(n: DashboardNode): HTMLElement {
  return el('span', { text: n.shown, cls: `badge ${n.shown}` })
}

function usageBar(used: number, total: number): HTMLElement {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0
  const fill = el('div', { cls: `fill${pct > 90 ? ' hot' : ''}` })
  fill.style.width = `${pct.toFixed(1)}%`
  return el('div', { cls: 'bar', title: `${pct.toFixed(1)}%` }, [fill, el('span', { text: `${bytes(used)} / ${bytes(total)}` })])
}

function renderNodes(s: DashboardLeaderState): void {
  const rows = s.nodes.map((n) =>
    el('tr', { data: { node: n.id, state: n.shown } }, [
      el('td', { text: n.id, cls: 'mono' }),
      el('td', { text: n.zone ?? '-' }),
      el('td', {}, [stateBadge(n)]),
      el('td', {}, [usageBar(n.used, n.capacity)]),
      el('td', { text: String(n.blocks), cls: 'num' }),
      el('td', { text: n.url, cls: 'mono dim' }),
      el('td', { text: `${((s.at - n.seen) / 1000).toFixed(1)} s ago`, cls: 'num' }),
    ]),
  )
  const body = $('nodes').querySelector('tbody')
  body?.replaceChildren(...(rows.length ? rows : [el('tr', {}, [el('td', { text: 'no data node has sent a heartbeat yet' })])]))
}

function progress(label: string, b: Backlog, detail: string, data: Record<string, string>): HTMLElement {
  const done = b.peakBytes > 0 ? Math.max(0, Math.min(100, (1 - b.bytes / b.peakBytes) * 100)) : 100
  const fill = el('div', { cls: 'fill' })
  fill.style.width = `${done.toFixed(1)}%`
  return el('div', { cls: 'work', data }, [
    el('div', { text: label, cls: 'work-label' }),
    el('div', { cls: 'bar', title: `${done.toFixed(0)}% of the largest backlog since it was last empty` }, [fill, el('span', { text: `${bytes(b.bytes)} left` })]),
    el('div', { text: detail, cls: 'dim' }),
  ])
}

function eta(etaS: number | null): string {
  return etaS === null ? 'no progress in the last 30 s' : `ETA ${seconds(etaS)}`
}

function renderWork(s: DashboardLeaderState): void {
  const items: HTMLElement[] = []
  const r = s.repair
  if (r.blocks || r.parked) {
    items.push(progress('repair', r, `${r.blocks} block(s) queued, ${bytes(r.rate)}/s, ${eta(r.etaS)}${r.parked ? `; ${r.parked} below R wait for more live nodes` : ''}`, { work: 'repair' }))
  }
  if (s.rebalance) {
    const b = s.rebalance
    items.push(progress(`rebalance ${b.from} → ${b.to}`, b, eta(b.etaS), { work: 'rebalance' }))
  }
  for (const d of s.drains) {
    items.push(d.blocks === 0 ? el('div', { cls: 'work', data: { work: 'drain' }, text: `drain ${d.node}: drained; run berth node decommission ${d.node}` }) : progress(`drain ${d.node}`, d, `${d.blocks} block(s) left, ${eta(d.etaS)}`, { work: 'drain' }))
  }
  if (s.sameZone) items.push(el('div', { cls: 'work warn', text: `${s.sameZone} block(s) have every copy in one zone` }))
  if (!items.length && s.underReplicated > 0) {
    // a node just died: the repair loop queues its blocks at its next pass
    items.push(el('div', { cls: 'work warn', text: `${s.underReplicated} block(s) under-replicated; repair queues them at its next pass` }))
  }
  $('work').replaceChildren(...(items.length ? items : [el('div', { cls: 'dim', text: 'idle: nothing to repair, rebalance or drain' })]))
}

interface Series {
  name: string
  cls: string
  value: (x: DashboardSample) => number
}

const SVG = 'http://www.w3.org/2000/svg'
function svgEl(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (text !== undefined) e.textContent = text
  return e
}

/** A ceiling of 1, 2 or 5 times a power of ten; of a power of two for bytes (so 1 MiB, not 1.9 MiB). */
function niceMax(v: number, binary: boolean): number {
  if (v <= 0) return 1
  if (binary) return 2 ** Math.ceil(Math.log2(v))
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p
  return 10 * p
}

/** A line chart of the last WINDOW_MS in an inline SVG (420 x 150 user units, scaled to its box). */
function lineChart(id: string, now: number, series: Series[], fmt: (v: number) => string, floor = 1, binary = false): void {
  const svg = $(id)
  const W = 420
  const H = 150
  const left = 72
  const bottom = 18
  const max = niceMax(Math.max(floor, ...samples.flatMap((x) => series.map((s) => s.value(x)))), binary)
  const xOf = (t: number) => left + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (W - left - 4)
  const yOf = (v: number) => 4 + (1 - v / max) * (H - bottom - 8)
  const parts: SVGElement[] = []
  for (const f of [0, 0.5, 1]) {
    const y = yOf(max * f)
    parts.push(svgEl('line', { x1: left, x2: W - 4, y1: y, y2: y, class: 'grid' }))
    parts.push(svgEl('text', { x: left - 4, y: y + 4, 'text-anchor': 'end', class: 'axis' }, fmt(max * f)))
  }
  for (const [f, label] of [[0, '-10 min'], [0.5, '-5 min'], [1, 'now']] as const) {
    parts.push(svgEl('text', { x: left + f * (W - left - 4), y: H - 2, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle', class: 'axis' }, label))
  }
  for (const s of series) {
    if (samples.length === 0) continue
    const d = samples.map((x, i) => `${i === 0 ? 'M' : 'L'}${xOf(x.t).toFixed(1)},${yOf(s.value(x)).toFixed(1)}`).join(' ')
    parts.push(svgEl('path', { d, class: `line ${s.cls}` }))
  }
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`)
  svg.replaceChildren(...parts)
  const last = samples[samples.length - 1]
  const legend = svg.parentElement?.querySelector('.legend')
  legend?.replaceChildren(...series.map((s) => el('span', { cls: `key ${s.cls}`, text: `${s.name} ${last ? fmt(s.value(last)) : '-'}` })))
}

function renderCharts(s: DashboardLeaderState): void {
  lineChart('chart-ops', s.at, [
    { name: 'requests/s', cls: 's1', value: (x) => x.opsPerS },
    { name: 'errors/s', cls: 's2', value: (x) => x.errorsPerS },
  ], (v) => num(v))
  lineChart('chart-latency', s.at, [
    { name: 'p50', cls: 's1', value: (x) => x.p50Ms },
    { name: 'p99', cls: 's2', value: (x) => x.p99Ms },
  ], (v) => `${num(v, 2)} ms`)
  lineChart('chart-copy', s.at, [{ name: 'copied', cls: 's3', value: (x) => x.copyBytesPerS }], (v) => `${bytes(v)}/s`, 1024 * 1024, true)
}

function renderOps(s: DashboardLeaderState): void {
  const rows = s.topOps.slice(0, 12).map((o) => el('tr', {}, [el('td', { text: o.op, cls: 'mono' }), el('td', { text: num(o.perS, 2), cls: 'num' }), el('td', { text: `${num(o.meanMs, 2)} ms`, cls: 'num' })]))
  $('ops').querySelector('tbody')?.replaceChildren(...(rows.length ? rows : [el('tr', {}, [el('td', { text: 'no requests in the last minute', cls: 'dim' })])]))
}

function renderSessions(s: DashboardLeaderState): void {
  const rows = s.sessions.map((x) =>
    el('tr', { data: { session: x.id } }, [
      el('td', { text: x.host || '-' }),
      el('td', { text: x.id, cls: 'mono dim' }),
      el('td', { text: String(x.openFiles), cls: 'num' }),
      el('td', { text: x.expiresInMs > 0 ? `in ${seconds(x.expiresInMs / 1000)}` : 'expired', cls: 'num' }),
    ]),
  )
  $('sessions').querySelector('tbody')?.replaceChildren(...(rows.length ? rows : [el('tr', {}, [el('td', { text: 'no mounts', cls: 'dim' })])]))
}

function renderReplication(s: DashboardLeaderState): void {
  const box = $('ha')
  const r = s.replication
  box.hidden = !r
  if (!r) return
  box.replaceChildren(
    el('h2', { text: 'Replicated meta (--ha)' }),
    el('p', { text: `${s.metaId} leads, lease held ${(r.leaseAgeMs / 1000).toFixed(1)} s; log ${r.logFirstSeq ?? 1}..${r.lastLogSeq}${r.snapshotSeq ? `, snapshot at ${r.snapshotSeq}` : ''}` }),
    el('ul', {}, (r.replicas ?? []).map((p) => el('li', { text: `${p.metaId}: ${p.role}, applied ${p.applied}, lag ${p.lag}` }))),
  )
}

function main(): void {
  token = readToken()
  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault()
    const v = ($('token-input') as HTMLInputElement).value.trim()
    if (!v) return
    sessionStorage.setItem(TOKEN_KEY, v)
    token = v
    $('auth-error').textContent = ''
    void poll()
  })
  const loop = async () => {
    await poll().catch((err: unknown) => setConn(`error: ${(err as Error).message}`, 'stale'))
    setTimeout(() => void loop(), POLL_MS)
  }
  void loop()
}

main()
