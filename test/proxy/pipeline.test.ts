// The request pipeline on real sockets: a route step that suspends the request until its "store" answers
// and then resumes or refuses it, and the one end-of-request record every ended request is told once.
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { RATE_LIMITED } from '../../src/errors.js'
import { Next, type RequestStep, type StepContext } from '../../src/http/request-step.js'
import { createProxyServer } from '../../src/proxy/proxy-server.js'
import { ProxyState } from '../../src/proxy/proxy-state.js'
import type { OutcomeSink } from '../../src/proxy/record.js'
import { Router } from '../../src/router/router.js'
import { CompiledRoute } from '../../src/table/compiled-route.js'
import { buildRouteTable, RouteTable } from '../../src/table/route-table.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { FailureKind, type Outcome } from '../../src/upstream/outcome.js'
import { freePort, startUpstream } from '../helpers/upstream.js'

/** A step that parks every request until the test answers it, as an async store would. */
class ParkingStep implements RequestStep {
  readonly parked: StepContext[] = []
  #waiters: Array<() => void> = []

  run(ctx: StepContext): Next {
    this.parked.push(ctx)
    for (const w of this.#waiters.splice(0)) w()
    return Next.Suspend
  }

  /** Resolves once `n` requests are parked. */
  until(n: number): Promise<void> {
    if (this.parked.length >= n) return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => (this.parked.length >= n ? resolve() : void this.#waiters.push(check))
      this.#waiters.push(check)
    })
  }
}

interface Recorded {
  readonly route: string | null
  readonly method: string
  readonly outcome: Outcome
}

