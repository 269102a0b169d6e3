// Access lists through the real gateway (README "Access lists"): the client address the limiter's client-ip
// key sees (the peer, or X-Forwarded-For past trusted proxies) against allow/deny; refused requests get 403
// FORBIDDEN, never reach the upstream, and are counted in tollgate_auth_failures_total{reason="forbidden"}.
import { describe, expect, it } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

function failures(metrics: string, route: string, reason: string): number {
  const m = new RegExp(`^tollgate_auth_failures_total\\{route="${route}",reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? 0 : Number(m[1])
}

describe('access lists', () => {
  it('answers 403 FORBIDDEN to a denied peer, never forwards it, and counts it', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: closed, match: { path: /closed }, upstream: api, access: { allow: [10.0.0.0/8] } }
  - { id: denied, match: { path: /denied }, upstream: api, access: { deny: [127.0.0.0/8] } }
  - { id: open, match: { path: /open }, upstream: api, access: { allow: [127.0.0.1], deny: [10.0.0.0/8] } }
`)
    for (const path of ['/closed', '/denied']) {
      const r = await gw.get(path)
      expect(r.status, path).toBe(403)
      expect(r.headers['x-tollgate-error']).toBe('FORBIDDEN')
      expect(r.headers['content-type']).toBe('application/json')
      expect(typeof r.headers['x-request-id']).toBe('string')
      expect(r.json()).toEqual({ code: 'FORBIDDEN', message: 'the client address is not allowed on this route' })
    }
    expect(up.hits).toBe(0)
    expect((await gw.get('/open')).status).toBe(200)
    expect(up.hits).toBe(1)
    const metrics = (await gw.admin('/metrics')).body
    expect(failures(metrics, 'closed', 'forbidden')).toBe(1)
    expect(failures(metrics, 'denied', 'forbidden')).toBe(1)
    expect(failures(metrics, 'open', 'forbidden')).toBe(0)
  })

  it('checks the X-Forwarded-For client from a trusted proxy: IPv4, IPv6 and IPv4-mapped addresses', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
clientIp: { trustedProxies: [127.0.0.1/32, 10.0.0.0/8] }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    access: { allow: [198.51.100.0/24, "2001:db8::/32"], deny: [198.51.100.66, "2001:db8:bad::/48"] }
`)
    const from = async (xff: string): Promise<number> => (await gw.get('/a', { 'x-forwarded-for': xff })).status
    expect(await from('198.51.100.7')).toBe(200)
    expect(await from('198.51.100.66')).toBe(403) // deny wins over allow
    expect(await from('203.0.113.1')).toBe(403) // not on the allow list
    expect(await from('2001:db8::7')).toBe(200)
    expect(await from('2001:db8:bad::7')).toBe(403)
    expect(await from('2001:db9::7')).toBe(403)
    expect(await from('::ffff:198.51.100.7')).toBe(200) // mapped: matched as IPv4
    expect(await from('::ffff:198.51.100.66')).toBe(403)
    // Read right to left past trusted proxies: the client is the rightmost untrusted address.
    expect(await from('203.0.113.1, 198.51.100.7, 10.1.1.1')).toBe(200)
    expect(await from('198.51.100.7, 203.0.113.1, 10.1.1.1')).toBe(403)
    expect(await from('unknown')).toBe(403) // an address that cannot be checked is not let through
    expect(await gw.get('/a').then((r) => r.status)).toBe(403) // no header: the peer, 127.0.0.1
    expect(up.hits).toBe(4)
  })

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: r, match: { path: /a }, upstream: api, access: { allow: [198.51.100.0/24] } }
`)
    expect((await gw.get('/a', { 'x-forwarded-for': '198.51.100.7' })).status).toBe(403)
    expect(up.hits).toBe(0)
  })

  it('applies a reloaded list at once', async () => {
    const up = await startUpstream()
    const yaml = (list: string): string => `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: r, match: { path: /a }, upstream: api, access: { deny: [${list}] } }
`
    const gw = await startGateway(yaml('192.0.2.0/24'))
    expect((await gw.get('/a')).status).toBe(200)
    expect(await gw.rewrite(yaml('127.0.0.0/8'))).toBe('applied')
    expect((await gw.get('/a')).status).toBe(403)
    expect(await gw.rewrite(yaml('127.0.0.1/8'))).toBe('rejected') // host bits: the last good list stays
    expect((await gw.get('/a')).status).toBe(403)
  })
})
