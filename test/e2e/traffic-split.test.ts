// Weighted splits, sticky keys and splitRules (README "Traffic splitting"), through a real gateway to real
// upstreams on 127.0.0.1: what each upstream received is counted on the upstream itself.
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, startGateway, type TestGateway } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

/** `n` GETs of `path`, `concurrency` at a time; resolves with the statuses seen. */
async function sendMany(gw: TestGateway, n: number, path: (i: number) => string, headers: (i: number) => Record<string, string> = () => ({}), concurrency = 16): Promise<Map<number, number>> {
  const statuses = new Map<number, number>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      const r = await gw.get(path(i), headers(i))
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return statuses
}

const upstreams = (v1: Upstream, v2: Upstream, extra = ''): string => `
upstreams:
  v1: { targets: [{ url: ${v1.url} }] }
  v2: { targets: [{ url: ${v2.url} }] }
${extra}`

/** Which upstream answered: startUpstream's body names its port. */
function sideOf(body: string, v1: Upstream, v2: Upstream): 'v1' | 'v2' {
  if (body.startsWith(`hello from ${v1.port} `)) return 'v1'
  if (body.startsWith(`hello from ${v2.port} `)) return 'v2'
  throw new Error(`answer from neither upstream: ${body}`)
}

describe('weighted split', () => {
  // With independent random picks, 10,000 requests at 95/5 would spread by sigma = sqrt(10000 * 0.05 * 0.95)
  // = 21.8 requests (0.22%), and at 50/50 by 50 (0.5%): +-1.5% would be 6.9 and 3 sigma, failing about 1
  // run in 370 at 50/50. The split draws from a shuffled deck (src/upstream/traffic-split.ts), which is exact
  // over every 100 requests of a 95/5 or 50/50 split in one process; the test keeps the issue's +-1.5%.
  for (const [w1, w2] of [[95, 5], [50, 50]] as const) {
    it(`splits 10,000 requests ${w1}/${w2} within 1.5% at each upstream`, async () => {
      const v1 = await startUpstream()
      const v2 = await startUpstream()
      const gw = await startGateway(`${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: [{ upstream: v1, weight: ${w1} }, { upstream: v2, weight: ${w2} }] }
`)
      const statuses = await sendMany(gw, 10_000, (i) => `/api/${i}`)
      expect(statuses.get(200)).toBe(10_000)
      expect(v1.hits + v2.hits).toBe(10_000)
      expect(Math.abs(v1.hits - w1 * 100)).toBeLessThanOrEqual(150)
      expect(Math.abs(v2.hits - w2 * 100)).toBeLessThanOrEqual(150)
    }, 120_000)
  }

  it('names the upstream actually used in tollgate_upstream_requests_total', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const gw = await startGateway(`${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: [{ upstream: v1, weight: 0 }, { upstream: v2, weight: 1 }] }
`)
    await sendMany(gw, 20, (i) => `/api/${i}`)
    expect(v2.hits).toBe(20)
    const metrics = (await gw.admin('/metrics')).body
    expect(metrics).toContain(`tollgate_upstream_requests_total{upstream="v2",target="127.0.0.1:${v2.port}",code="200"} 20`)
    expect(metrics).not.toContain('tollgate_upstream_requests_total{upstream="v1"')
  })
})

describe('the access log of a split route', () => {
  it('names the upstream that served each request, and none for a request refused before the choice', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const proc = await spawnGateway(`${upstreams(v1, v2)}
routes:
  - id: api
    match: { path: /api/* }
    upstream: [{ upstream: v1, weight: 1 }, { upstream: v2, weight: 0 }]
    splitRules: [{ match: { headers: { x-canary: "1" } }, upstream: v2 }]
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 2, key: route }]
`, [], { TOLLGATE_LOG_LEVEL: 'info' })
    expect((await httpRequest(`${proc.url}/api/a`, { headers: { 'x-request-id': 'plain' } })).status).toBe(200)
    expect((await httpRequest(`${proc.url}/api/b`, { headers: { 'x-request-id': 'canary', 'x-canary': '1' } })).status).toBe(200)
    expect((await httpRequest(`${proc.url}/api/c`, { headers: { 'x-request-id': 'limited', 'x-canary': '1' } })).status).toBe(429)
    await proc.waitForStdout('"requestId":"limited"', 15_000)
    const access = proc.stdout().split('\n').filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as { requestId: string; upstream: string | null })
    expect(Object.fromEntries(access.map((l) => [l.requestId, l.upstream]))).toEqual({ plain: 'v1', canary: 'v2', limited: null })
  })
})