/** A gateway whose `api` route runs `first` before its own steps; every outcome is copied into `records`. */
async function start(targets: readonly string[], first: RequestStep | null, upstreamExtra = '') {
  const config = loadConfigText(`
upstreams:
  api:
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
    ${upstreamExtra}
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`, 'routes.yaml', {}).config
  const metrics = new Metrics({ defaultMetrics: false })
  let table = buildRouteTable(config, null, metrics).table
  if (first !== null) {
    const r = table.routes.get('api')!
    const route = new CompiledRoute(r.id, r.upstream, r.rewritePath, r.maxBodyBytes, r.allowEncodedSlash, r.websocket, [first, ...r.steps], r.metrics, r.breaker, r.parts, r.tracing, r.auth)
    const router = new Router([{ spec: { id: 'api', path: '/api/*', methods: null, host: null, headers: null, priority: 0 }, value: route }])
    table = new RouteTable(table.version, table.config, router, new Map([['api', route]]), table.upstreams, table.pathPolicy, table.trustedProxies, table.routeMetrics, false, table.keyStore, table.clusterStore)
  }
  const state = new ProxyState(table, metrics)
  const records: Recorded[] = []
  const ended: Array<() => void> = []
  const sink: OutcomeSink = {
    record(route, method, outcome) {
      records.push({ route: route?.id ?? null, method, outcome: { ...pickOutcome(outcome) } })
      for (const w of ended.splice(0)) w()
    },
  }
  state.recorder.add(sink)
  const proxy = createProxyServer(state, config.limits)
  await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve))
  onTestFinished(async () => {
    proxy.destroyAll()
    await new Promise((resolve) => proxy.server.close(resolve))
    await table.close()
  })
  const url = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`
  /** Resolves once `n` requests have been recorded. */
  const recorded = (n: number): Promise<void> => new Promise((resolve) => {
    const check = (): void => (records.length >= n ? resolve() : void ended.push(check))
    check()
  })
  return { url, state, records, recorded }
}

function pickOutcome(o: Outcome): Outcome {
  return {
    status: o.status, failure: o.failure, causedByClient: o.causedByClient, attempts: o.attempts,
    lastTarget: o.lastTarget, bytesIn: o.bytesIn, bytesOut: o.bytesOut, durationMs: o.durationMs, breakerAdmission: o.breakerAdmission,
    requestId: o.requestId, refusal: o.refusal, traceId: o.traceId, canonicalPath: o.canonicalPath, upstreamName: o.upstreamName,
    grpcStatus: o.grpcStatus, consumer: o.consumer, httpVersion: o.httpVersion, ids: o.ids, incomingRequestId: o.incomingRequestId,
    parentSpanId: o.parentSpanId,
  }
}

describe('a route step that suspends', () => {
  it('holds the request until the step resumes it, then forwards it', async () => {
    const up = await startUpstream({ body: 'ok' })
    const step = new ParkingStep()
    const gw = await start([up.url], step)
    const pending = request(`${gw.url}/api/x`)
    await step.until(1)
    expect(up.hits).toBe(0)
    expect(gw.state.inflight).toBe(1)
    step.parked[0]!.resume()
    const r = await pending
    expect(r.statusCode).toBe(200)
    expect(await r.body.text()).toBe('ok')
    expect(up.hits).toBe(1)
  })

  it('lets the step refuse later with its own headers; the upstream never sees the request', async () => {
    const up = await startUpstream()
    const step = new ParkingStep()
    const gw = await start([up.url], step)
    const pending = request(`${gw.url}/api/x`)
    await step.until(1)
    step.parked[0]!.refuse(RATE_LIMITED, false, ['retry-after', '2'])
    const r = await pending
    expect(r.statusCode).toBe(429)
    expect(r.headers['retry-after']).toBe('2')
    expect(await r.body.json()).toMatchObject({ code: 'RATE_LIMITED' })
    expect(up.hits).toBe(0)
    await gw.recorded(1)
    expect(gw.records[0]!.outcome).toMatchObject({ status: 429, attempts: 0, lastTarget: null })
  })

  it('does nothing on resume when the client left while suspended, and records 499 caused by the client', async () => {
    const up = await startUpstream()
    const step = new ParkingStep()
    const gw = await start([up.url], step)
    const controller = new AbortController()
    const pending = request(`${gw.url}/api/x`, { signal: controller.signal }).catch((err: Error) => err)
    await step.until(1)
    controller.abort()
    await pending
    await gw.recorded(1)
    step.parked[0]!.resume()
    expect(gw.records).toHaveLength(1)
    expect(gw.records[0]!.outcome).toMatchObject({ status: 499, causedByClient: true, attempts: 0 })
    expect(gw.state.inflight).toBe(0)
    // A second request through the same path: by the time it is answered, a forwarded first one would
    // have reached the upstream too.
    const second = request(`${gw.url}/api/y`)
    await step.until(2)
    step.parked[1]!.resume()
    expect((await second).statusCode).toBe(200)
    expect(up.requests.map((r) => r.url)).toEqual(['/api/y'])
    expect(gw.records).toHaveLength(2)
    // Nothing was admitted for the request that had ended: the bulkhead's count is back to 0.
    await gw.recorded(2)
    expect(gw.state.table.upstreams.get('api')!.pool.inflight).toBe(0)
  })

  it('resumes many suspended requests in any order, each to its own response', async () => {
    const up = await startUpstream({ handler: (req, res) => res.end(req.url) })
    const step = new ParkingStep()
    const gw = await start([up.url], step)
    const pending = [1, 2, 3, 4].map((i) => request(`${gw.url}/api/${i}`).then((r) => r.body.text()))
    await step.until(4)
    for (const ctx of [...step.parked].reverse()) ctx.resume()
    expect((await Promise.all(pending)).sort()).toEqual(['/api/1', '/api/2', '/api/3', '/api/4'])
  })
})

describe('the end-of-request record', () => {
  it('tells every sink once per request: status, attempts, last target, bytes and duration', async () => {
    const failing = await startUpstream({ statuses: [503] })
    const steady = await startUpstream({ body: 'x'.repeat(1000) })
    const gw = await start([failing.url, steady.url], null, 'retry: { attempts: 1, on: [503], backoff: 0ms }\n    balancer: round-robin')
    const r = await request(`${gw.url}/api/x`)
    await r.body.text()
    await gw.recorded(1)
    // Smooth weighted round-robin starts on the first target: 503 there, then the retry on the second.
    expect(failing.hits).toBe(1)
    const outcome = gw.records[0]!.outcome
    expect(outcome).toMatchObject({ status: 200, attempts: 2, lastTarget: `127.0.0.1:${steady.port}`, bytesOut: 1000 })
    expect(outcome.failure).toBe(FailureKind.None)
    expect(outcome.causedByClient).toBe(false)
    expect(outcome.durationMs).toBeGreaterThan(0)
    expect(gw.records[0]!.route).toBe('api')
    expect(gw.records[0]!.method).toBe('GET')
  })

  it('records the failure kind of an upstream that refuses connections, and the request body bytes', async () => {
    const closedPort = await freePort()
    const gw = await start([`http://127.0.0.1:${closedPort}`], null)
    const r = await request(`${gw.url}/api/x`, { method: 'POST', body: 'hello' })
    expect(r.statusCode).toBe(502)
    await r.body.text()
    await gw.recorded(1)
    expect(gw.records[0]!.outcome).toMatchObject({
      status: 502, failure: FailureKind.ConnectFailure, causedByClient: false, attempts: 1,
      lastTarget: `127.0.0.1:${closedPort}`, bytesIn: 5,
    })
  })

  it('records unmatched requests with no route', async () => {
    const gw = await start(['http://127.0.0.1:9'], null)
    const r = await request(`${gw.url}/nothing`)
    expect(r.statusCode).toBe(404)
    await r.body.text()
    await gw.recorded(1)
    expect(gw.records[0]).toMatchObject({ route: null, outcome: { status: 404, attempts: 0 } })
  })
})
