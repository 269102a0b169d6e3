import { describe, expect, it } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

describe('forwarding', () => {
  it('forwards a matched request to the upstream and returns its response', async () => {
    const up = await startUpstream({ body: 'pong' })
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    const r = await gw.get('/api/ping?x=1')
    expect(r.status).toBe(200)
    expect(r.body).toBe('pong')
    expect(up.requests[0]!.url).toBe('/api/ping?x=1')
    expect(r.headers['x-request-id']).toBeTypeOf('string')
  })
})
