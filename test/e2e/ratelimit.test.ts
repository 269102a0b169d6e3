// Local rate limits through the real gateway (README "Rate limiting"): 429s with Retry-After that never
// reach the upstream, the RateLimit-* headers, keys, the "refused by one, counted by none" rule, metrics and
// reloads. Quotas refill over an hour here, so nothing depends on timing.
import { describe, expect, it } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

const HOUR_BUCKET = 'algorithm: token-bucket, rate: 1, period: 1h'

async function statuses(n: number, send: () => Promise<Response>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await send()).status)
  return out
}

describe('rate limits', () => {
  it('answers 429 RATE_LIMITED with Retry-After once the bucket is empty, and the upstream never sees it', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ name: per-client, ${HOUR_BUCKET}, burst: 3 }]
`)
    expect(await statuses(3, () => gw.get('/a'))).toEqual([200, 200, 200])
    const refused = await gw.get('/a')
    expect(refused.status).toBe(429)
    expect(refused.headers['x-tollgate-error']).toBe('RATE_LIMITED')
    expect(refused.json()).toMatchObject({ code: 'RATE_LIMITED' })
    // One token per hour: the next one comes in 3600 s (whole seconds, at least 1).
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(3500)
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(3600)
    expect(refused.headers['ratelimit-remaining']).toBe('0')
    expect(typeof refused.headers['x-request-id']).toBe('string')
    expect(up.hits).toBe(3)
  })

  it('puts RateLimit-Limit/Remaining/Reset/Policy on every response of a limited route, from the limiter with the lowest remaining quota', async () => {
    const up = await startUpstream({ headers: { 'ratelimit-limit': '999' } })
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit:
      - { name: big, ${HOUR_BUCKET}, burst: 10 }
      - { name: window, algorithm: sliding-window, limit: 4, window: 1h, key: route }
  - { id: free, match: { path: /free }, upstream: api }
`)
    const first = await gw.get('/a')
    expect(first.status).toBe(200)
    // big: 9 left of 10; window: 3 left of 4 -> the window is shown.
    expect(first.headers['ratelimit-limit']).toBe('4') // the upstream's own value is replaced
    expect(first.headers['ratelimit-remaining']).toBe('3')
    expect(first.headers['ratelimit-policy']).toBe('4;w=3600')
    expect(Number(first.headers['ratelimit-reset'])).toBeGreaterThan(3600) // full again after the next window ends
    const free = await gw.get('/free')
    expect(free.headers['ratelimit-limit']).toBe('999') // not limited: the upstream's headers pass untouched
    expect(free.headers['ratelimit-remaining']).toBeUndefined()
  })

  it('counts a request refused by one limiter in none of them', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit:
      - { name: route-wide, ${HOUR_BUCKET}, burst: 5, key: route }
      - { name: per-key, ${HOUR_BUCKET}, burst: 2, key: "header:x-key" }
`)
    const as = (key: string): Promise<Response> => gw.get('/a', { 'x-key': key })
    expect(await statuses(2, () => as('a'))).toEqual([200, 200])
    expect(await statuses(10, () => as('a'))).toEqual(Array(10).fill(429)) // per-key refuses: route-wide keeps 3
    expect(await statuses(4, () => as('b'))).toEqual([200, 200, 429, 429])
    expect(await statuses(2, () => as('c'))).toEqual([200, 429]) // the 5th and last of route-wide
    expect(up.hits).toBe(5)
    const metrics = (await gw.admin('/metrics')).body
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="route-wide",decision="allowed"} 5')
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="per-key",decision="allowed"} 5')
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="per-key",decision="rejected"} 12')
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="route-wide",decision="rejected"} 1')
  })

  it('gives requests without the key header one shared bucket: leaving it out is no way around the limit', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ ${HOUR_BUCKET}, burst: 2, key: "header:x-api-key,query:tenant" }]
`)
    expect(await statuses(3, () => gw.get('/a'))).toEqual([200, 200, 429])
    expect(await statuses(3, () => gw.get('/a?other=1'))).toEqual([429, 429, 429])
    expect(await statuses(3, () => gw.get('/a?tenant=t1'))).toEqual([200, 200, 429])
    expect(await statuses(3, () => gw.get('/a?tenant=t1', { 'x-api-key': 'k' }))).toEqual([200, 200, 429])
    expect(await statuses(1, () => gw.get('/a', { 'x-api-key': 'k' }))).toEqual([200]) // k with tenant missing: its own bucket
  })

  it('keys client-ip by the rightmost untrusted X-Forwarded-For address, IPv6 by its /64 and IPv4-mapped as IPv4', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
clientIp: { trustedProxies: [127.0.0.1/32] }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ ${HOUR_BUCKET}, burst: 1, key: client-ip }]
`)
    const from = (xff: string): Promise<number> => gw.get('/a', { 'x-forwarded-for': xff }).then((r) => r.status)
    expect(await from('203.0.113.7')).toBe(200)
    expect(await from('203.0.113.7')).toBe(429)
    expect(await from('198.51.100.1, 203.0.113.7')).toBe(429) // the left part is the client's to forge
    expect(await from('::ffff:203.0.113.7')).toBe(429) // the same IPv4 client
    expect(await from('203.0.113.8')).toBe(200)
    expect(await from('2001:db8:1:2::1')).toBe(200)
    expect(await from('2001:db8:1:2:ffff::99')).toBe(429) // same /64
    expect(await from('2001:0DB8:0001:0002::abcd')).toBe(429) // same /64, spelled differently
    expect(await from('2001:db8:1:3::1')).toBe(200) // the next /64
  })

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy: forged addresses never mint new buckets', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ ${HOUR_BUCKET}, burst: 2, key: client-ip }]
`)
    const codes: number[] = []
    for (let i = 0; i < 10; i++) codes.push((await gw.get('/a', { 'x-forwarded-for': `10.0.0.${i}` })).status)
    expect(codes).toEqual([200, 200, ...Array(8).fill(429)])
  })

  it('keeps a limiter\'s state across a reload that does not change it, and starts a changed limiter fresh', async () => {
    const up = await startUpstream()
    const config = (burstB: number, extraRoute: string): string => `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit:
      - { name: a, ${HOUR_BUCKET}, burst: 2, key: "header:x-a" }
      - { name: b, ${HOUR_BUCKET}, burst: ${burstB}, key: "header:x-b" }
${extraRoute}`
    const gw = await startGateway(config(2, ''))
    expect(await statuses(3, () => gw.get('/a', { 'x-a': '1', 'x-b': '1' }))).toEqual([200, 200, 429])
    expect(await statuses(2, () => gw.get('/a', { 'x-a': '2', 'x-b': '2' }))).toEqual([200, 200])
    // An unrelated edit: both buckets stay empty.
    expect(await gw.rewrite(config(2, `  - { id: other, match: { path: /other }, upstream: api }`))).toBe('applied')
    expect((await gw.get('/a', { 'x-a': '1', 'x-b': 'fresh' })).status).toBe(429)
    expect((await gw.get('/a', { 'x-a': 'fresh', 'x-b': '1' })).status).toBe(429)
    // b changes: it starts with full buckets; a keeps its state.
    expect(await gw.rewrite(config(3, ''))).toBe('applied')
    expect((await gw.get('/a', { 'x-a': 'fresh2', 'x-b': '1' })).status).toBe(200)
    expect((await gw.get('/a', { 'x-a': '1', 'x-b': 'fresh3' })).status).toBe(429)
    // The changed limiter's count of admitted requests goes on from the old one's: a counter never goes back.
    const metrics = (await gw.admin('/metrics')).body
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="a",decision="allowed"} 5')
    expect(metrics).toContain('tollgate_ratelimit_decisions_total{route="r",limiter="b",decision="allowed"} 5')
  })

  it('reports the keys held in tollgate_ratelimit_keys and drops those of a removed route', async () => {
    const up = await startUpstream()
    const limited = `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ ${HOUR_BUCKET}, burst: 5, key: "header:x-k" }]
`
    const gw = await startGateway(limited)
    for (let i = 0; i < 7; i++) await gw.get('/a', { 'x-k': String(i) })
    expect((await gw.admin('/metrics')).body).toMatch(/^tollgate_ratelimit_keys 7$/m)
    expect(await gw.rewrite(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: r2, match: { path: /a }, upstream: api }
`)).toBe('applied')
    const after = (await gw.admin('/metrics')).body
    expect(after).toMatch(/^tollgate_ratelimit_keys 0$/m)
    expect(after).not.toContain('route="r",limiter=')
  })
})
