// The Grafana dashboard contrib/grafana/tollgate.json (README "Grafana dashboard") against a real Prometheus
// scraping a real gateway process with an etcd section: after traffic that hits a rate limit, opens a breaker,
// ejects a target, retries, and reloads applied and rejected from the file and from etcd, every query of
// every panel and every template variable returns data.
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startEtcd } from '../helpers/etcd.js'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { MISSING_PROMETHEUS, PROMETHEUS_BIN, startPrometheus, type PrometheusServer } from '../helpers/prometheus.js'
import { freePort, startUpstream } from '../helpers/upstream.js'

const root = resolve(import.meta.dirname, '../..')
const DASHBOARD = join(root, 'contrib/grafana/tollgate.json')

interface Target { readonly refId: string; readonly expr: string; readonly datasource?: { type?: string; uid?: string } }
interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly datasource?: { type?: string; uid?: string }
  readonly targets?: readonly Target[]
  readonly panels?: readonly Panel[]
  readonly gridPos?: { h: number; w: number; x: number; y: number }
}
interface Variable {
  readonly name: string
  readonly type: string
  readonly query?: string | { query: string }
  readonly includeAll?: boolean
  readonly allValue?: string
}
interface Dashboard {
  readonly uid: string
  readonly title: string
  readonly panels: readonly Panel[]
  readonly templating: { readonly list: readonly Variable[] }
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
const allPanels = (list: readonly Panel[]): Panel[] => list.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row')

/**
 * What Grafana puts in place of a variable when "All" is selected (its allValue), and of the built-ins: a
 * rate window of 1m (four 1 s scrapes and more, like $__rate_interval), the dashboard's 1h range.
 */
const BUILTINS: Record<string, string> = { __rate_interval: '1m', __interval: '15s', __range: '1h' }
function substitute(expr: string): string {
  const values: Record<string, string> = { ...BUILTINS }
  for (const v of dashboard.templating.list) if (v.type === 'query') values[v.name] = v.allValue ?? '.*'
  const out = expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => values[braced ?? bare!] ?? whole)
  if (out.includes('$')) throw new Error(`unknown variable left in ${out}`)
  return out
}

/** The sum of the samples of `name` on a gateway's /metrics whose labels include `labels`. */
async function gatewayMetric(gw: GatewayProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await httpRequest(`${gw.adminUrl}/metrics`)).body
  let sum = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    const found = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

