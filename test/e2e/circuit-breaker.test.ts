// Circuit breakers end to end (README "Circuit breakers"): a real upstream that fails, a gateway from YAML.
// The breaker opens at errorRate, refuses fast while open, lets exactly halfOpenRequests trials through
// after openFor, closes when they succeed; fallbacks; metrics and /status; reloads.
import { describe, expect, it } from 'vitest'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

interface Switchable extends Upstream {
  /** The status of the next answers. */
  status: number
  /** While true, requests are held (not answered) until release(). */
  holding: boolean
  release(): void
}

/** An upstream whose status the test sets as it goes, and which can hold requests. */
async function startSwitchable(): Promise<Switchable> {
  const control = { status: 500, holding: false }
  const held: ServerResponse[] = []
  const send = (res: ServerResponse): void => {
    res.writeHead(control.status, { 'content-type': 'text/plain' })
    res.end(`status ${control.status}`)
  }
  const up = await startUpstream({
    handler: (_req: IncomingMessage, res: ServerResponse) => {
      if (control.holding) held.push(res)
      else send(res)
    },
  })
  return Object.defineProperties(up, {
    status: { get: () => control.status, set: (v: number) => { control.status = v } },
    holding: { get: () => control.holding, set: (v: boolean) => { control.holding = v } },
    release: {
      value: () => {
        control.holding = false
        for (const res of held.splice(0)) send(res)
      },
    },
  }) as Switchable
}

function yaml(url: string, breaker: string, extra = ''): string {
  return `
upstreams:
  api: { targets: [{ url: ${url} }] }
${extra}
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    circuitBreaker: ${breaker}
`
}

async function metricValue(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number | null> {
  const text = (await gw.admin('/metrics')).body
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    const found = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return null
}

interface BreakerStatus {
  readonly state: string
  readonly requests: number
  readonly failures: number
  readonly errorRate: number
  readonly nextTryAt: string | null
}

async function breakerStatus(gw: TestGateway, route = 'api'): Promise<BreakerStatus | undefined> {
  const body = (await gw.admin('/status')).json() as { breakers: Record<string, BreakerStatus> }
  return body.breakers[route]
}

/** Waits until an open breaker's nextTryAt (from /status) has passed; bounded by `limitMs`. */
async function untilHalfOpenDue(gw: TestGateway, limitMs = 5_000): Promise<void> {
  const status = await breakerStatus(gw)
  expect(status?.state).toBe('open')
  const waitMs = Date.parse(status!.nextTryAt!) - Date.now() + 5
  expect(waitMs).toBeLessThan(limitMs)
  if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs))
}

async function sequential(gw: TestGateway, n: number, path = '/api/x'): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await gw.get(path)).status)
  return out
}