describe('sticky split', () => {
  it('sends each of 1,000 keys to one upstream on every request, and on a weight change moves only keys toward the upstream that gained', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const config = (w1: number, w2: number): string => `${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: [{ upstream: v1, weight: ${w1} }, { upstream: v2, weight: ${w2} }], sticky: header:x-user }
`
    const gw = await startGateway(config(95, 5))
    const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`)
    const sides = async (): Promise<Map<string, 'v1' | 'v2'>> => {
      const seen = new Map<string, 'v1' | 'v2'>()
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < keys.length * 3) {
          const i = next++
          const key = keys[i % keys.length]!
          const r = await gw.get('/api/x', { 'x-user': key })
          const side = sideOf(r.body, v1, v2)
          const before = seen.get(key)
          if (before !== undefined && before !== side) throw new Error(`${key} switched from ${before} to ${side}`)
          seen.set(key, side)
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      return seen
    }
    const first = await sides()
    const onV2 = [...first.values()].filter((s) => s === 'v2').length
    // 1,000 keys at 5%: 50 expected, sigma 6.9; the bounds are beyond 4 sigma.
    expect(onV2).toBeGreaterThan(20)
    expect(onV2).toBeLessThan(80)
    // A second pass after nothing changed: every key where it was.
    expect(await sides()).toEqual(first)

    expect(await gw.rewrite(config(90, 10))).toBe('applied')
    const after = await sides()
    const moved = keys.filter((k) => after.get(k) !== first.get(k))
    // Only v1 -> v2: the slice boundary moved from 0.95 to 0.90 (about 50 keys, sigma 6.9).
    for (const k of moved) expect([first.get(k), after.get(k)]).toEqual(['v1', 'v2'])
    expect(moved.length).toBeGreaterThan(20)
    expect(moved.length).toBeLessThan(80)
  }, 120_000)

  it('sticks by cookie, and splits a request without the key by weight', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const gw = await startGateway(`${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: [{ upstream: v1, weight: 50 }, { upstream: v2, weight: 50 }], sticky: cookie:sid }
`)
    for (let k = 0; k < 50; k++) {
      const sides = new Set<string>()
      for (let n = 0; n < 4; n++) sides.add(sideOf((await gw.get('/api/x', { cookie: `theme=dark; sid=s${k}; lang=en` })).body, v1, v2))
      expect(sides.size).toBe(1)
    }
    const before = { v1: v1.hits, v2: v2.hits }
    await sendMany(gw, 200, () => '/api/x', () => ({ cookie: 'theme=dark' }))
    // No key: the deck splits every 2 requests exactly 1/1.
    expect(v1.hits - before.v1).toBe(100)
    expect(v2.hits - before.v2).toBe(100)
  })
})

describe('sticky by client address', () => {
  it('keeps each client address (X-Forwarded-For past a trusted proxy) on one upstream', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const gw = await startGateway(`clientIp: { trustedProxies: [127.0.0.1/32] }
${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: [{ upstream: v1, weight: 50 }, { upstream: v2, weight: 50 }], sticky: client-ip }
`)
    const seen = new Map<string, Set<string>>()
    for (let n = 0; n < 3; n++) {
      for (let k = 0; k < 100; k++) {
        const ip = `10.0.${k >> 8}.${k & 255}`
        const side = sideOf((await gw.get('/api/x', { 'x-forwarded-for': ip })).body, v1, v2)
        const sides = seen.get(ip) ?? new Set<string>()
        sides.add(side)
        seen.set(ip, sides)
      }
    }
    for (const sides of seen.values()) expect(sides.size).toBe(1)
    // 100 addresses at 50/50: both sides get some (all on one side: chance 2^-99).
    expect(v1.hits).toBeGreaterThan(0)
    expect(v2.hits).toBeGreaterThan(0)
  })
})

describe('splitRules', () => {
  it('sends requests that match a rule by header or by cookie to its upstream, whatever the weights, and others by weight', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const gw = await startGateway(`${upstreams(v1, v2)}
routes:
  - id: api
    match: { path: /api/* }
    upstream: [{ upstream: v1, weight: 100 }, { upstream: v2, weight: 0 }]
    splitRules:
      - { match: { headers: { x-canary: "1" } }, upstream: v2 }
      - { match: { cookies: { beta: "yes" } }, upstream: v2 }
      - { match: { headers: { x-region: eu }, cookies: { tier: gold } }, upstream: v2 }
`)
    const side = async (headers: Record<string, string>): Promise<string> => sideOf((await gw.get('/api/x', headers)).body, v1, v2)
    expect(await side({ 'x-canary': '1' })).toBe('v2')
    expect(await side({ 'X-Canary': '1' })).toBe('v2')
    expect(await side({ 'x-canary': '2' })).toBe('v1')
    expect(await side({ cookie: 'a=b; beta=yes' })).toBe('v2')
    expect(await side({ cookie: 'beta=yess' })).toBe('v1')
    expect(await side({ cookie: 'xbeta=yes' })).toBe('v1')
    // Every condition of a rule must hold.
    expect(await side({ 'x-region': 'eu' })).toBe('v1')
    expect(await side({ 'x-region': 'eu', cookie: 'tier=gold' })).toBe('v2')
    expect(await side({})).toBe('v1')
  })

  it('lets a route with one upstream send rule matches to another', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const gw = await startGateway(`${upstreams(v1, v2)}
routes:
  - { id: api, match: { path: /api/* }, upstream: v1, splitRules: [{ match: { headers: { x-canary: "1" } }, upstream: v2 }] }
`)
    expect(sideOf((await gw.get('/api/x', { 'x-canary': '1' })).body, v1, v2)).toBe('v2')
    expect(sideOf((await gw.get('/api/x')).body, v1, v2)).toBe('v1')
  })
})

describe('live weight changes', () => {
  it('moves traffic on a routes.yaml reload and keeps the rate limiter and breaker state and the pools', async () => {
    const v1 = await startUpstream()
    const v2 = await startUpstream()
    const config = (w1: number, w2: number): string => `${upstreams(v1, v2)}
routes:
  - id: api
    match: { path: /api/* }
    upstream: [{ upstream: v1, weight: ${w1} }, { upstream: v2, weight: ${w2} }]
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 10, key: route }]
    circuitBreaker: { minRequests: 1000 }
`
    const gw = await startGateway(config(1, 0))
    await sendMany(gw, 6, () => '/api/x', undefined, 1)
    expect([v1.hits, v2.hits]).toEqual([6, 0])
    const v1Sockets = new Set(v1.sockets)
    const tableBefore = gw.gateway.table
    expect(await gw.rewrite(config(0, 1))).toBe('applied')
    const route = gw.gateway.table.routes.get('api')!
    const old = tableBefore.routes.get('api')!
    expect(route.parts.limiters[0]).toBe(old.parts.limiters[0])
    expect(route.breaker!.breaker).toBe(old.breaker!.breaker)
    expect(gw.gateway.table.upstreams.get('v1')!.pool).toBe(tableBefore.upstreams.get('v1')!.pool)
    // 4 tokens left of 10: the limiter was not reset by the weight change.
    const statuses = await sendMany(gw, 6, () => '/api/x', undefined, 1)
    expect(statuses.get(200)).toBe(4)
    expect(statuses.get(429)).toBe(2)
    expect([v1.hits, v2.hits]).toEqual([6, 4])
    expect(v1Sockets.size).toBeGreaterThan(0)
    for (const s of v1Sockets) expect(s.destroyed).toBe(false)
  })
})