/** Polls the gateway's /metrics until `name{labels}` exceeds `above`; bounded. */
async function untilMetricAbove(gw: GatewayProcess, name: string, labels: Record<string, string>, above: number, what: string): Promise<void> {
  const deadline = Date.now() + 20_000
  let last = 0
  while (Date.now() < deadline) {
    last = await gatewayMetric(gw, name, labels)
    if (last > above) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what}: ${name}${JSON.stringify(labels)} still ${last} after 20 s\n${gw.stdout().slice(-3000)}`)
}

describe('Grafana dashboard contrib/grafana/tollgate.json', () => {
  it('is a dashboard Grafana can load: unique panel ids, every panel on the datasource variable, every variable it uses defined', () => {
    expect(dashboard.uid).toBe('tollgate')
    const ids = allPanels(dashboard.panels).map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    const names = new Set([...dashboard.templating.list.map((v) => v.name), ...Object.keys(BUILTINS)])
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'instance', 'route', 'upstream'])
    for (const p of panels) {
      expect(p.gridPos, p.title).toBeDefined()
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' })
      expect(p.targets?.length, p.title).toBeGreaterThan(0)
      for (const t of p.targets!) {
        expect(t.datasource, p.title).toEqual(p.datasource)
        for (const m of t.expr.matchAll(/\$\{?(\w+)/g)) expect(names.has(m[1]!), `${p.title}: $${m[1]} is not defined`).toBe(true)
      }
    }
    // Laid out on Grafana's 24-column grid without overlaps.
    const boxes = allPanels(dashboard.panels).map((p) => ({ title: p.title, ...p.gridPos! }))
    for (const [i, a] of boxes.entries()) {
      expect(a.x + a.w, a.title).toBeLessThanOrEqual(24)
      for (const b of boxes.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
        expect(overlap, `${a.title} overlaps ${b.title}`).toBe(false)
      }
    }
    // The panels the dashboard promises (README "Grafana dashboard").
    const exprs = panels.flatMap((p) => p.targets!.map((t) => t.expr)).join('\n')
    for (const metric of ['tollgate_requests_total', 'tollgate_request_duration_seconds_bucket', 'tollgate_ratelimit_decisions_total',
      'tollgate_circuit_breaker_state', 'tollgate_upstream_target_up', 'tollgate_upstream_ejections_total', 'tollgate_retries_total',
      'tollgate_config_reloads_total', 'tollgate_etcd_up']) expect(exprs).toContain(metric)
  })

  it('the Grafana provisioning files name a Prometheus datasource and a file provider', () => {
    const dsFile = parseYaml(readFileSync(join(root, 'contrib/grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as
      { apiVersion: number; datasources: Array<{ type: string; url: string; access: string }> }
    expect(dsFile.apiVersion).toBe(1)
    expect(dsFile.datasources).toMatchObject([{ type: 'prometheus', access: 'proxy' }])
    const provider = parseYaml(readFileSync(join(root, 'contrib/grafana/provisioning/dashboards/tollgate.yaml'), 'utf8')) as
      { apiVersion: number; providers: Array<{ type: string; options: { path: string } }> }
    expect(provider.apiVersion).toBe(1)
    expect(provider.providers).toMatchObject([{ type: 'file', options: { path: expect.stringMatching(/^\//) } }])
  })

  it('every panel query and every variable returns data from a real Prometheus after traffic that exercises it', async () => {
    expect(PROMETHEUS_BIN, MISSING_PROMETHEUS).toBeDefined()
    const etcd = await startEtcd()
    const good = await startUpstream({ statuses: [200] })
    const bad = await startUpstream({ statuses: [502] })
    const refused = `http://127.0.0.1:${await freePort()}`
    const state = mkdtempSync(join(tmpdir(), 'tollgate-dash-'))
    onTestFinished(() => rmSync(state, { recursive: true, force: true }))
    const routes = `
etcd: { endpoints: ["${etcd.endpoint}"], prefix: /dash, snapshotFile: ${join(state, 'snapshot.json')} }
upstreams:
  app: { targets: [{ url: ${good.url} }], retry: { attempts: 0 } }
  pool:
    targets: [{ url: ${good.url} }, { url: ${bad.url} }]
    retry: { attempts: 1, on: [502], backoff: 1ms }
    healthCheck: { passive: { consecutiveFailures: 2, ejectionTime: 5m, maxEjectionPercent: 50 } }
  down: { targets: [{ url: ${refused} }], retry: { attempts: 0 } }
routes:
  - { id: api, match: { path: /api/* }, upstream: pool }
  - id: limited
    match: { path: /limited/* }
    upstream: app
    rateLimit: [{ name: per-client, algorithm: token-bucket, rate: 1, period: 1h, burst: 3 }]
  - id: broken
    match: { path: /broken/* }
    upstream: down
    circuitBreaker: { window: 10s, minRequests: 3, errorRate: 50, openFor: 1h }
`
    const gw = await spawnGateway(routes)
    const prom = await startPrometheus({ targets: [new URL(gw.adminUrl).host] })
    await prom.scrapedAfter(Date.now())

    // Retries: a POST that fails is not retried (not idempotent); GETs that fail on the bad target are
    // retried on the good one, and its second failure ejects it (passive).
    for (let i = 0; i < 2; i++) await httpRequest(`${gw.url}/api/post/${i}`, { method: 'POST', body: 'x' })
    for (let i = 0; i < 6; i++) expect((await httpRequest(`${gw.url}/api/get/${i}`)).status).toBe(200)
    await untilMetricAbove(gw, 'tollgate_upstream_ejections_total', { upstream: 'pool', reason: 'passive' }, 0, 'the bad target was not ejected')
    // Rate limit: a bucket of 3 that refills once an hour.
    const limited: number[] = []
    for (let i = 0; i < 6; i++) limited.push((await httpRequest(`${gw.url}/limited/${i}`)).status)
    expect(limited).toEqual([200, 200, 200, 429, 429, 429])
    // Breaker: three connect failures of three open it; the next request is refused by the breaker.
    for (let i = 0; i < 3; i++) expect((await httpRequest(`${gw.url}/broken/${i}`)).status).toBe(502)
    const refusedByBreaker = await httpRequest(`${gw.url}/broken/4`)
    expect(refusedByBreaker.headers['x-tollgate-error']).toBe('CIRCUIT_OPEN')
    await httpRequest(`${gw.url}/nowhere`)

    // Reloads: the file, once valid and once not; etcd, one valid item and one rejected.
    const fileText = readFileSync(gw.configPath, 'utf8')
    const reloads = (source: string, result: string): Promise<number> => gatewayMetric(gw, 'tollgate_config_reloads_total', { source, result })
    const untilReload = async (source: string, result: string, change: () => unknown): Promise<void> => {
      const before = await reloads(source, result)
      await change()
      await untilMetricAbove(gw, 'tollgate_config_reloads_total', { source, result }, before, `no ${source} reload ${result}`)
    }
    // Replaced whole (rename), as editors do: the watcher never reads a half-written file.
    const replaceFile = (text: string): void => {
      writeFileSync(`${gw.configPath}.next`, text)
      renameSync(`${gw.configPath}.next`, gw.configPath)
    }
    await untilReload('file', 'applied', () => replaceFile(`${fileText}  - { id: extra, match: { path: /extra/* }, upstream: app }\n`))
    await untilReload('file', 'rejected', () => replaceFile(`${fileText}  - { id: extra, match: { path: /extra/* }, upstream: nowhere }\n`))
    await untilReload('etcd', 'applied', () => etcd.ctl(['put', '/dash/routes/from-etcd', JSON.stringify({ match: { path: '/etcd/*' }, upstream: 'app' })]))
    await untilReload('etcd', 'rejected', () => etcd.ctl(['put', '/dash/routes/bad', JSON.stringify({ match: { path: '/bad/*' }, upstream: 'nowhere' })]))
    expect((await httpRequest(`${gw.url}/etcd/x`)).status).toBe(200)

    // Two scrapes after all of it: a series born during the traffic needs two samples for rate().
    expect((await httpRequest(`${gw.adminUrl}/metrics`)).status).toBe(200)
    const first = await prom.scrapedAfter(Date.now())
    await prom.scrapedAfter(first)

    // The traffic did what the panels are meant to show.
    const value = async (expr: string): Promise<number | undefined> => (await prom.vector(expr))[0]?.value
    expect(await value('max(tollgate_circuit_breaker_state{route="broken"})')).toBe(2)
    expect(await value('sum(tollgate_upstream_ejections_total{upstream="pool", reason="passive"})')).toBe(1)
    expect(await value(`min(tollgate_upstream_target_up{upstream="pool", target="127.0.0.1:${bad.port}"})`)).toBe(0)
    expect(await value('sum(tollgate_retries_total{route="api"})')).toBeGreaterThan(0)
    expect(await value('sum(tollgate_retries_skipped_total{route="api", reason="not-idempotent"})')).toBeGreaterThan(0)
    expect(await value('sum(tollgate_ratelimit_decisions_total{route="limited", limiter="per-client", decision="rejected"})')).toBe(3)
    expect(await value('sum(tollgate_config_reloads_total{source="file", result="rejected"})')).toBe(1)
    expect(await value('sum(tollgate_config_reloads_total{source="etcd", result="rejected"})')).toBe(1)
    expect(await value('tollgate_etcd_up')).toBe(1)

    await expectEveryQueryAnswers(prom)
    // README "Prometheus": its example queries answer too (PromQL allows the # comments).
    const examples = readmePromql()
    expect(examples.length).toBeGreaterThanOrEqual(5)
    for (const expr of examples) expect(await prom.vector(expr), expr).not.toEqual([])
  }, 120_000)
})

