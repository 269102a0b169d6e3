// The status page document (src/admin/status-page.ts) as the admin listener serves it: HTML with its
// script and style inline and allowed by hash, a Content-Security-Policy that loads nothing from elsewhere,
// no reference to any other host. What it shows is tested in a browser: test/e2e/status-page.test.ts.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { httpRequest, startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

async function gateway() {
  const up = await startUpstream({ statuses: [200] })
  return startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
}

const hashOf = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`

describe('GET / on the admin listener', () => {
  it('serves the status page with its inline script and style allowed by hash, and nothing else', async () => {
    const gw = await gateway()
    const page = await gw.admin('/?refresh=1')
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['x-content-type-options']).toBe('nosniff')
    expect(page.headers['cache-control']).toBe('no-store')
    expect(Number(page.headers['content-length'])).toBe(Buffer.byteLength(page.body))

    const csp = Object.fromEntries(String(page.headers['content-security-policy']).split('; ').map((d) => {
      const [name, ...values] = d.split(' ')
      return [name, values]
    }))
    const scripts = [...page.body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!)
    const styles = [...page.body.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!)
    expect(scripts).toHaveLength(1)
    expect(styles).toHaveLength(1)
    expect(csp).toEqual({
      'default-src': ["'none'"], 'script-src': [hashOf(scripts[0]!)], 'style-src': [hashOf(styles[0]!)], 'connect-src': ["'self'"],
      'img-src': ['data:'], 'base-uri': ["'none'"], 'form-action': ["'none'"], 'frame-ancestors': ["'none'"],
    })
    // Air-gapped hosts: no other host named anywhere (no CDN, font or image), no external script or sheet.
    expect(page.body).not.toMatch(/(https?:)?\/\/[a-z0-9]/i)
    expect(page.body).not.toMatch(/<script [^>]*src=|<link [^>]*stylesheet|@import|url\(/i)
    expect(page.body).not.toContain('innerHTML')
  })

  it('answers HEAD without a body and keeps /status JSON', async () => {
    const gw = await gateway()
    const head = await httpRequest(gw.adminUrl + '/', { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    expect(head.headers['content-type']).toBe('text/html; charset=utf-8')
    const status = await gw.admin('/status')
    expect(status.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(status.json()).toMatchObject({ routes: [{ id: 'api', requests: 0, errors: 0 }] })
    await gw.get('/api/x')
    expect((await gw.admin('/status')).json()).toMatchObject({ routes: [{ id: 'api', requests: 1, errors: 0 }] })
    const missing = await gw.admin('/nothing')
    expect(missing.status).toBe(404)
    expect(missing.json()).toEqual({ status: 'error', message: 'no admin endpoint /nothing; try / (status page), /healthz, /readyz, /status, /metrics' })
  })
})
