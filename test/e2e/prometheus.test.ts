// A real Prometheus scrapes a real gateway process (README "Observability"): the request counts, the p99 from
// tollgate_request_duration_seconds and the share of 429s that PromQL reads back are the traffic the test sent.
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway } from '../helpers/gateway.js'
import { MISSING_PROMETHEUS, PROMETHEUS_BIN, startPrometheus } from '../helpers/prometheus.js'
import { startUpstream } from '../helpers/upstream.js'

// src/telemetry/metrics.ts DURATION_BUCKETS: the p99 is checked against the bucket that holds the true p99.
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
// In the middle of the bucket (1, 2.5], so that a loaded machine moves no slow request out of it.
const SLOW_MS = 1500

/** The histogram bucket (lower, upper] that holds `seconds`. */
function bucketOf(seconds: number): [number, number] {
  let lower = 0
  for (const upper of BUCKETS) {
    if (seconds <= upper) return [lower, upper]
    lower = upper
  }
  return [lower, Infinity]
}

describe('Prometheus scraping the gateway', () => {
  it('reads back the request counts, the p99 and the 429 share the test generated', async () => {
    expect(PROMETHEUS_BIN, MISSING_PROMETHEUS).toBeDefined()
    const up = await startUpstream({
      handler: (req, res) => {
        const answer = (): void => { res.end('ok') }
        if (req.url?.startsWith('/api/slow') === true) setTimeout(answer, SLOW_MS)
        else answer()
      },
    })
    const gw = await spawnGateway(`
upstreams:
  app: { targets: [{ url: ${up.url} }], retry: { attempts: 0 } }
routes:
  - { id: api, match: { path: /api/* }, upstream: app }
  - id: limited
    match: { path: /limited/* }
    upstream: app
    rateLimit: [{ name: per-client, algorithm: token-bucket, rate: 1, period: 1h, burst: 10 }]
`)
    const prom = await startPrometheus({ targets: [new URL(gw.adminUrl).host] })
    // One scrape before the traffic: the histogram series exist from the start (bound when the route is
    // built), so rate() over them sees the whole traffic as an increase.
    await prom.scrapedAfter(Date.now())

    // 95 fast and 5 slow requests on route api: the 99th of 100 by latency is a slow one (>= 1.5 s), and so
    // would the 96th be; the p95 rank is still fast. Sent concurrently in batches so the slow ones overlap.
    const paths = [...Array.from({ length: 95 }, (_, i) => `/api/fast/${i}`), ...Array.from({ length: 5 }, (_, i) => `/api/slow/${i}`)]
    const latencies: number[] = []
    for (let i = 0; i < paths.length; i += 20) {
      await Promise.all(paths.slice(i, i + 20).map(async (p) => {
        const start = performance.now()
        const r = await httpRequest(gw.url + p)
        latencies.push((performance.now() - start) / 1000)
        expect(r.status).toBe(200)
      }))
    }
    // 30 requests to a bucket of 10 that refills one token an hour: 10 admitted, 20 refused with 429.
    const limited: number[] = []
    for (let i = 0; i < 30; i++) limited.push((await httpRequest(`${gw.url}/limited/${i}`)).status)
    expect(limited.filter((s) => s === 200)).toHaveLength(10)
    expect(limited.filter((s) => s === 429)).toHaveLength(20)
    for (let i = 0; i < 3; i++) expect((await httpRequest(`${gw.url}/nowhere/${i}`)).status).toBe(404)

    // The gateway counts a request when its response ends; an admin request answered after the traffic
    // is answered after those counts. Then wait for a scrape that started later still.
    expect((await httpRequest(`${gw.adminUrl}/metrics`)).status).toBe(200)
    await prom.scrapedAfter(Date.now())

    // route="" (unmatched) is, to Prometheus, a series without the label.
    const counts = await prom.vector('sum by (route, code) (tollgate_requests_total)')
    const byKey = Object.fromEntries(counts.map((s) => [`${s.metric['route'] ?? ''} ${s.metric['code']}`, s.value]))
    expect(byKey).toEqual({ 'api 200': 100, 'limited 200': 10, 'limited 429': 20, ' 404': 3 })
    expect(await prom.vector('sum(tollgate_requests_total)')).toMatchObject([{ value: 133 }])

    // The true p99 of what the test measured lies in the bucket (1, 2.5] (a slow request takes 1.5 s and
    // surely less than 2.5 s); histogram_quantile interpolates inside the bucket where rank 99 falls.
    latencies.sort((a, b) => a - b)
    const trueP99 = latencies[Math.ceil(0.99 * latencies.length) - 1]!
    const [lower, upper] = bucketOf(trueP99)
    expect([lower, upper]).toEqual([1, 2.5])
    const cumulative = await prom.vector('histogram_quantile(0.99, sum by (le) (tollgate_request_duration_seconds_bucket{route="api"}))')
    expect(cumulative).toHaveLength(1)
    expect(cumulative[0]!.value).toBeGreaterThan(lower)
    expect(cumulative[0]!.value).toBeLessThanOrEqual(upper)
    // The dashboard's form: over a rate window that spans the traffic.
    const windowed = await prom.vector('histogram_quantile(0.99, sum by (le) (rate(tollgate_request_duration_seconds_bucket{route="api"}[5m])))')
    expect(windowed[0]!.value).toBeGreaterThan(lower)
    expect(windowed[0]!.value).toBeLessThanOrEqual(upper)
    // And the p50 lies far below: the fast requests did not land in the slow bucket.
    expect((await prom.vector('histogram_quantile(0.5, sum by (le) (tollgate_request_duration_seconds_bucket{route="api"}))'))[0]!.value).toBeLessThan(1)
    expect(await prom.vector('sum(tollgate_request_duration_seconds_count{route="api"})')).toMatchObject([{ value: 100 }])

    // The 429 share of route limited, and the refusals per limiter.
    const share = await prom.vector('sum(tollgate_requests_total{route="limited",code="429"}) / sum(tollgate_requests_total{route="limited"})')
    expect(share[0]!.value).toBeCloseTo(20 / 30, 10)
    const decisions = await prom.vector('sum by (limiter, decision) (tollgate_ratelimit_decisions_total{route="limited"})')
    expect(Object.fromEntries(decisions.map((s) => [`${s.metric['limiter']} ${s.metric['decision']}`, s.value])))
      .toEqual({ 'per-client allowed': 10, 'per-client rejected': 20 })
  }, 90_000)
})
