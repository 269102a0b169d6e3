// The composition root: each component of a compiled upstream or route survives a rebuild while its own
// settings are unchanged, whatever else changed; commit() releases what only the old table used.
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { buildRouteTable, type RouteTable } from '../../src/table/route-table.js'
import { Metrics } from '../../src/telemetry/metrics.js'

const metrics = new Metrics({ defaultMetrics: false })

function config(upstreamExtra: string, routeExtra = '', targets = ['http://127.0.0.1:9001', 'http://127.0.0.1:9002']) {
  return loadConfigText(`
upstreams:
  api:
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
    ${upstreamExtra}
routes:
  - { id: api, match: { path: /api/* }, upstream: api${routeExtra} }
`, 'routes.yaml', {}).config
}

function build(yaml: ReturnType<typeof config>, prev: RouteTable | null): RouteTable {
  const built = buildRouteTable(yaml, prev, metrics)
  built.commit()
  onTestFinished(() => built.table.close())
  return built.table
}

describe('reuse per component across a rebuild', () => {
  it("keeps an upstream's pool, targets and connection pools when only its retry policy changes", () => {
    const a = build(config('retry: { attempts: 1 }'), null)
    const b = build(config('retry: { attempts: 3 }'), a)
    const ua = a.upstreams.get('api')!
    const ub = b.upstreams.get('api')!
    expect(ub.pool).toBe(ua.pool)
    expect(ub.bulkhead).toBe(ua.bulkhead)
    expect(ub.pool.targets[0]!.dispatcher).toBe(ua.pool.targets[0]!.dispatcher)
    expect(ub.retry).not.toBe(ua.retry)
    expect(ub.retry.attempts).toBe(3)
  })

  it('keeps the retry policy and the hash key when only the targets change', () => {
    const extra = 'retry: { attempts: 2 }\n    balancer: hash\n    hashKey: header:x-user'
    const a = build(config(extra), null)
    const b = build(config(extra, '', ['http://127.0.0.1:9001', 'http://127.0.0.1:9003']), a)
    const ua = a.upstreams.get('api')!
    const ub = b.upstreams.get('api')!
    expect(ub.retry).toBe(ua.retry)
    expect(ub.hashKey).not.toBeNull()
    expect(ub.hashKey).toBe(ua.hashKey)
    expect(ub.pool).not.toBe(ua.pool)
    // The kept target keeps its connection pool; the new one has its own.
    expect(ub.pool.targets[0]).toBe(ua.pool.targets[0])
    expect(ub.pool.targets[1]!.url).toBe('http://127.0.0.1:9003')
    expect(ub.pool.targets[1]!.dispatcher).not.toBeNull()
  })

  it("keeps a route's rewrite, upstream and bulkhead when a rate limit is added, which runs first", () => {
    const a = build(config('', ', rewrite: { stripPrefix: /api }'), null)
    const b = build(config('', ', rewrite: { stripPrefix: /api }, rateLimit: [{ algorithm: token-bucket, rate: 5 }]'), a)
    const ra = a.routes.get('api')!
    const rb = b.routes.get('api')!
    expect(rb.rewritePath).toBe(ra.rewritePath)
    expect(rb.upstream).toBe(ra.upstream)
    expect(rb.steps).toEqual([rb.parts.rateLimit, ...ra.steps])
    expect(rb.parts.rateLimit).not.toBeNull()
    expect(rb.metrics).toBe(ra.metrics)
  })

  it('orders access, auth, the consumer step, limiters, admission, and keeps the route whole when a reload changes nothing of it', () => {
    const hash = 'sha256:' + 'ab'.repeat(32)
    const extra = `, access: { deny: [192.0.2.0/24] }, auth: { type: key, key: { consumers: { c: { keyHash: "${hash}" } } } }, rateLimit: [{ algorithm: token-bucket, rate: 5, key: consumer }]`
    const a = build(config('', extra), null)
    const ra = a.routes.get('api')!
    expect(ra.steps).toEqual([ra.parts.access!.value, ra.parts.auth!.value, ra.parts.consumer!.value, ra.parts.rateLimit, ra.upstream.bulkhead])
    expect(ra.auth).toBe(ra.parts.auth!.value)
    expect(ra.auth!.strip).toEqual({ keyHeader: 'x-api-key', queryParam: null, forwardConsumer: 'x-consumer' })
    expect(build(config('', extra), a).routes.get('api')).toBe(ra)
    // A changed access list: a new access step, the same auth step and limiter.
    const c = build(config('', extra.replace('192.0.2.0/24', '198.51.100.0/24')), a).routes.get('api')!
    expect(c.parts.access!.value).not.toBe(ra.parts.access!.value)
    expect(c.parts.auth!.value).toBe(ra.parts.auth!.value)
    expect(c.parts.rateLimit).toBe(ra.parts.rateLimit)
    // A changed auth.allow: a new consumer step, the same auth step (a JWT or basic step keeps its cache).
    const d = build(config('', extra.replace('} } } }', '} } }, allow: [c] }')), a).routes.get('api')!
    expect(d.parts.consumer!.value).not.toBe(ra.parts.consumer!.value)
    expect(d.parts.auth!.value).toBe(ra.parts.auth!.value)
  })

  it('adds no consumer step to a JWT route without allow (nothing to check, no bounded label), one with it', () => {
    const jwt = (allow: string): string => `, auth: { type: jwt, jwt: { secret: "${'s'.repeat(32)}" }${allow} }`
    const a = build(config('', jwt('')), null).routes.get('api')!
    expect(a.parts.consumer).toBeNull()
    expect(a.steps).toEqual([a.parts.auth!.value, a.upstream.bulkhead])
    const b = build(config('', jwt(', allow: [alice]')), null).routes.get('api')!
    expect(b.steps).toEqual([b.parts.auth!.value, b.parts.consumer!.value, b.upstream.bulkhead])
  })

  it('keeps each limiter whose settings did not change and rebuilds the one that did', () => {
    const limits = (burst: number, maxBody: string): string =>
      `, maxBodySize: ${maxBody}, rateLimit: [{ name: a, algorithm: token-bucket, rate: 5 }, { name: b, algorithm: sliding-window, limit: ${burst} }]`
    const a = build(config('', limits(10, '1MiB')), null)
    const b = build(config('', limits(10, '2MiB')), a)
    const c = build(config('', limits(20, '2MiB')), b)
    const [la, lb, lc] = [a, b, c].map((t) => t.routes.get('api')!.parts.limiters.map((p) => p.value))
    expect(lb).toEqual(la) // an unrelated edit: the same limiter objects, so the same quotas
    expect(lb![0]).toBe(la![0])
    expect(lc![0]).toBe(lb![0])
    expect(lc![1]).not.toBe(lb![1])
    expect(b.routes.get('api')!.parts.rateLimit).toBe(a.routes.get('api')!.parts.rateLimit)
    expect(c.keyStore).toBe(a.keyStore)
  })

  it("rebuilds a route's rewrite, and nothing of its upstream, when the rewrite changes", () => {
    const a = build(config('', ', rewrite: { stripPrefix: /api }'), null)
    const b = build(config('', ', rewrite: { path: /v2/* }'), a)
    const ra = a.routes.get('api')!
    const rb = b.routes.get('api')!
    expect(rb.rewritePath).not.toBe(ra.rewritePath)
    expect(rb.rewritePath('/api/x', { '*': 'x' })).toBe('/v2/x')
    expect(rb.upstream).toBe(ra.upstream)
  })

  it('gives every target a new connection pool when timeouts.connect changes', () => {
    const a = build(config('timeouts: { connect: 1s }'), null)
    const b = build(config('timeouts: { connect: 2s }'), a)
    const ta = a.upstreams.get('api')!.pool.targets[0]!
    const tb = b.upstreams.get('api')!.pool.targets[0]!
    expect(tb).not.toBe(ta)
    expect(tb.dispatcher).not.toBe(ta.dispatcher)
    expect(ta.closing).toBe(true)
  })
})

describe('commit', () => {
  it('closes the connection pools of removed targets only, after the swap', () => {
    const a = build(config(''), null)
    const [kept, removed] = a.upstreams.get('api')!.pool.targets
    const built = buildRouteTable(config('', '', ['http://127.0.0.1:9001']), a, metrics)
    onTestFinished(() => built.table.close())
    // Built but not yet in service: nothing of the old table is touched.
    expect(removed!.closing).toBe(false)
    expect(removed!.dispatcher!.closed).toBe(false)
    built.commit()
    expect(removed!.closing).toBe(true)
    expect(removed!.dispatcher!.closed).toBe(true)
    expect(kept!.closing).toBe(false)
    expect(kept!.dispatcher!.closed).toBe(false)
  })
})
