// Health checks (README "Health checks") through a whole gateway, against real upstreams on 127.0.0.1:
// active probes take targets out and back, a new target waits for its first good probe, probes stop for
// removed targets and state survives a reload; passive ejection counts attempts, re-admits by itself,
// doubles its time, respects maxEjectionPercent; onAllUnhealthy; client-caused failures never count.
import { describe, expect, it } from 'vitest'
import { Agent, request } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startHealthUpstream, until, type HealthUpstream } from '../helpers/health-upstream.js'
import { freePort, startUpstream } from '../helpers/upstream.js'

interface TargetStatus {
  readonly url: string
  readonly healthy: boolean
  readonly ejected: boolean
  readonly health: {
    readonly state: string
    readonly reason: string
    readonly active: { state: string; successes: number; failures: number; lastStatus: number | null; lastError: string | null; lastProbeAt: string | null } | null
    readonly passive: { failures: number; ejected: boolean; ejectedUntil: string | null; timesEjected: number } | null
  }
}

async function targetStatus(gw: TestGateway, url: string): Promise<TargetStatus> {
  const status = (await gw.admin('/status')).json() as { upstreams: Array<{ targets: TargetStatus[] }> }
  const found = status.upstreams.flatMap((u) => u.targets).find((t) => t.url === url)
  if (found === undefined) throw new Error(`no target ${url} in /status`)
  return found
}

