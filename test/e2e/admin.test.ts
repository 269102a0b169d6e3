// Admin listener and metrics (README "Admin endpoints and metrics").
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

const PROMTOOL = ['/opt/prom/usr/bin/promtool', '/usr/bin/promtool'].find((p) => existsSync(p))

async function gatewayWithTraffic() {
  const up = await startUpstream({ statuses: [200, 200, 503] })
  const gw = await startGateway(`
upstreams:
  users: { targets: [{ url: ${up.url}, weight: 2 }], retry: { attempts: 0 } }
routes:
  - { id: users, match: { path: /users/:id, methods: [GET] }, upstream: users }
`)
  await gw.get('/users/1')
  await gw.get('/users/2')
  await gw.get('/users/3')
  await gw.get('/nowhere')
  await gw.request('/users/1', { method: 'DELETE' })
  await gw.request('/users/1', { method: 'PURGE' })
  return { up, gw }
}

describe('admin listener', () => {
  it('answers /healthz and /readyz with 200 once config is loaded', async () => {
    const { gw } = await gatewayWithTraffic()
    expect((await gw.admin('/healthz')).status).toBe(200)
    const ready = await gw.admin('/readyz')
    expect(ready.status).toBe(200)
  })

  it('turns /readyz to 503 on SIGTERM while the proxy still serves for shutdown.delay, then exits 0', async () => {
    const up = await startUpstream({ statuses: [200] })
    const proc = await spawnGateway(`shutdown: { delay: 2s, timeout: 5s }
upstreams:
  users: { targets: [{ url: ${up.url} }] }
routes:
  - { id: users, match: { path: /users/:id }, upstream: users }
`)
    expect((await httpRequest(proc.adminUrl + '/readyz')).status).toBe(200)

    process.kill(proc.pid, 'SIGTERM')

    // The signal is delivered asynchronously: ask until the answer changes (the test timeout bounds it).
    let readyz = await httpRequest(proc.adminUrl + '/readyz')
    while (readyz.status === 200) readyz = await httpRequest(proc.adminUrl + '/readyz')
    expect(readyz.status).toBe(503)
    expect(readyz.json()).toEqual({ status: 'not ready', reason: 'draining' })
    expect((await httpRequest(proc.url + '/users/1')).status).toBe(200)
    expect(proc.child.exitCode).toBeNull()
    expect(await proc.exited).toEqual({ code: 0, signal: null })
  })

  it('reports config, routes and upstream targets in /status', async () => {
    const { gw, up } = await gatewayWithTraffic()
    const status = (await gw.admin('/status')).json() as {
      config: { source: string; revision: string; appliedAt: string; rejected: unknown[] }
      routes: Array<{ id: string; upstream: string }>
      upstreams: Array<{ name: string; targets: Array<{ url: string; weight: number; healthy: boolean }> }>
    }
    expect(status.config.source).toBe('file')
    expect(status.config.revision).toMatch(/^[0-9a-f]{12}$/)
    expect(Date.parse(status.config.appliedAt)).toBeGreaterThan(0)
    expect(status.config.rejected).toEqual([])
    expect(status.routes).toEqual([expect.objectContaining({ id: 'users', upstream: 'users' })])
    expect(status.upstreams[0]!.targets).toEqual([expect.objectContaining({ url: up.url, weight: 2, healthy: true })])
  })

  it('serves nothing admin on the proxy port', async () => {
    const { gw } = await gatewayWithTraffic()
    for (const path of ['/metrics', '/healthz', '/readyz', '/status']) {
      const r = await gw.get(path)
      expect(r.status, path).toBe(404)
      expect(r.headers['x-tollgate-error']).toBe('ROUTE_NOT_FOUND')
    }
  })
})

describe('metrics', () => {
  it('counts requests by route id, bounded method and code; unmatched requests get route=""', async () => {
    const { gw } = await gatewayWithTraffic()
    const text = (await gw.admin('/metrics')).body
    expect(text).toContain('tollgate_requests_total{route="users",method="GET",code="200"} 2')
    expect(text).toContain('tollgate_requests_total{route="users",method="GET",code="503"} 1')
    expect(text).toContain('tollgate_requests_total{route="",method="GET",code="404"} 1')
    expect(text).toContain('tollgate_requests_total{route="",method="OTHER",code="405"} 1')
    expect(text).toContain('tollgate_requests_total{route="",method="DELETE",code="405"} 1')
    expect(text).not.toContain('/users/1')
    expect(text).not.toContain('nowhere')
    expect(text).toMatch(/tollgate_request_duration_seconds_count\{route="users"\} 3/)
    expect(text).toMatch(/tollgate_upstream_requests_total\{upstream="users",target="127\.0\.0\.1:\d+",code="200"\} 2/)
    expect(text).toMatch(/tollgate_upstream_duration_seconds_count\{upstream="users"\} 3/)
    expect(text).toContain('tollgate_inflight_requests 0')
    expect(text).toMatch(/tollgate_upstream_target_up\{upstream="users",target="127\.0\.0\.1:\d+"\} 1/)
    expect(text).toContain('tollgate_config_reloads_total{source="file",result="applied"} 1')
    expect(text).toMatch(/tollgate_config_last_reload_success_timestamp_seconds\{source="file"\} \d+/)
  })

  it('passes promtool check metrics', async () => {
    expect(PROMTOOL, 'promtool missing: .ci/run extracts it from Debian\'s prometheus package into /opt/prom').toBeDefined()
    const { gw } = await gatewayWithTraffic()
    const text = (await gw.admin('/metrics')).body
    const r = spawnSync(PROMTOOL!, ['check', 'metrics'], { input: text, encoding: 'utf8' })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})
