// Retries (README "Retries and timeouts"). Idempotent methods only, on another target than the one
// that failed, full-jitter exponential back-off capped at 10x, never once response bytes went to the
// client, counted in tollgate_retries_total.
import { describe, expect, it } from 'vitest'
import { RetryPolicy } from '../../src/upstream/retry-policy.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { rawRequest, statusOf } from '../helpers/raw.js'
import { freePort, startUpstream, type Upstream } from '../helpers/upstream.js'

interface Arrival {
  readonly requestId: string
  readonly method: string
  readonly host: string
  readonly atMs: number
}

/** An upstream answering every request with `status`, recording when each one arrived. */
async function startTimed(status: number): Promise<Upstream & { arrivals: Arrival[] }> {
  const arrivals: Arrival[] = []
  const up = await startUpstream({
    handler: (req, res) => {
      arrivals.push({ requestId: String(req.headers['x-request-id']), method: req.method ?? '', host: req.headers.host ?? '', atMs: performance.now() })
      res.writeHead(status, { 'content-type': 'text/plain' })
      res.end(`${status} from ${req.socket.localPort}`)
    },
  })
  return Object.assign(up, { arrivals })
}

function gatewayYaml(targets: readonly string[], retry: string, extra = ''): string {
  return `
upstreams:
  api:
    targets: [${targets.map((t) => `{ url: ${t} }`).join(', ')}]
    retry: ${retry}
${extra}
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`
}

