// README "Admin endpoints and metrics": tollgate_inflight_requests is the number of requests being handled
// now. Asserted while requests are held open at a slow upstream, not only at rest.
import { describe, expect, it, onTestFinished } from 'vitest'
import { httpRequest, spawnGateway, startGateway } from '../helpers/gateway.js'
import { sample, startHeldUpstream } from '../helpers/held.js'

const yaml = (url: string): string => `
upstreams:
  slow: { targets: [{ url: ${url} }] }
routes:
  - { id: slow, match: { path: /* }, upstream: slow }
`

describe('tollgate_inflight_requests', () => {
  it('counts the requests held at a slow upstream, and falls back to 0 once they are answered', async () => {
    const up = await startHeldUpstream()
    const gw = await startGateway(yaml(up.url))
    onTestFinished(() => up.release()) // before the gateway drains, when an assertion failed
    const pending = [1, 2, 3].map((i) => gw.get(`/x/${i}`))
    await up.holding(3)
    expect(sample((await gw.admin('/metrics')).body, 'tollgate_inflight_requests')).toBe(3)
    const status = (await gw.admin('/status')).json() as { inflight: number }
    expect(status.inflight).toBe(3)
    up.release()
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([200, 200, 200])
    expect(sample((await gw.admin('/metrics')).body, 'tollgate_inflight_requests')).toBe(0)
  })

  it('with --workers 2, the primary /metrics adds up the requests held in every worker', async () => {
    const up = await startHeldUpstream()
    const gw = await spawnGateway(yaml(up.url), ['--workers', '2'])
    onTestFinished(() => up.release())
    // Separate connections, so the kernel can hand them to either worker; the sum is what counts.
    const pending = [1, 2, 3, 4].map((i) => httpRequest(`${gw.url}/x/${i}`, { headers: { connection: 'close' } }))
    await up.holding(4)
    expect(sample((await httpRequest(`${gw.adminUrl}/metrics`)).body, 'tollgate_inflight_requests')).toBe(4)
    up.release()
    expect((await Promise.all(pending)).map((r) => r.status)).toEqual([200, 200, 200, 200])
    expect(sample((await httpRequest(`${gw.adminUrl}/metrics`)).body, 'tollgate_inflight_requests')).toBe(0)
    expect((await gw.stop()).code).toBe(0)
  })
})
