// The status page for people (README "Status page"): `GET /` on the admin listener. One static HTML
// document with its CSS and script inline, built once at load; the script fetches /status (the JSON of
// status.ts) and redraws the tables in place every `?refresh=<seconds>` (default 3, at least 0.2).
//
// Air-gapped hosts: nothing is loaded from elsewhere (no CDN, no web font, no image), and the
// Content-Security-Policy says so: default-src 'none', the one script and the one style allowed by their
// SHA-256 hashes (no 'unsafe-inline'), fetches to the admin origin only.
//
// Everything from /status (route paths, upstream names, target URLs, rejection reasons: user-controlled
// text) goes into the DOM as textContent or a dataset value, never as markup.
//
// Request rate per route: /status carries each route's request and 5xx counts since the route was
// built (read from its tollgate_requests_total cells, src/telemetry/metrics.ts RouteMetrics.totals());
// the page divides the difference between two answers by the time between them. A count that went
// down (the route was removed and added again) shows no rate for that round.
import { performance } from 'node:perf_hooks'
import { createHash } from 'node:crypto'

const DEFAULT_REFRESH_S = 3

const STYLE = `
:root { color-scheme: light dark; --fg: #1d232a; --muted: #5f6b76; --bg: #fff; --line: #d8dde2; --head: #f2f4f6;
  --up: #17663a; --up-bg: #dcf3e4; --down: #9b1c1c; --down-bg: #fde2e2; --warn: #7a4b00; --warn-bg: #fff0cc; }
@media (prefers-color-scheme: dark) { :root { --fg: #e3e7eb; --muted: #9aa5b0; --bg: #15191d; --line: #323a42; --head: #1e2429;
  --up: #8fe0aa; --up-bg: #173325; --down: #ffb1b1; --down-bg: #4a1d1d; --warn: #ffd37a; --warn-bg: #43340f; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 1rem 1.5rem 2rem; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: .5rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
h3 { font-size: .95rem; margin: .9rem 0 .3rem; font-weight: 600; }
.muted, .empty td { color: var(--muted); }
.facts { display: flex; flex-wrap: wrap; gap: .2rem 1.5rem; margin: .6rem 0 0; padding: 0; list-style: none; }
.facts b { font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: .2rem 0; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
.nowrap { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .92em; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .7em; font-weight: 600; font-size: .9em; white-space: nowrap; }
.ok { color: var(--up); background: var(--up-bg); }
.bad { color: var(--down); background: var(--down-bg); }
.warn { color: var(--warn); background: var(--warn-bg); }
.unknown { color: var(--muted); background: var(--head); }
#error { margin: .6rem 0 0; padding: .4rem .6rem; border-radius: .3rem; }
#error[hidden] { display: none; }
`