/** The lines of the promql block in README.md's "### Prometheus". */
function readmePromql(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('\n### Prometheus\n'))
  const block = /```promql\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
  return block.split('\n').filter((l) => l.trim() !== '')
}

async function expectEveryQueryAnswers(prom: PrometheusServer): Promise<void> {
  const empty: string[] = []
  let queries = 0
  for (const p of panels) {
    for (const t of p.targets!) {
      const expr = substitute(t.expr)
      queries++
      const result = await prom.vector(expr)
      if (result.length === 0) empty.push(`panel "${p.title}" ${t.refId}: ${expr}`)
    }
  }
  for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
    const text = typeof v.query === 'string' ? v.query : v.query!.query
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(text)
    expect(m, `variable ${v.name}: ${text}`).not.toBeNull()
    queries++
    const values = await prom.labelValues(m![2]!, substitute(m![1]!))
    if (values.length === 0) empty.push(`variable ${v.name}: ${text}`)
    else if (v.name === 'route') expect(values).toEqual(expect.arrayContaining(['api', 'limited', 'broken', 'from-etcd']))
    else if (v.name === 'upstream') expect(values).toEqual(expect.arrayContaining(['app', 'pool', 'down']))
  }
  expect(empty, `${empty.length} of ${queries} queries returned nothing`).toEqual([])
}
