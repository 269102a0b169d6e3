// tollgate_requests_total per route: each method under its own label (the standard nine, the rest as OTHER),
// and every series gone when the route is removed.
import { describe, expect, it } from 'vitest'
import { Metrics } from '../../src/telemetry/metrics.js'

const STANDARD = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']

describe('tollgate_requests_total of a route', () => {
  it('counts each method under its own label, and every other method as OTHER', async () => {
    const metrics = new Metrics({ defaultMetrics: false })
    const route = metrics.forRoute('r1')
    STANDARD.forEach((method, i) => {
      for (let n = 0; n <= i; n++) route.countRequest(method, 200)
    })
    route.countRequest('PROPFIND', 200)
    route.countRequest('BREW', 200)
    route.countRequest('GET', 404)
    const text = await metrics.registry.metrics()
    STANDARD.forEach((method, i) => {
      expect(text).toContain(`tollgate_requests_total{route="r1",method="${method}",code="200"} ${i + 1}\n`)
    })
    expect(text).toContain('tollgate_requests_total{route="r1",method="OTHER",code="200"} 2\n')
    expect(text).toContain('tollgate_requests_total{route="r1",method="GET",code="404"} 1\n')
    expect(route.totals()).toEqual({ requests: 48, errors: 0 })
  })

  it('drops every series of the route when it is removed', async () => {
    const metrics = new Metrics({ defaultMetrics: false })
    const route = metrics.forRoute('r1')
    for (const method of [...STANDARD, 'PROPFIND']) route.countRequest(method, 503)
    route.remove()
    expect(await metrics.registry.metrics()).not.toMatch(/tollgate_requests_total\{route="r1"/)
  })
})
