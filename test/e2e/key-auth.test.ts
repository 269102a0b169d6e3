// API key auth through the real gateway (README "Authentication"): 401 UNAUTHORIZED with WWW-Authenticate
// for a missing or unknown key, never forwarded; a known key's consumer goes upstream in forwardConsumer
// (a client-sent one replaced) while the key itself (header or query parameter) does not; limits keyed by
// consumer; tollgate_auth_failures_total by reason.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

const sha = (key: string): string => 'sha256:' + createHash('sha256').update(key).digest('hex')
const ACME_KEY = 'acme-7Hq2-secret'
const GLOBEX_KEY = 'globex k/ey+1' // a space, a slash and a plus: percent-encoded in a query

function failures(metrics: string, route: string, reason: string): number {
  const m = new RegExp(`^tollgate_auth_failures_total\\{route="${route}",reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? 0 : Number(m[1])
}

function config(up: Upstream, extra = ''): string {
  return `
clientIp: { trustedProxies: [127.0.0.1/32] }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    auth:
      type: key
      key:
        header: x-api-key
        query: api_key
        consumers:
          acme: { keyHash: "${sha(ACME_KEY)}" }
          globex: { keyHash: "${sha(GLOBEX_KEY)}" }
      forwardConsumer: x-consumer
${extra}`
}

function expectUnauthorized(r: Response, message: string): void {
  expect(r.status).toBe(401)
  expect(r.headers['www-authenticate']).toBe('Key realm="tollgate"')
  expect(r.headers['x-tollgate-error']).toBe('UNAUTHORIZED')
  expect(r.headers['content-type']).toBe('application/json')
  expect(typeof r.headers['x-request-id']).toBe('string')
  expect(r.json()).toEqual({ code: 'UNAUTHORIZED', message })
}

describe('key auth', () => {
  it('answers 401 with WWW-Authenticate to a missing or unknown key, never forwards it, and counts each reason', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    expectUnauthorized(await gw.get('/api/x'), 'no API key in the request')
    expectUnauthorized(await gw.get('/api/x', { 'x-api-key': '' }), 'no API key in the request')
    expectUnauthorized(await gw.get('/api/x?api_key='), 'no API key in the request')
    const wrong = await gw.get('/api/x', { 'x-api-key': 'acme-7Hq2-secreT' })
    expectUnauthorized(wrong, 'the API key is not valid')
    expect(wrong.body).not.toContain('secreT') // never echoed
    expectUnauthorized(await gw.get('/api/x?api_key=nope'), 'the API key is not valid')
    expect(up.hits).toBe(0)
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'api', 'missing')).toBe(3)
    expect(failures(metrics, 'api', 'invalid')).toBe(2)
  })

  it('forwards the consumer in x-consumer, replacing the client\'s, and never the key header', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    const r = await gw.get('/api/x', { 'x-api-key': ACME_KEY, 'x-consumer': 'admin', 'x-other': '1' })
    expect(r.status).toBe(200)
    const seen = up.requests[0]!
    expect(seen.headers['x-consumer']).toBe('acme')
    expect(seen.headers['x-api-key']).toBeUndefined()
    expect(seen.headers['x-other']).toBe('1')
    // One x-consumer, the gateway's: the client's is gone, not merely shadowed.
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'x-consumer')).toHaveLength(1)
    expect(seen.url).toBe('/api/x')
  })

  it('takes the key from the query parameter (percent-decoded) and removes it, other parameters keeping order and bytes', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up))
    const encoded = encodeURIComponent(GLOBEX_KEY)
    expect((await gw.get(`/api/x?b=2&api_key=${encoded}&a=%41+1&api_key=again&z`)).status).toBe(200)
    expect(up.requests[0]!.url).toBe('/api/x?b=2&a=%41+1&z')
    expect(up.requests[0]!.headers['x-consumer']).toBe('globex')
    expect((await gw.get(`/api/y?api_key=${encodeURIComponent(ACME_KEY)}`)).status).toBe(200)
    expect(up.requests[1]!.url).toBe('/api/y')
    // The header wins over the query; the query parameter is removed all the same.
    expect((await gw.get('/api/z?api_key=wrong&q=1', { 'x-api-key': ACME_KEY })).status).toBe(200)
    expect(up.requests[2]!.url).toBe('/api/z?q=1')
    expect(up.requests[2]!.headers['x-consumer']).toBe('acme')
    // A parameter that only starts with the name is another parameter.
    expect((await gw.get('/api/w?api_key_x=1', { 'x-api-key': ACME_KEY })).status).toBe(200)
    expect(up.requests[3]!.url).toBe('/api/w?api_key_x=1')
  })

  it('keys limits by consumer, checks access first, and leaves unauthenticated routes alone', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up, `    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 2, key: consumer }]
  - id: internal
    match: { path: /internal }
    upstream: api
    access: { allow: [10.0.0.0/8] }
    auth: { type: key, key: { consumers: { ops: { keyHash: "${sha('ops-key')}" } } } }
  - { id: open, match: { path: /open }, upstream: api }
`))
    const as = async (key: string, xff: string): Promise<number> => (await gw.get('/api/x', { 'x-api-key': key, 'x-forwarded-for': xff })).status
    // acme from two addresses shares one quota; globex has its own.
    expect([await as(ACME_KEY, '192.0.2.1'), await as(ACME_KEY, '192.0.2.2'), await as(ACME_KEY, '192.0.2.3')]).toEqual([200, 200, 429])
    expect([await as(GLOBEX_KEY, '192.0.2.1'), await as(GLOBEX_KEY, '192.0.2.1')]).toEqual([200, 200])
    // An unauthenticated request is refused before the limiter: it takes no consumer's quota.
    expect((await gw.get('/api/x')).status).toBe(401)
    // access runs first: a refused address gets 403 whatever its key, and counts as forbidden, not missing.
    expect((await gw.get('/internal', { 'x-api-key': 'ops-key' })).status).toBe(403)
    expect((await gw.get('/internal')).status).toBe(403)
    expect((await gw.get('/internal', { 'x-forwarded-for': '10.1.2.3' })).status).toBe(401)
    expect((await gw.get('/internal', { 'x-forwarded-for': '10.1.2.3', 'x-api-key': 'ops-key' })).status).toBe(200)
    const r = await gw.get('/open', { 'x-api-key': 'kept', 'x-consumer': 'kept-too' })
    expect(r.status).toBe(200)
    const last = up.requests[up.requests.length - 1]!
    expect(last.headers['x-api-key']).toBe('kept') // no auth on this route: nothing stripped
    expect(last.headers['x-consumer']).toBe('kept-too')
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'internal', 'forbidden')).toBe(2)
    expect(failures(metrics, 'internal', 'missing')).toBe(1)
  })

  it('asks OPTIONS for a key too, unless a preflight route of higher priority without auth takes it (README)', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up, `  - { id: preflight, match: { path: /api/*, methods: [OPTIONS] }, priority: 1, upstream: api }
`))
    expect((await gw.request('/api/x', { method: 'OPTIONS' })).status).toBe(200)
    expect((await gw.get('/api/x')).status).toBe(401)
    const without = await startGateway(config(up))
    expect((await without.request('/api/x', { method: 'OPTIONS' })).status).toBe(401)
  })
})