/** The value of one series in /metrics, 0 when absent. */
async function metricValue(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const text = (await gw.admin('/metrics')).body
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    const found = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

async function closedUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`
}

describe('retries', () => {
  it('retry: {} takes the defaults (2 attempts on connect-failure, reset, 502, 503, 504)', async () => {
    const ups = await Promise.all([502, 504, 200].map((st) => startTimed(st)))
    const gw = await startGateway(gatewayYaml(ups.map((u) => u.url), '{}'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(200)
    expect(ups.map((u) => u.hits)).toEqual([1, 1, 1])
  })

  it('without a retry section nothing is retried (as Envoy: retries are opt-in)', async () => {
    const failing = await startTimed(503)
    const good = await startTimed(200)
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${failing.url} }, { url: ${good.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    expect((await gw.get('/api/x')).status).toBe(503)
    expect(good.hits).toBe(0)
  })

  it('retries a GET on another target after a connect failure', async () => {
    const dead = await closedUrl()
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([dead, good.url], '{ attempts: 2, on: [connect-failure], backoff: 0ms }'))
    // Equal weights, smooth round-robin: the first request goes to the first target (the dead one).
    const r = await gw.get('/api/x')
    expect(r.status).toBe(200)
    expect(good.hits).toBe(1)
    const deadTarget = dead.slice('http://'.length)
    expect(await metricValue(gw, 'tollgate_upstream_requests_total', { target: deadTarget, code: '0' })).toBe(1)
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(1)
  })

  it('retries a GET on another target after a 503 and returns the second target\'s response', async () => {
    const failing = await startTimed(503)
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([failing.url, good.url], '{ attempts: 2, on: [503], backoff: 0ms }'))
    const r = await gw.get('/api/x', { 'x-request-id': 'retry-1' })
    expect(r.status).toBe(200)
    expect(r.body).toBe(`200 from ${good.port}`)
    expect(failing.arrivals.map((a) => a.requestId)).toEqual(['retry-1'])
    expect(good.arrivals.map((a) => a.requestId)).toEqual(['retry-1'])
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(1)
    expect(await metricValue(gw, 'tollgate_upstream_requests_total', { target: `127.0.0.1:${failing.port}`, code: '503' })).toBe(1)
  })

  it('sends the retry the same request, with the new target\'s Host under hostHeader: target', async () => {
    const failing = await startTimed(503)
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([failing.url, good.url], '{ attempts: 1, on: [503], backoff: 0ms }', '    hostHeader: target'))
    expect((await gw.get('/api/x?q=1', { 'x-request-id': 'same-1' })).status).toBe(200)
    expect(failing.arrivals[0]).toMatchObject({ requestId: 'same-1', host: `127.0.0.1:${failing.port}` })
    expect(good.arrivals[0]).toMatchObject({ requestId: 'same-1', host: `127.0.0.1:${good.port}` })
    expect(good.requests[0]!.url).toBe('/api/x?q=1')
  })

  it('retries a response timeout when retry.on has timeout', async () => {
    const slow = await startUpstream({ delaysMs: [3000] })
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([slow.url, good.url], '{ attempts: 1, on: [timeout], backoff: 0ms }', '    timeouts: { response: 200ms }'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(200)
    expect(slow.hits).toBe(1)
    expect(good.hits).toBe(1)
  })

  it('retries a reset when retry.on has reset, and not otherwise', async () => {
    const resetting = await startUpstream({ handler: (req) => req.socket.destroy() })
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([resetting.url, good.url], '{ attempts: 1, on: [reset], backoff: 0ms }'))
    expect((await gw.get('/api/x')).status).toBe(200)
    expect(resetting.hits).toBe(1)
    expect(good.hits).toBe(1)

    const resetting2 = await startUpstream({ handler: (req) => req.socket.destroy() })
    const good2 = await startTimed(200)
    const gw2 = await startGateway(gatewayYaml([resetting2.url, good2.url], '{ attempts: 1, on: [503], backoff: 0ms }'))
    const r = await gw2.get('/api/x')
    expect(r.status).toBe(502)
    expect(r.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    expect(good2.hits).toBe(0)
  })

  it('passes a status that retry.on does not list straight through', async () => {
    const failing = await startTimed(500)
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([failing.url, good.url], '{ attempts: 2, on: [502, 503], backoff: 0ms }'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(500)
    expect(r.body).toBe(`500 from ${failing.port}`)
    expect(good.hits).toBe(0)
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(0)
  })

  it('never retries on the target that failed: with one target the 503 is returned after one try', async () => {
    const failing = await startTimed(503)
    const gw = await startGateway(gatewayYaml([failing.url], '{ attempts: 3, on: [503], backoff: 0ms }'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(503)
    expect(r.body).toBe(`503 from ${failing.port}`)
    expect(failing.hits).toBe(1)
  })

  it('bounds the attempts: 1 + attempts tries, then the last response is returned', async () => {
    const ups = await Promise.all([503, 503, 503, 503, 503].map((s) => startTimed(s)))
    const gw = await startGateway(gatewayYaml(ups.map((u) => u.url), '{ attempts: 2, on: [503], backoff: 0ms }'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(503)
    expect(r.headers['x-tollgate-error']).toBeUndefined() // the upstream's own 503
    const hits = ups.map((u) => u.hits)
    expect(hits.reduce((a, b) => a + b, 0)).toBe(3)
    expect(Math.max(...hits)).toBe(1)
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(2)
  })

  it('bounds the attempts on connect failures too, then answers 502', async () => {
    const dead = await Promise.all([1, 2, 3, 4].map(() => closedUrl()))
    const gw = await startGateway(gatewayYaml(dead, '{ attempts: 2, on: [connect-failure], backoff: 0ms }'))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(502)
    expect(r.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    let tries = 0
    for (const url of dead) tries += await metricValue(gw, 'tollgate_upstream_requests_total', { target: url.slice(7), code: '0' })
    expect(tries).toBe(3)
  })
})

describe('retries never duplicate non-idempotent work', () => {
  it('a POST reaches exactly one target exactly once even when it fails', async () => {
    const a = await startTimed(503)
    const b = await startTimed(503)
    const gw = await startGateway(gatewayYaml([a.url, b.url], '{ attempts: 3, on: [connect-failure, reset, 502, 503, 504], backoff: 0ms }'))
    for (let i = 0; i < 4; i++) {
      const r = await gw.request('/api/x', { method: 'POST', headers: { 'x-request-id': `post-${i}` }, body: i % 2 === 0 ? '{"order":1}' : undefined })
      expect(r.status).toBe(503)
    }
    const ids = [...a.arrivals, ...b.arrivals].map((x) => x.requestId).sort()
    expect(ids).toEqual(['post-0', 'post-1', 'post-2', 'post-3'])
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(0)
    // The same setup retries GETs: the difference is the method alone.
    expect((await gw.get('/api/x')).status).toBe(503)
    expect(a.hits + b.hits).toBe(6)
  })

  it('a POST is not retried after a connect failure either', async () => {
    const dead = await closedUrl()
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([dead, good.url], '{ attempts: 2, on: [connect-failure], backoff: 0ms }'))
    const r = await gw.request('/api/x', { method: 'POST', body: 'x' })
    expect(r.status).toBe(502)
    expect(good.hits).toBe(0)
  })

  it('never retries once response bytes went to the client', async () => {
    // Headers and a first piece of the body, then the socket dies.
    const broken = await startUpstream({
      handler: (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' })
        res.write('partial', () => req.socket.destroy())
      },
    })
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([broken.url, good.url], '{ attempts: 2, on: [connect-failure, reset, 502, 503, 504], backoff: 0ms }'))
    const raw = await rawRequest(gw.port, 'GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n', 2000)
    expect(statusOf(raw)).toBe(200)
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
    expect(body).toBe('partial') // 7 of the 1000 announced bytes, then the connection closed
    expect(broken.hits).toBe(1)
    expect(good.hits).toBe(0)
  })
})

describe('retry back-off', () => {
  it('waits a full-jitter delay below the base before a first retry', async () => {
    const failing = await startTimed(503)
    const good = await startTimed(200)
    const gw = await startGateway(gatewayYaml([failing.url, good.url], '{ attempts: 1, on: [503], backoff: 200ms }', '    balancer: hash\n    hashKey: header:x-k'))
    const gaps: number[] = []
    for (let i = 0; i < 40 && gaps.length < 10; i++) {
      const id = `k-${i}`
      const r = await gw.get('/api/x', { 'x-k': id, 'x-request-id': id })
      expect(r.status).toBe(200)
      const first = failing.arrivals.find((a) => a.requestId === id)
      if (first === undefined) continue // this key hashes to the good target: no retry
      gaps.push(good.arrivals.find((a) => a.requestId === id)!.atMs - first.atMs)
    }
    expect(gaps.length).toBe(10)
    // Below the base, with room for a busy machine (a gap also holds a loopback round trip).
    for (const gap of gaps) expect(gap).toBeLessThan(200 + 150)
    // Jittered, not fixed and not 0: uniform in [0, 200) over 10 draws (P(max < 50) ~ 1e-6,
    // P(spread < 20) ~ 1e-7); a back-off of 0 leaves every gap at a round trip.
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(50)
    expect(Math.max(...gaps) - Math.min(...gaps)).toBeGreaterThanOrEqual(20)
  })

  it('grows exponentially per attempt and is capped at 10x the base', async () => {
    // Three requests at once, each failing on all 11 targets: 10 retries, 30 gaps. Base 50ms: the
    // ceilings are 50, 100, 200, 400, then 500 (10 x 50ms) for retries 5 to 10. Uncapped they would be
    // 800, 1600, 3200, 6400 and 12800ms.
    const ups = await Promise.all(Array.from({ length: 11 }, () => startTimed(503)))
    const gw = await startGateway(gatewayYaml(ups.map((u) => u.url), '{ attempts: 10, on: [503], backoff: 50ms }'))
    const ids = ['r0', 'r1', 'r2']
    const results = await Promise.all(ids.map((id) => gw.get('/api/x', { 'x-request-id': id })))
    expect(results.map((r) => r.status)).toEqual([503, 503, 503])
    const gapsOf = (id: string): number[] => {
      const times = ups.flatMap((u) => u.arrivals.filter((a) => a.requestId === id).map((a) => a.atMs)).sort((x, y) => x - y)
      expect(times).toHaveLength(11)
      return times.slice(1).map((t, k) => t - times[k]!)
    }
    const gaps = ids.map(gapsOf) // gaps[request][k - 1]: the wait before retry k
    const early = gaps.flatMap((g) => g.slice(0, 2)) // ceilings 50 and 100
    const late = gaps.flatMap((g) => g.slice(4)) // ceiling 500 each
    // Capped: no wait reaches 10 x base plus a generous allowance for a loaded machine. Uncapped, every
    // one of the 18 late waits would have to stay below 800ms: a chance of about 1e-14.
    for (const gap of gaps.flat()) expect(gap).toBeLessThan(500 + 300)
    // It grows: the 18 late waits are uniform in [0, 500), the 6 early ones in [0, 50) or [0, 100). A flat
    // back-off of the base keeps every wait under 50ms plus a round trip; a back-off of 0 under a round
    // trip. P(no late wait above 250ms) = 2^-18 ~ 4e-6; the late mean (250 +- 34) exceeds the early one
    // (37.5 +- 9) by 50ms or less with P ~ 1e-6 (the round trips are in both).
    expect(Math.max(...late)).toBeGreaterThan(250)
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
    expect(mean(late) - mean(early)).toBeGreaterThan(50)
    // And it waits at all: the 10 retries of a request wait 1875ms on average; P(< 300ms) < 3e-7.
    for (const g of gaps) expect(g.reduce((a, b) => a + b, 0)).toBeGreaterThan(300)
  })

  it('the ceiling doubles per attempt up to 10x the base (RetryPolicy with its random source at the top)', () => {
    const policy = new RetryPolicy({ attempts: 10, on: [503], backoff: 25, budget: 20 }, () => 0.999999)
    expect([1, 2, 3, 4, 5, 6, 10].map((n) => policy.backoffMs(n))).toEqual([24, 49, 99, 199, 249, 249, 249])
    const zero = new RetryPolicy({ attempts: 10, on: [503], backoff: 25, budget: 20 }, () => 0)
    expect(zero.backoffMs(3)).toBe(0)
  })

  it('with backoff 0ms retries at once', async () => {
    const ups = await Promise.all(Array.from({ length: 11 }, () => startTimed(503)))
    const gw = await startGateway(gatewayYaml(ups.map((u) => u.url), '{ attempts: 10, on: [503], backoff: 0ms }'))
    await gw.get('/api/warm') // open the connection pools so the timing below is the retries' alone
    const before = ups.reduce((n, u) => n + u.hits, 0)
    const t0 = performance.now()
    expect((await gw.get('/api/x')).status).toBe(503)
    const elapsed = performance.now() - t0
    expect(ups.reduce((n, u) => n + u.hits, 0) - before).toBe(11)
    // Eleven tries on loopback, with room for a busy machine; the default 25ms base would wait about
    // 940ms on average.
    expect(elapsed).toBeLessThan(500)
  })
})