// Browser script: plain ES2020 for any current browser. No template literals here (this is one).
const SCRIPT = `
'use strict';
(function () {
  var seconds = Number(new URLSearchParams(location.search).get('refresh'));
  var intervalMs = Math.round((isFinite(seconds) && seconds > 0 ? Math.min(Math.max(seconds, 0.2), 3600) : ${DEFAULT_REFRESH_S}) * 1000);
  var previous = null;
  var refreshes = 0;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text === null ? '\\u2014' : String(text);
    return e;
  }
  function cell(value, cls) {
    var td = el('td', cls);
    if (value instanceof Node) td.append(value);
    else td.textContent = value === null || value === undefined ? '\\u2014' : String(value);
    return td;
  }
  function row(values, classes) {
    var tr = el('tr');
    for (var i = 0; i < values.length; i++) tr.append(cell(values[i], classes && classes[i]));
    return tr;
  }
  function fill(id, rows, emptyText) {
    var body = $(id);
    if (rows.length === 0) {
      var tr = el('tr', 'empty');
      var td = el('td', null, emptyText);
      td.colSpan = body.parentElement.querySelectorAll('th').length || 1;
      tr.append(td);
      rows = [tr];
    }
    body.replaceChildren.apply(body, rows);
  }
  function badge(text, kind) { return el('span', 'badge ' + kind, text); }
  function time(iso) { return iso ? String(iso).replace('T', ' ').replace(/\\.\\d+Z$/, 'Z') : null; }
  function fact(label, value) {
    var li = el('li');
    li.append(el('span', 'muted', label + ' '), el('b', null, value));
    return li;
  }
  function perSecond(now, before, seconds) {
    if (before === undefined || seconds <= 0 || now === null || before === null || now < before) return null;
    var r = (now - before) / seconds;
    return r >= 100 ? r.toFixed(0) + '/s' : r.toFixed(1) + '/s';
  }
  // A serving process says up (status.ts describeHealth); the cluster primary gives its probe state (healthy),
  // or null without active checks (passive ejection is each worker's).
  var TARGET = { up: ['up', 'ok'], healthy: ['up', 'ok'], unhealthy: ['down', 'bad'], ejected: ['ejected', 'bad'], pending: ['pending', 'warn'] };
  var BREAKER = { closed: 'ok', 'half-open': 'warn', open: 'bad' };

  function renderSummary(s) {
    var c = s.config;
    var facts = [fact('source', c.source), fact('file', c.path), fact('revision', c.revision), fact('version', c.version),
      fact('applied', time(c.appliedAt)), fact('in flight', s.inflight), fact('state', s.draining ? 'draining' : 'serving')];
    if (c.etcd) facts.push(fact('etcd', (c.etcd.up ? 'up' : 'down') + ', revision ' + c.etcd.revision + (c.etcd.lastError ? ', last error: ' + c.etcd.lastError : '')));
    if (s.workers) facts.push(fact('workers', s.workers.ready + ' of ' + s.workers.configured + ' ready, ' + s.workers.restarts + ' restarts'));
    $('facts').replaceChildren.apply($('facts'), facts);
    fill('rejected', c.rejected.map(function (r) { return row([el('code', null, r.where), el('code', null, r.path), r.reason]); }),
      'none: the last reload was applied whole');
    $('rejected-at').textContent = c.rejectedAt ? 'last rejected at ' + time(c.rejectedAt) : '';
    var notes = c.warnings.map(function (w) { return row(['warning', w]); })
      .concat(c.notEnforced.map(function (n) { return row(['not enforced', n]); }));
    fill('notes', notes, 'none');
  }

  function renderRoutes(s, nowMs) {
    var seconds = previous === null ? 0 : (nowMs - previous.atMs) / 1000;
    var counts = new Map();
    fill('routes', s.routes.map(function (r) {
      counts.set(r.id, r);
      var before = previous === null ? undefined : previous.counts.get(r.id);
      var m = r.match;
      var match = (m.methods ? m.methods.join(',') + ' ' : '') + (m.host ? m.host : '') + m.path;
      var breaker = s.breakers[r.id];
      var upstream = typeof r.upstream === 'string' ? r.upstream : r.upstream.map(function (e) { return e.upstream + ' ' + e.weight; }).join(', ');
      var tr = row([el('code', null, r.id), el('code', null, match), upstream,
        perSecond(r.requests, before && before.requests, seconds), perSecond(r.errors, before && before.errors, seconds),
        r.requests, r.errors, breaker ? badge(breaker.state === null ? 'per worker' : breaker.state, BREAKER[breaker.state] || 'unknown') : 'none'],
        [null, null, null, 'num rate', 'num errors-rate', 'num', 'num', null]);
      tr.dataset.route = r.id;
      return tr;
    }), 'no routes');
    previous = { atMs: nowMs, counts: counts };
  }

  function renderUpstreams(s) {
    var blocks = s.upstreams.map(function (u) {
      var section = el('section');
      section.dataset.upstream = u.name;
      var h = el('h3');
      h.append(el('code', null, u.name), el('span', 'muted', ' ' + u.balancer +
        (u.inflight === null ? '' : ', ' + u.inflight + ' in flight') + (u.maxConcurrent === null ? '' : ' of at most ' + u.maxConcurrent) +
        (u.panic ? ', panic: all targets down, routing to all' : '')));
      var table = el('table');
      var head = el('tr');
      ['target', 'state', 'why', 'weight', 'in flight', 'registered'].forEach(function (t, i) { head.append(el('th', i === 3 || i === 4 ? 'num' : null, t)); });
      table.append(el('thead'), el('tbody'));
      table.tHead.append(head);
      u.targets.forEach(function (t) {
        var state = t.health && t.health.state;
        var shown = TARGET[state] || [state === null ? 'per worker' : String(state), 'unknown'];
        var tr = row([el('code', 'nowrap', t.url), badge(shown[0], shown[1]), t.health ? t.health.reason : null, t.weight, t.inflight, t.registered ? 'yes' : null],
          [null, 'state', null, 'num', 'num', null]);
        tr.dataset.target = t.url;
        tr.dataset.state = shown[0];
        table.tBodies[0].append(tr);
      });
      section.append(h, table);
      return section;
    });
    if (blocks.length === 0) blocks = [el('p', 'muted', 'no upstreams')];
    $('upstreams').replaceChildren.apply($('upstreams'), blocks);
  }

  function renderBreakers(s) {
    fill('breakers', Object.keys(s.breakers).map(function (id) {
      var b = s.breakers[id];
      return row([el('code', null, id), badge(b.state === null ? 'per worker' : b.state, BREAKER[b.state] || 'unknown'), b.requests, b.failures,
        b.errorRate === null ? null : Number(b.errorRate).toFixed(1) + ' %', time(b.nextTryAt)], [null, null, 'num', 'num', 'num', null]);
    }), 'no route has a circuit breaker');
  }

  function renderLimiters(s) {
    var l = s.limiterStore;
    var state = l.state === null ? badge('per worker', 'unknown') : l.state === 'none' ? 'none' : badge(l.state, l.state === 'ready' ? 'ok' : 'bad');
    fill('limiters', [
      row(['cluster (' + l.kind + ')', state, l.errors, l.lastError === null ? null : l.lastError + (l.lastErrorAt ? ' (' + time(l.lastErrorAt) + ')' : '')],
        [null, null, 'num', null]),
      row(['local', l.local === null ? 'per worker' : l.local.keys + ' of at most ' + l.local.maxKeys + ' keys', '', '']),
    ], '');
  }

  // JWT routes with a JWKS (README "JWT"): a set whose last fetch failed still serves its last good keys.
  function renderJwks(s) {
    fill('jwks', s.routes.filter(function (r) { return r.jwks; }).map(function (r) {
      var j = r.jwks;
      var state = j.keys === null ? badge('per worker', 'unknown') : j.lastError !== null ? badge('failing', j.keys > 0 ? 'warn' : 'bad') : badge('ok', 'ok');
      var tr = row([el('code', null, r.id), el('code', 'nowrap', j.url), state, j.keys, time(j.lastFetchAt),
        j.lastError === null ? null : j.lastError + (j.lastErrorAt ? ' (' + time(j.lastErrorAt) + ')' : '')],
        [null, null, 'state', 'num', null, null]);
      tr.dataset.route = r.id;
      return tr;
    }), 'no route has a JWKS');
  }

  function render(s, nowMs) {
    renderSummary(s);
    renderRoutes(s, nowMs);
    renderUpstreams(s);
    renderBreakers(s);
    renderLimiters(s);
    renderJwks(s);
  }

  function refresh() {
    var startedAt = Date.now();
    fetch('status', { cache: 'no-store', headers: { accept: 'application/json' } })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (s) {
        render(s, performance.now());
        refreshes++;
        document.body.dataset.fetchedAt = String(startedAt);
        document.body.dataset.refreshes = String(refreshes);
        $('updated').textContent = 'updated ' + new Date(startedAt).toLocaleTimeString() + ', every ' + intervalMs / 1000 + ' s';
        $('error').hidden = true;
      })
      .catch(function (err) {
        $('error').textContent = '/status did not answer (' + (err && err.message) + '); showing the last answer.';
        $('error').hidden = false;
      })
      .finally(function () { setTimeout(refresh, intervalMs); });
  }
  refresh();
})();
`

