/**
 * The dashboard page: one HTML document with its style and script inline, no
 * other asset (no CDN, no font, no image file). The script is the compiled
 * meta/dashboard/page-script.ts beside this file, read once; the
 * Content-Security-Policy allows exactly that script and that style (by
 * SHA-256) and requests to this origin only.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const STYLE = `
:root { --bg:#f6f7f9; --fg:#1d2430; --dim:#6b7585; --card:#fff; --line:#dde1e7; --ok:#1f8a4c; --bad:#c62828; --warn:#b26a00; --s1:#2f6fd6; --s2:#d6452f; --s3:#7a3fd0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:16px; align-items:baseline; padding:10px 20px; background:#1d2430; color:#fff; }
header h1 { font-size:18px; margin:0; }
header .conn { margin-left:auto; font-size:12px; }
.conn.ok::before { content:'● '; color:#4ade80; } .conn.stale::before, .conn.bad::before { content:'● '; color:#f87171; }
main { padding:16px 20px; max-width:1400px; }
body.stale #live { opacity:.6; }
h2 { font-size:15px; margin:18px 0 8px; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(170px, 1fr)); gap:10px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.card .value { font-size:19px; font-weight:600; }
.card .label { color:var(--dim); font-size:12px; }
.card.warn .value { color:var(--bad); }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line); }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); }
th { font-size:12px; color:var(--dim); font-weight:600; }
.num { text-align:right; font-variant-numeric:tabular-nums; }
.mono { font-family:ui-monospace, monospace; font-size:12px; }
.dim { color:var(--dim); }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; background:var(--dim); }
.badge.live { background:var(--ok); } .badge.dead { background:var(--bad); } .badge.draining, .badge.full { background:var(--warn); }
.bar { position:relative; height:18px; min-width:180px; background:#e8ebf0; border-radius:4px; overflow:hidden; }
.bar .fill { position:absolute; inset:0 auto 0 0; background:#9cc3f5; }
.bar .fill.hot { background:#f5a39c; }
.bar span { position:relative; padding-left:6px; font-size:12px; line-height:18px; }
.work { display:grid; grid-template-columns:220px minmax(200px, 420px) 1fr; gap:12px; align-items:center; padding:6px 0; }
.work.warn { color:var(--warn); display:block; }
.charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(380px, 1fr)); gap:12px; margin-top:16px; }
figure { margin:0; background:var(--card); border:1px solid var(--line); border-radius:6px; padding:8px 10px; }
figcaption { display:flex; gap:12px; font-weight:600; }
figcaption .legend { margin-left:auto; display:flex; gap:10px; font-weight:400; font-size:12px; }
svg { width:100%; height:auto; display:block; }
.grid { stroke:var(--line); stroke-width:1; }
.axis { fill:var(--dim); font-size:11px; }
.line { fill:none; stroke-width:1.8; }
.line.s1 { stroke:var(--s1); } .line.s2 { stroke:var(--s2); } .line.s3 { stroke:var(--s3); }
.key::before { content:'━ '; } .key.s1::before { color:var(--s1); } .key.s2::before { color:var(--s2); } .key.s3::before { color:var(--s3); }
.two { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; }
#auth form { display:flex; gap:8px; align-items:center; }
#auth input { width:360px; padding:4px 6px; }
#auth-error { color:var(--bad); }
`

const BODY = `
<header><h1>berth</h1><span id="cluster"></span><span id="meta"></span><span id="conn" class="conn bad">connecting…</span></header>
<main>
<section id="auth" hidden>
  <h2>Dashboard token</h2>
  <p>This page needs the cluster's read-only dashboard token: <code>berth up</code> prints the address with it and keeps it in <code>DIR/ui-token</code>; otherwise it is the file given to <code>berth meta --ui-token-file</code>.</p>
  <form id="auth-form"><input id="token-input" type="password" autocomplete="off" placeholder="token"><button type="submit">Open</button></form>
  <p id="auth-error"></p>
</section>
<section id="follower" hidden></section>
<div id="live" hidden>
  <section class="cards" id="cards"></section>
  <h2>Data nodes</h2>
  <table id="nodes"><thead><tr><th>node</th><th>zone</th><th>state</th><th>used / capacity</th><th class="num">blocks</th><th>url</th><th class="num">last heartbeat</th></tr></thead><tbody></tbody></table>
  <h2>Repair, rebalance, drain</h2>
  <section id="work"></section>
  <section class="charts">
    <figure><figcaption>Metadata requests / s<span class="legend"></span></figcaption><svg id="chart-ops" role="img" aria-label="requests per second"></svg></figure>
    <figure><figcaption>Request latency<span class="legend"></span></figcaption><svg id="chart-latency" role="img" aria-label="latency"></svg></figure>
    <figure><figcaption>Background copies<span class="legend"></span></figcaption><svg id="chart-copy" role="img" aria-label="copy rate"></svg></figure>
  </section>
  <div class="two">
    <section><h2>Busiest requests, last minute</h2><table id="ops"><thead><tr><th>op</th><th class="num">per s</th><th class="num">mean</th></tr></thead><tbody></tbody></table></section>
    <section><h2>Sessions (mounts)</h2><table id="sessions"><thead><tr><th>host</th><th>session</th><th class="num">open files</th><th class="num">expires</th></tr></thead><tbody></tbody></table></section>
  </div>
  <section id="ha" hidden></section>
</div>
</main>
`

export interface DashboardPage {
  html: string
  /** The Content-Security-Policy header that goes with `html`. */
  csp: string
}

let cached: DashboardPage | null = null

export function dashboardPage(): DashboardPage {
  if (cached) return cached
  const compiled = readFileSync(join(__dirname, 'page-script.js'), 'utf8').replace(/\n\/\/# sourceMappingURL=.*$/m, '')
  // tsc emits CommonJS (an `exports` object); the page gives it one of its own
  const script = `(function (exports) {\n${compiled}\n})({});`
  const sha = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="referrer" content="no-referrer">
<title>berth dashboard</title><style>${STYLE}</style></head>
<body>${BODY}<script>${script}</script></body></html>
`
  const csp = [`default-src 'none'`, `script-src ${sha(script)}`, `style-src ${sha(STYLE)}`, `connect-src 'self'`, `img-src 'self'`, `base-uri 'none'`, `form-action 'none'`, `frame-ancestors 'none'`].join('; ')
  cached = { html, csp }
  return cached
}
