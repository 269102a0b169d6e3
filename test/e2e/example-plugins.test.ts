// The two example plugins of examples/plugins/ (README "Plugins") inside a real gateway with a real upstream:
// the tenant router and the request-signature check.
import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
// @ts-expect-error -- a plain JavaScript example without type declarations
import { sign } from '../../examples/plugins/request-signature.js'

const EXAMPLES = resolve(import.meta.dirname, '../../examples/plugins')
const signRequest = sign as (secret: string, method: string, path: string, query: string, timestamp: string) => string

describe('examples/plugins/tenant-router.js', () => {
  const config = (upstreamUrl: string, pluginConfig: string): string => `
upstreams: { api: { targets: [{ url: ${upstreamUrl} }] } }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    plugins:
      - module: ${EXAMPLES}/tenant-router.js
        config: ${pluginConfig}
`

  it('sends a known tenant upstream with its shard, and answers 400 and 403 itself', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up.url, '{ tenants: { acme: { shard: eu-1 }, globex: { shard: us-2 } } }'))
    const ok = await gw.get('/api/orders', { 'x-tenant': ' ACME ' })
    expect(ok.status).toBe(200)
    expect(ok.headers['x-served-tenant']).toBe('acme')
    expect(up.requests[0]!.headers['x-tenant']).toBe('acme')
    expect(up.requests[0]!.headers['x-tenant-shard']).toBe('eu-1')
    expect((await gw.get('/api/orders', { 'x-tenant': 'globex' })).status).toBe(200)
    expect(up.requests[1]!.headers['x-tenant-shard']).toBe('us-2')

    const missing = await gw.get('/api/orders')
    expect(missing.status).toBe(400)
    expect(missing.json()).toEqual({ code: 'TENANT_REQUIRED', message: 'the x-tenant header must name a tenant' })
    const unknown = await gw.get('/api/orders', { 'x-tenant': 'initech' })
    expect(unknown.status).toBe(403)
    expect(unknown.json()).toMatchObject({ code: 'TENANT_UNKNOWN' })
    // A name that is an Object.prototype property is no tenant.
    expect((await gw.get('/api/orders', { 'x-tenant': 'constructor' })).status).toBe(403)
    expect(up.hits).toBe(2)
  })

  it('reads the tenant from another header when configured, and forwards the shard as told', async () => {
    const up = await startUpstream()
    const gw = await startGateway(config(up.url, '{ header: x-org, forwardAs: x-shard, tenants: { acme: { shard: eu-1 } } }'))
    expect((await gw.get('/api/x', { 'x-tenant': 'acme' })).status).toBe(400)
    expect((await gw.get('/api/x', { 'x-org': 'acme' })).status).toBe(200)
    expect(up.requests[0]!.headers['x-shard']).toBe('eu-1')
  })

  it('refuses a config without tenants, or with a tenant without a shard, at load', async () => {
    const up = await startUpstream()
    await expect(startGateway(config(up.url, '{ header: x-org }'))).rejects.toThrow(/routes\[0\]\.plugins\[0\]\.config: must have required property 'tenants'/)
    await expect(startGateway(config(up.url, '{ tenants: { acme: {} } }'))).rejects.toThrow(/routes\[0\]\.plugins\[0\]\.config\.tenants\.acme: must have required property 'shard'/)
  })
})

describe('examples/plugins/request-signature.js', () => {
  const SECRET = 'correct horse battery staple'

  async function setUp(): Promise<{ get: (path: string, headers?: Record<string, string>) => Promise<{ status: number; body: string }>; hits: () => number }> {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: signed
    match: { path: /signed/* }
    upstream: api
    plugins:
      - { module: ${EXAMPLES}/request-signature.js, config: { secret: "${SECRET}", maxSkew: 60 } }
`)
    return { get: (path, headers) => gw.get(path, headers), hits: () => up.hits }
  }

  const now = (): string => String(Math.floor(Date.now() / 1000))

  it('forwards a request signed with the shared secret, whatever the order of its query parameters', async () => {
    const t = await setUp()
    const ts = now()
    const r = await t.get('/signed/orders?b=2&a=1', { 'x-signature': signRequest(SECRET, 'GET', '/signed/orders', 'a=1&b=2', ts), 'x-timestamp': ts })
    expect(r.status).toBe(200)
    expect(t.hits()).toBe(1)
  })

  it.each([
    ['no signature', () => ({ 'x-timestamp': now() })],
    ['a signature made with another secret', () => { const ts = now(); return { 'x-signature': signRequest('another secret of 16+', 'GET', '/signed/orders', '', ts), 'x-timestamp': ts } }],
    ['a signature of another path', () => { const ts = now(); return { 'x-signature': signRequest(SECRET, 'GET', '/signed/other', '', ts), 'x-timestamp': ts } }],
    ['a signature of another method', () => { const ts = now(); return { 'x-signature': signRequest(SECRET, 'POST', '/signed/orders', '', ts), 'x-timestamp': ts } }],
    ['a stale timestamp', () => { const ts = String(Math.floor(Date.now() / 1000) - 120); return { 'x-signature': signRequest(SECRET, 'GET', '/signed/orders', '', ts), 'x-timestamp': ts } }],
    ['a malformed signature', () => ({ 'x-signature': 'zz', 'x-timestamp': now() })],
  ])('answers 401 to %s and never calls the upstream', async (_what, headers) => {
    const t = await setUp()
    const r = await t.get('/signed/orders', headers())
    expect(r.status).toBe(401)
    expect(JSON.parse(r.body)).toMatchObject({ code: 'SIGNATURE_INVALID' })
    expect(t.hits()).toBe(0)
  })

  it('refuses a secret shorter than 16 characters at load', async () => {
    const up = await startUpstream()
    await expect(startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: s, match: { path: /s }, upstream: api, plugins: [{ module: ${EXAMPLES}/request-signature.js, config: { secret: short } }] }
`)).rejects.toThrow(/routes\[0\]\.plugins\[0\]\.config\.secret: must NOT have fewer than 16 characters/)
  })
})