const HTML_HEAD = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Tollgate status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header><h1>Tollgate status</h1><span id="updated" class="muted">loading&hellip;</span></header>
<noscript><p>This page needs JavaScript to read <a href="status">/status</a> (the same facts as JSON).</p></noscript>
<p id="error" class="bad" hidden></p>
<ul id="facts" class="facts"></ul>
<h2>Routes</h2>
<table><thead><tr><th>route</th><th>match</th><th>upstream</th><th class="num">req/s</th><th class="num">5xx/s</th><th class="num">requests</th><th class="num">5xx</th><th>breaker</th></tr></thead><tbody id="routes"></tbody></table>
<h2>Upstreams</h2>
<div id="upstreams"></div>
<h2>Circuit breakers</h2>
<table><thead><tr><th>route</th><th>state</th><th class="num">requests</th><th class="num">failures</th><th class="num">error rate</th><th>next trial</th></tr></thead><tbody id="breakers"></tbody></table>
<h2>Rate-limit store</h2>
<table><thead><tr><th>store</th><th>state</th><th class="num">errors</th><th>last error</th></tr></thead><tbody id="limiters"></tbody></table>
<h2>JWT key sets</h2>
<table><thead><tr><th>route</th><th>JWKS</th><th>state</th><th class="num">keys</th><th>last good fetch</th><th>last error</th></tr></thead><tbody id="jwks"></tbody></table>
<h2>Config</h2>
<h3>Rejected <span id="rejected-at" class="muted"></span></h3>
<table><thead><tr><th>where</th><th>key</th><th>reason</th></tr></thead><tbody id="rejected"></tbody></table>
<h3>Warnings</h3>
<table><thead><tr><th></th><th>note</th></tr></thead><tbody id="notes"></tbody></table>
<script>${SCRIPT}</script>
</body>
</html>
`

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`
}

/** The page and its headers, the same for every request (built once). */
export const STATUS_PAGE = Object.freeze({
  body: Buffer.from(HTML_HEAD, 'utf8'),
  headers: Object.freeze({
    'content-type': 'text/html; charset=utf-8',
    // Nothing but this document, its own style and script, and fetches of /status from the same origin.
    'content-security-policy': [
      "default-src 'none'", `script-src ${sha256(SCRIPT)}`, `style-src ${sha256(STYLE)}`, "connect-src 'self'",
      'img-src data:', "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  }),
})