async function metric(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number | undefined> {
  for (const line of (await gw.admin('/metrics')).body.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    const found = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return undefined
}

async function send(gw: TestGateway, n: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) statuses.push((await gw.get('/api/x')).status)
  return statuses
}

function yaml(targets: readonly HealthUpstream[] | readonly string[], health: string, extra = '', routeExtra = ''): string {
  const urls = targets.map((t) => (typeof t === 'string' ? t : t.url))
  return `
upstreams:
  api:
    targets: [${urls.map((u) => `{ url: ${u} }`).join(', ')}]
    healthCheck: ${health}
${extra}
routes:
  - { id: api, match: { path: /api/* }, upstream: api${routeExtra} }
`
}

const ACTIVE = '{ active: { path: /healthz, interval: 100ms, timeout: 200ms, healthyThreshold: 2, unhealthyThreshold: 2 } }'

describe('active health checks', () => {
  it('takes a target failing unhealthyThreshold probes out of rotation and back after healthyThreshold good ones', async () => {
    const a = await startHealthUpstream('a')
    const b = await startHealthUpstream('b')
    const gw = await startGateway(yaml([a, b], ACTIVE))
    await until('both healthy', async () => (await targetStatus(gw, b.url)).health.state === 'up' && (await targetStatus(gw, a.url)).health.state === 'up')
    expect(await send(gw, 4)).toEqual([200, 200, 200, 200])
    expect(b.traffic).toBe(2)

    b.probe = 500
    await until('b unhealthy', async () => (await targetStatus(gw, b.url)).health.state === 'unhealthy')
    const down = await targetStatus(gw, b.url)
    expect(down).toMatchObject({ healthy: false, health: { active: { state: 'unhealthy', failures: 2, successes: 0, lastStatus: 500, lastError: 'status 500 not in expectStatus' } } })
    expect(down.health.reason).toBe('active: 2 probe(s) failed in a row, last: status 500 not in expectStatus')
    expect(await send(gw, 10)).toEqual(Array(10).fill(200))
    expect(b.traffic).toBe(2)
    expect(await metric(gw, 'tollgate_upstream_target_up', { target: `127.0.0.1:${b.port}` })).toBe(0)
    expect(await metric(gw, 'tollgate_upstream_ejections_total', { target: `127.0.0.1:${b.port}`, reason: 'active' })).toBe(1)

    b.probe = 200
    const probesAtRecovery = b.probes
    await until('b healthy again', async () => (await targetStatus(gw, b.url)).health.state === 'up')
    expect(b.probes - probesAtRecovery).toBeGreaterThanOrEqual(2)
    expect(await send(gw, 4)).toEqual([200, 200, 200, 200])
    expect(b.traffic).toBe(4)
    expect(await metric(gw, 'tollgate_upstream_target_up', { target: `127.0.0.1:${b.port}` })).toBe(1)
  })

  it('sends a target added by a reload no traffic before its first good probe', async () => {
    const a = await startHealthUpstream('a')
    const b = await startHealthUpstream('b', { probe: 'hang' })
    const gw = await startGateway(yaml([a], ACTIVE.replace('timeout: 200ms', 'timeout: 1s')))
    await until('a healthy', async () => (await targetStatus(gw, a.url)).healthy)
    expect(await gw.rewrite(yaml([a, b], ACTIVE.replace('timeout: 200ms', 'timeout: 1s')))).toBe('applied')
    await b.probed(1)
    expect((await targetStatus(gw, b.url)).health).toMatchObject({ state: 'pending', reason: 'active: waiting for its first probe' })
    expect(await send(gw, 10)).toEqual(Array(10).fill(200))
    expect(b.traffic).toBe(0)
    b.probe = 200
    await until('b admitted', async () => (await targetStatus(gw, b.url)).healthy, 5000)
    await send(gw, 4)
    expect(b.traffic).toBe(2)
  })

  it('stops probing a target a reload removed and keeps the state of the targets that stayed', async () => {
    const a = await startHealthUpstream('a')
    const b = await startHealthUpstream('b', { probe: 500 })
    const c = await startHealthUpstream('c')
    const gw = await startGateway(yaml([a, b, c], ACTIVE))
    await until('b unhealthy', async () => (await targetStatus(gw, b.url)).health.state === 'unhealthy')
    const bBefore = await targetStatus(gw, b.url)
    expect(await gw.rewrite(yaml([a, b], ACTIVE, '  other: { targets: [{ url: http://127.0.0.1:1 }] }'))).toBe('applied')
    const removedAt = c.probes
    // Unchanged target: still unhealthy right after the reload (not pending, not reset), still no traffic.
    const bAfter = await targetStatus(gw, b.url)
    expect(bAfter.health.state).toBe('unhealthy')
    expect(bAfter.health.active!.failures).toBeGreaterThanOrEqual(bBefore.health.active!.failures)
    expect(await send(gw, 6)).toEqual(Array(6).fill(200))
    expect(b.traffic).toBe(0)
    // Removed target: a few more intervals of probes to the others, none to it (one may have been in flight).
    await a.probed(a.probes + 4)
    expect(c.probes - removedAt).toBeLessThanOrEqual(1)
  })

  it('closes its probe connections at shutdown, also one whose probe hangs', async () => {
    const hung = await startHealthUpstream('hung', { probe: 'hang' })
    const gw = await startGateway(yaml([hung], '{ active: { path: /healthz, interval: 100ms, timeout: 30s } }'))
    await hung.probed(1)
    expect(hung.sockets.size).toBe(1)
    await gw.close()
    await until('the probe connection closed', () => hung.sockets.size === 0, 2000)
    expect(gw.gateway.probes!.checkerOf('api')).toBeNull()
  })

  it('with onAllUnhealthy fail answers 503 NO_HEALTHY_UPSTREAM and contacts no target', async () => {
    const a = await startHealthUpstream('a', { probe: 500 })
    const b = await startHealthUpstream('b', { probe: 500 })
    const gw = await startGateway(yaml([a, b], ACTIVE, '    onAllUnhealthy: fail'))
    await until('both unhealthy', async () => !(await targetStatus(gw, a.url)).healthy && !(await targetStatus(gw, b.url)).healthy && (await targetStatus(gw, a.url)).health.state === 'unhealthy' && (await targetStatus(gw, b.url)).health.state === 'unhealthy')
    const r = await gw.get('/api/x')
    expect(r.status).toBe(503)
    expect(r.json()).toMatchObject({ code: 'NO_HEALTHY_UPSTREAM' })
    expect(await send(gw, 5)).toEqual(Array(5).fill(503))
    expect(a.traffic + b.traffic).toBe(0)
  })

  it('with onAllUnhealthy route-all tries every target when none is healthy (panic)', async () => {
    const a = await startHealthUpstream('a', { probe: 500 })
    const b = await startHealthUpstream('b', { probe: 500 })
    const gw = await startGateway(yaml([a, b], ACTIVE, '    onAllUnhealthy: route-all'))
    await until('both unhealthy', async () => (await targetStatus(gw, a.url)).health.state === 'unhealthy' && (await targetStatus(gw, b.url)).health.state === 'unhealthy')
    expect(((await gw.admin('/status')).json() as { upstreams: Array<{ panic: boolean }> }).upstreams[0]!.panic).toBe(true)
    expect(await send(gw, 6)).toEqual(Array(6).fill(200))
    expect([a.traffic, b.traffic]).toEqual([3, 3])
  })
})

const PASSIVE = '{ passive: { consecutiveFailures: 3, ejectionTime: 300ms, maxEjectionTime: 1s, maxEjectionPercent: 50 } }'

describe('passive ejection', () => {
  it('ejects one bad target of three after exactly consecutiveFailures failures, re-admits it after ejectionTime, and the second ejection lasts twice as long', async () => {
    const good = [await startHealthUpstream('a'), await startHealthUpstream('b')]
    const bad = await startHealthUpstream('bad', { status: 500 })
    const gw = await startGateway(yaml([good[0]!, bad, good[1]!], PASSIVE))
    const state = (): { healthy: boolean } => gw.gateway.table.upstreams.get('api')!.pool.targets.find((t) => t.url === bad.url)!
    // Round-robin: the bad target gets every third request; its third failure ejects it.
    while (bad.traffic < 3) await gw.get('/api/x')
    expect(state().healthy).toBe(false)
    const ejectedAt = performance.now()
    expect(await send(gw, 9)).toEqual(Array(9).fill(200))
    expect(bad.traffic).toBe(3)
    const s = await targetStatus(gw, bad.url)
    expect(s).toMatchObject({ healthy: false, ejected: true, health: { state: 'ejected', passive: { ejected: true, timesEjected: 1, failures: 0 } } })
    expect(s.health.reason).toMatch(/^passive: ejected \(1st time\) after consecutive failed requests, until /)
    expect(await metric(gw, 'tollgate_upstream_ejections_total', { target: `127.0.0.1:${bad.port}`, reason: 'passive' })).toBe(1)
    expect(await metric(gw, 'tollgate_upstream_target_up', { target: `127.0.0.1:${bad.port}` })).toBe(0)
    // A reload that leaves the upstream alone leaves it ejected.
    expect(await gw.rewrite(yaml([good[0]!, bad, good[1]!], PASSIVE) + '  - { id: other, match: { path: /other }, upstream: api }\n')).toBe('applied')
    expect(state().healthy).toBe(false)
    expect((await targetStatus(gw, bad.url)).health.passive).toMatchObject({ ejected: true, timesEjected: 1 })

    await until('re-admitted', () => state().healthy, 2000)
    const firstMs = performance.now() - ejectedAt
    expect(firstMs).toBeGreaterThanOrEqual(290)
    expect(await metric(gw, 'tollgate_upstream_target_up', { target: `127.0.0.1:${bad.port}` })).toBe(1)

    while (bad.traffic < 6) await gw.get('/api/x')
    expect(state().healthy).toBe(false)
    const secondAt = performance.now()
    const s2 = await targetStatus(gw, bad.url)
    expect(s2.health.passive!.timesEjected).toBe(2)
    expect(Date.parse(s2.health.passive!.ejectedUntil!) - Date.now()).toBeGreaterThan(450) // 600 ms from the ejection
    await until('re-admitted again', () => state().healthy, 3000)
    expect(performance.now() - secondAt).toBeGreaterThanOrEqual(590)
    expect(await metric(gw, 'tollgate_upstream_ejections_total', { target: `127.0.0.1:${bad.port}`, reason: 'passive' })).toBe(2)
  })

  it('ejects no more than maxEjectionPercent allows: two bad targets of three at 50% -> one ejected', async () => {
    const bad = [await startHealthUpstream('x', { status: 502 }), await startHealthUpstream('y', { status: 502 })]
    const good = await startHealthUpstream('g')
    const gw = await startGateway(yaml([...bad, good], PASSIVE.replace('300ms', '30s').replace('1s', '60s')))
    await send(gw, 30)
    const ejected = await Promise.all(bad.map(async (b) => (await targetStatus(gw, b.url)).ejected))
    expect(ejected.filter(Boolean)).toHaveLength(1)
    const upstream = ((await gw.admin('/status')).json() as { upstreams: Array<{ ejectionsRefused: number }> }).upstreams[0]!
    expect(upstream.ejectionsRefused).toBeGreaterThan(0)
  })

  it('never counts a 4xx or a client that went away against a target', async () => {
    const notFound = await startHealthUpstream('nf', { status: 404 })
    const gw = await startGateway(yaml([notFound], PASSIVE))
    expect(await send(gw, 6)).toEqual(Array(6).fill(404))
    expect((await targetStatus(gw, notFound.url)).health.passive).toMatchObject({ failures: 0, timesEjected: 0 })

    let arrived = 0
    const slow = await startUpstream({ handler: () => { arrived++ } }) // never answers
    const gw2 = await startGateway(yaml([slow.url], PASSIVE))
    const agent = new Agent()
    for (let i = 0; i < 5; i++) {
      const controller = new AbortController()
      const pending = request(`${gw2.url}/api/x`, { dispatcher: agent, signal: controller.signal }).catch(() => undefined)
      await until('request arrived', () => arrived === i + 1)
      controller.abort()
      await pending
    }
    await agent.close()
    await until('aborts recorded', async () => ((await gw2.admin('/status')).json() as { inflight: number }).inflight === 0)
    expect((await targetStatus(gw2, slow.url)).health.passive).toMatchObject({ failures: 0, timesEjected: 0 })
  })

  it('counts an attempt that failed and was retried elsewhere against its own target', async () => {
    const good = await startHealthUpstream('good')
    const refused = `http://127.0.0.1:${await freePort()}`
    const gw = await startGateway(yaml([refused, good.url], PASSIVE, '    retry: { attempts: 1 }'))
    expect(await send(gw, 6)).toEqual(Array(6).fill(200))
    expect((await targetStatus(gw, refused)).ejected).toBe(true)
  })
})

describe('one bad target of three, with retries (issue 12, item 5)', () => {
  it('is ejected within consecutiveFailures requests, the route keeps succeeding and its breaker stays closed', async () => {
    const good = [await startHealthUpstream('a'), await startHealthUpstream('b')]
    const bad = await startHealthUpstream('bad', { status: 503 })
    // A breaker that a 5% error rate would open: the retries rescue every request, so it never sees one.
    const gw = await startGateway(yaml([good[0]!, bad, good[1]!], '{ passive: { consecutiveFailures: 5, ejectionTime: 30s } }', '    retry: { attempts: 2 }',
      ', circuitBreaker: { minRequests: 10, errorRate: 5 }'))
    const statuses = await send(gw, 300)
    expect(bad.traffic).toBe(5)
    expect(statuses.filter((s) => s === 200).length / statuses.length).toBeGreaterThanOrEqual(0.99)
    expect(await metric(gw, 'tollgate_circuit_breaker_state', { route: 'api' })).toBe(0)
    expect((await metric(gw, 'tollgate_circuit_breaker_transitions_total', { route: 'api', to: 'open' })) ?? 0).toBe(0)
  })

  it('is ejected when it refuses connections, and at least 99% of requests succeed', async () => {
    const good = [await startHealthUpstream('a'), await startHealthUpstream('b')]
    const refused = `http://127.0.0.1:${await freePort()}`
    const gw = await startGateway(yaml([good[0]!.url, refused, good[1]!.url], '{ passive: { consecutiveFailures: 5, ejectionTime: 30s } }', '    retry: { attempts: 2 }'))
    // Concurrent batches: more than consecutiveFailures attempts may be in flight when it is ejected.
    const statuses: number[] = []
    for (let i = 0; i < 30; i++) statuses.push(...(await Promise.all(Array.from({ length: 10 }, async () => (await gw.get('/api/x')).status))))
    expect(statuses.filter((s) => s === 200).length / statuses.length).toBeGreaterThanOrEqual(0.99)
    expect((await targetStatus(gw, refused)).ejected).toBe(true)
    expect(await metric(gw, 'tollgate_upstream_ejections_total', { reason: 'passive' })).toBe(1)
  })
})