describe('circuit breaker', () => {
  it('opens when every call fails, refuses fast without reaching the upstream, lets exactly halfOpenRequests trials through after openFor, and closes when they succeed', async () => {
    const up = await startSwitchable()
    const gw = await startGateway(yaml(up.url, '{ window: 10s, minRequests: 5, errorRate: 50, openFor: 1500ms, halfOpenRequests: 2 }'))
    expect(await sequential(gw, 5)).toEqual([500, 500, 500, 500, 500])
    expect(up.hits).toBe(5)

    // Open: 503 CIRCUIT_OPEN, fast, and the upstream sees nothing. (openFor leaves a loaded machine room
    // for these 20 requests before the breaker turns half-open.)
    const latencies: number[] = []
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now()
      const r = await gw.get('/api/x')
      latencies.push(performance.now() - t0)
      expect(r.status).toBe(503)
      expect(r.headers['x-tollgate-error']).toBe('CIRCUIT_OPEN')
      expect(r.json()).toMatchObject({ code: 'CIRCUIT_OPEN' })
    }
    expect(up.hits).toBe(5)
    latencies.sort((a, b) => a - b)
    expect(latencies[Math.floor(latencies.length / 2)], `open refusals took ${latencies.map((l) => l.toFixed(2)).join(', ')} ms`).toBeLessThan(5)

    const open = await breakerStatus(gw)
    expect(open).toMatchObject({ state: 'open', requests: 5, failures: 5, errorRate: 100 })
    expect(Date.parse(open!.nextTryAt!)).toBeGreaterThan(Date.now())
    expect(await metricValue(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBe(2)

    // Half-open: 6 concurrent requests while the (now healthy) upstream holds what reaches it: 2 trials
    // reach it, the other 4 are refused as open.
    await untilHalfOpenDue(gw)
    up.status = 200
    up.holding = true
    let refused!: () => void
    const fourRefused = new Promise<void>((resolve) => { refused = resolve })
    let refusals = 0
    const burst = Array.from({ length: 6 }, () => gw.get('/api/x').then((r) => {
      if (r.status === 503 && ++refusals === 4) refused()
      return r
    }))
    try {
      // Bounded: were more than 2 let through, the 4 refusals would never come.
      await Promise.race([fourRefused, new Promise((resolve) => setTimeout(resolve, 3_000).unref())])
      expect(refusals).toBe(4)
      expect(up.hits).toBe(5 + 2)
      expect((await breakerStatus(gw))?.state).toBe('half-open')
    } finally {
      up.release() // else shutdown would wait on the held requests
    }
    expect((await Promise.all(burst)).map((r) => r.status).sort()).toEqual([200, 200, 503, 503, 503, 503])

    // Both trials succeeded: closed, everything reaches the upstream again.
    expect(await sequential(gw, 3)).toEqual([200, 200, 200])
    expect(up.hits).toBe(10)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'closed', nextTryAt: null })
    expect(await metricValue(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBe(0)
    for (const to of ['open', 'half-open', 'closed']) {
      expect(await metricValue(gw, 'tollgate_circuit_breaker_transitions_total', { route: 'api', to })).toBe(1)
    }
  })

  it('opens again for another openFor when a trial fails', async () => {
    const up = await startSwitchable()
    const gw = await startGateway(yaml(up.url, '{ minRequests: 2, openFor: 300ms, halfOpenRequests: 1 }'))
    expect(await sequential(gw, 2)).toEqual([500, 500])
    await untilHalfOpenDue(gw)
    expect(await sequential(gw, 1)).toEqual([500]) // the trial, failed
    expect(up.hits).toBe(3)
    expect(await sequential(gw, 3)).toEqual([503, 503, 503])
    expect(up.hits).toBe(3)
    expect((await breakerStatus(gw))?.state).toBe('open')
    expect(await metricValue(gw, 'tollgate_circuit_breaker_transitions_total', { route: 'api', to: 'open' })).toBe(2)
    await untilHalfOpenDue(gw)
    up.status = 200
    expect(await sequential(gw, 2)).toEqual([200, 200])
    expect((await breakerStatus(gw))?.state).toBe('closed')
  })

  it('counts neither upstream 4xx nor statuses outside failOn', async () => {
    const up = await startSwitchable()
    up.status = 404
    const gw = await startGateway(yaml(up.url, '{ minRequests: 3, failOn: [502] }'))
    expect(await sequential(gw, 5)).toEqual([404, 404, 404, 404, 404])
    up.status = 500 // not in failOn [502]
    expect(await sequential(gw, 5)).toEqual([500, 500, 500, 500, 500])
    expect(await breakerStatus(gw)).toMatchObject({ state: 'closed', requests: 10, failures: 0 })
    up.status = 502
    expect(await sequential(gw, 10)).toEqual([502, 502, 502, 502, 502, 502, 502, 502, 502, 502])
    expect(await breakerStatus(gw)).toMatchObject({ state: 'open', requests: 20, failures: 10 })
  })

  it('counts connect failures (failOn connect-failure) and sees the outcome after retries', async () => {
    const good = await startSwitchable()
    good.status = 200
    const dead = await startUpstream()
    const deadUrl = dead.url
    await dead.close()
    // Every request's first attempt fails to connect, its retry succeeds: no failure for the breaker.
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${deadUrl} }, { url: ${good.url} }], balancer: round-robin, retry: { attempts: 1, on: [connect-failure], backoff: 0ms } }
  down: { targets: [{ url: ${deadUrl} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, circuitBreaker: { minRequests: 3, failOn: [connect-failure] } }
  - { id: down, match: { path: /down/* }, upstream: down, circuitBreaker: { minRequests: 3, failOn: [connect-failure] } }
`)
    expect(await sequential(gw, 6)).toEqual([200, 200, 200, 200, 200, 200])
    expect(await breakerStatus(gw, 'api')).toMatchObject({ state: 'closed', failures: 0 })
    expect(await sequential(gw, 4, '/down/x')).toEqual([502, 502, 502, 503])
    expect(await breakerStatus(gw, 'down')).toMatchObject({ state: 'open', failures: 3 })
  })

  it('answers with the fallback response while open', async () => {
    const up = await startSwitchable()
    const gw = await startGateway(yaml(up.url,
      `{ minRequests: 2, openFor: 1m, fallback: { status: 200, body: '{"items":[]}', headers: { content-type: application/json, x-fallback: "1" } } }`))
    expect(await sequential(gw, 2)).toEqual([500, 500])
    const r = await gw.get('/api/x')
    expect(r.status).toBe(200)
    expect(r.body).toBe('{"items":[]}')
    expect(r.headers['content-type']).toBe('application/json')
    expect(r.headers['x-fallback']).toBe('1')
    expect(r.headers['x-request-id']).toBeTruthy()
    expect(up.hits).toBe(2)
  })

  it('sends to the fallback upstream while open, whose failures never count against the breaker', async () => {
    const up = await startSwitchable()
    const spare = await startSwitchable()
    spare.status = 500
    const gw = await startGateway(yaml(up.url, '{ minRequests: 2, openFor: 400ms, fallback: { upstream: spare } }',
      `  spare: { targets: [{ url: ${spare.url} }] }`))
    expect(await sequential(gw, 2)).toEqual([500, 500])
    expect(await sequential(gw, 5)).toEqual([500, 500, 500, 500, 500])
    expect(spare.hits).toBe(5)
    expect(up.hits).toBe(2)
    expect(await breakerStatus(gw)).toMatchObject({ state: 'open', requests: 2 })
    spare.status = 203
    expect((await gw.get('/api/x')).status).toBe(203)
    await untilHalfOpenDue(gw)
    up.status = 200
    expect(await sequential(gw, 2)).toEqual([200, 200])
    expect(up.hits).toBe(4)
    expect(spare.hits).toBe(6)
  })

  it('keeps the route\'s other steps in front of the fallback upstream (its rate limit)', async () => {
    const up = await startSwitchable()
    const spare = await startSwitchable()
    spare.status = 200
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
  spare: { targets: [{ url: ${spare.url} }] }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 4, period: 1m, key: route }]
    circuitBreaker: { minRequests: 2, openFor: 1m, fallback: { upstream: spare } }
`)
    expect(await sequential(gw, 5)).toEqual([500, 500, 200, 200, 429])
    expect(spare.hits).toBe(2)
  })

  it('keeps an open breaker open across a reload that changes another route, and starts a changed one closed', async () => {
    const up = await startSwitchable()
    const breaker = '{ minRequests: 2, openFor: 1m }'
    const gw = await startGateway(yaml(up.url, breaker), { watch: false })
    expect(await sequential(gw, 3)).toEqual([500, 500, 503])

    expect(await gw.rewrite(yaml(up.url, breaker) + `  - { id: other, match: { path: /other/* }, upstream: api }\n`)).toBe('applied')
    expect(await sequential(gw, 2)).toEqual([503, 503])
    expect(up.hits).toBe(2)
    expect((await breakerStatus(gw))?.state).toBe('open')
    expect(await metricValue(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBe(2)

    expect(await gw.rewrite(yaml(up.url, '{ minRequests: 2, openFor: 2m }'))).toBe('applied')
    expect((await breakerStatus(gw))?.state).toBe('closed')
    expect(await metricValue(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBe(0)
    expect(await sequential(gw, 1)).toEqual([500])
    expect(up.hits).toBe(3)

    // The breaker goes with its setting: no series, no entry in /status.
    expect(await gw.rewrite(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)).toBe('applied')
    expect(await metricValue(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBeNull()
    expect(await metricValue(gw, 'tollgate_circuit_breaker_transitions_total', { route: 'api', to: 'open' })).toBeNull()
    expect(await breakerStatus(gw)).toBeUndefined()
  })
})
