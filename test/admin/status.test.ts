// The /status JSON (src/admin/status.ts): from a live table (single process) and from the config alone
// (cluster primary, which holds no pools) it has the same shape; only what a live pool knows differs.
import { describe, expect, it, onTestFinished } from 'vitest'
import { renderStatus, type FileFacts } from '../../src/admin/status.js'
import { loadConfigText } from '../../src/config/load.js'
import { buildRouteTable } from '../../src/table/route-table.js'
import { Metrics } from '../../src/telemetry/metrics.js'

const loaded = loadConfigText(`upstreams:
  users: { targets: [{ url: "http://127.0.0.1:9001/", weight: 2 }, { url: http://localhost }], maxConcurrent: 10 }
routes:
  - { id: users, match: { path: /users/:id }, upstream: users }
`, 'routes.yaml', {})

const file: FileFacts = { path: 'routes.yaml', revision: 'abc', appliedAt: new Date(0), rejected: [], rejectedAt: null, current: loaded }

const noChecks = { state: 'up', reason: 'no health checks', active: null, passive: null }

describe('renderStatus', () => {
  it('lists the same routes and targets from the config alone as from the live table, live-only fields null', () => {
    const { table } = buildRouteTable(loaded.config, null, new Metrics({ defaultMetrics: false }))
    onTestFinished(() => table.close())
    const live = renderStatus({ file, config: table.config, version: table.version, table, inflight: 0, draining: false, etcd: null })
    const fromConfig = renderStatus({ file, config: loaded.config, version: 1, table: null, inflight: null, draining: false, etcd: null })

    expect(live['upstreams']).toEqual([{
      name: 'users', balancer: 'round-robin', inflight: 0, maxConcurrent: 10, panic: false, onAllUnhealthy: 'route-all', ejectionsRefused: null,
      targets: [
        { url: 'http://127.0.0.1:9001', weight: 2, healthy: true, ejected: false, registered: false, inflight: 0, health: noChecks },
        { url: 'http://localhost:80', weight: 1, healthy: true, ejected: false, registered: false, inflight: 0, health: noChecks },
      ],
    }])
    // The primary probes (its health shows the active state alone); ejection is each worker's.
    const nullLive = (u: unknown): unknown => JSON.parse(JSON.stringify(u), (key, value: unknown) =>
      ['inflight', 'panic', 'healthy', 'state', 'errors', 'local', 'ejected', 'health'].includes(key) ? null : value)
    expect({ ...fromConfig, upstreams: nullLive(fromConfig['upstreams']) }).toEqual({
      ...live, inflight: null, upstreams: nullLive(live['upstreams']), limiterStore: nullLive(live['limiterStore']),
      routes: [{ ...(live['routes'] as object[])[0], requests: null, errors: null }],
    })
  })

  it('gives each route the requests and 5xx answers its metrics counted, which a reload keeping the route keeps', () => {
    const metrics = new Metrics({ defaultMetrics: false })
    const { table } = buildRouteTable(loaded.config, null, metrics)
    onTestFinished(() => table.close())
    const counted = table.routeMetrics.get('users')!
    for (const [method, status] of [['GET', 200], ['GET', 200], ['POST', 503], ['PURGE', 500], ['GET', 404], ['GET', 499]] as const) counted.countRequest(method, status)
    const routesOf = (t: typeof table): unknown => renderStatus({ file, config: t.config, version: t.version, table: t, inflight: 0, draining: false, etcd: null })['routes']
    expect(routesOf(table)).toEqual([{ id: 'users', match: { path: '/users/:id' }, upstream: 'users', priority: 0, requests: 6, errors: 2 }])
    const { table: next } = buildRouteTable(loaded.config, table, metrics)
    onTestFinished(() => next.close())
    expect(routesOf(next)).toEqual(routesOf(table))
  })
})
