// Tracing end to end (README "Tracing"): the gateway exports OTLP/HTTP protobuf to a real receiver; an
// upstream that continues the trace exports its own span there too; the ids on the wire, the parent/child
// links and the attributes are checked from what the receiver decoded.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { httpRequest, spawnGateway, startGateway } from '../helpers/gateway.js'
import { SpanKind, startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js'
import { UPSTREAM_SERVICE, startTracedUpstream } from '../helpers/traced-upstream.js'
import { startHoldingUpstream, startUpstream } from '../helpers/upstream.js'

const DIST = resolve(import.meta.dirname, '../../dist')
const TP_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/

function parseTp(value: unknown): { traceId: string; parentId: string; flags: string } {
  const m = TP_RE.exec(String(value))
  expect(m, `traceparent ${String(value)}`).not.toBeNull()
  return { traceId: m![1]!, parentId: m![2]!, flags: m![3]! }
}

function callerTraceparent(): { traceId: string; parentId: string; header: string } {
  const traceId = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex')
  const parentId = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex')
  return { traceId, parentId, header: `00-${traceId}-${parentId}-01` }
}

/** Tracing on (`settings`: the tracing keys besides exporter and endpoint) and one route /api/* to `upstreamUrl`. */
function apiConfig(endpoint: string, upstreamUrl: string, settings: string): string {
  return `
tracing: { exporter: otlp, endpoint: ${endpoint}, ${settings} }
upstreams: { api: { targets: [{ url: ${upstreamUrl} }] } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`
}

function ofTrace(spans: readonly ReceivedSpan[], traceId: string): ReceivedSpan[] {
  return spans.filter((s) => s.traceId === traceId)
}

describe('tracing: OTLP export', () => {
  it('exports a SERVER span and a CLIENT span per attempt, and the upstream that continues the trace hangs under the attempt that reached it', async () => {
    const receiver = await startOtlpReceiver()
    const failing = await startUpstream({ statuses: [503] })
    const traced = await startTracedUpstream(receiver.endpoint)
    const gw = await startGateway(`
tracing: { exporter: otlp, endpoint: ${receiver.endpoint}, serviceName: edge-test, sampleRatio: 0 }
upstreams:
  items:
    targets: [{ url: ${failing.url} }, { url: ${traced.url} }]
    retry: { attempts: 1, on: [503], backoff: 1ms }
routes:
  - { id: items, match: { path: /api/items/:id }, upstream: items }
`)
    // Round-robin: of two requests, one starts on the failing target and is retried on the traced one.
    const callers = [callerTraceparent(), callerTraceparent()]
    for (const c of callers) {
      const r = await gw.get('/api/items/42?secret=s3cr3t', { traceparent: c.header, tracestate: 'vendor=abc', authorization: 'Bearer t0ken' })
      expect(r.status).toBe(200)
    }
    const retried = callers.find((c) => failing.requests.some((r) => parseTp(r.headers['traceparent']).traceId === c.traceId))!
    expect(retried).toBeDefined()
    await receiver.waitFor((spans) => ofTrace(spans, retried.traceId).length === 4)
    const spans = ofTrace(receiver.spans, retried.traceId)

    const server = spans.find((s) => s.kind === SpanKind.Server && s.resource['service.name'] === 'edge-test')!
    const clients = spans.filter((s) => s.kind === SpanKind.Client).sort((a, b) => Number(a.startNs - b.startNs))
    const upstreamSpan = spans.find((s) => s.resource['service.name'] === UPSTREAM_SERVICE)!
    // The chain: caller -> gateway SERVER -> one CLIENT per attempt -> the upstream's own span.
    expect(server.parentSpanId).toBe(retried.parentId)
    expect(clients).toHaveLength(2)
    for (const c of clients) expect(c.parentSpanId).toBe(server.spanId)
    expect(new Set([server.spanId, clients[0]!.spanId, clients[1]!.spanId]).size).toBe(3)
    expect(upstreamSpan.parentSpanId).toBe(clients[1]!.spanId)
    // What each upstream saw on the wire: its attempt's CLIENT span as the parent, sampled.
    const failedTp = parseTp(failing.requests.find((r) => parseTp(r.headers['traceparent']).traceId === retried.traceId)!.headers['traceparent'])
    expect(failedTp).toEqual({ traceId: retried.traceId, parentId: clients[0]!.spanId, flags: '01' })
    const tracedTp = parseTp(traced.requests.find((r) => parseTp(r.headers['traceparent']).traceId === retried.traceId)!.headers['traceparent'])
    expect(tracedTp).toEqual({ traceId: retried.traceId, parentId: clients[1]!.spanId, flags: '01' })
    expect(traced.requests.at(-1)!.headers['tracestate']).toBe('vendor=abc')

    // HTTP semantic conventions.
    expect(server.name).toBe('GET /api/items/:id')
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET', 'http.route': '/api/items/:id', 'http.response.status_code': 200,
      'server.address': '127.0.0.1', 'server.port': gw.port, 'url.scheme': 'http', 'url.path': '/api/items/42',
      'client.address': '127.0.0.1', 'tollgate.route': 'items',
    })
    expect(server.statusCode).toBe(0)
    expect(server.traceState).toBe('vendor=abc')
    // As the SDK's tracer does: each CLIENT span, a child, carries its parent's tracestate too.
    expect(clients.map((c) => c.traceState)).toEqual(['vendor=abc', 'vendor=abc'])
    expect(clients[0]!.name).toBe('GET')
    expect(clients[0]!.attributes).toMatchObject({
      'http.request.method': 'GET', 'http.response.status_code': 503, 'http.request.resend_count': 0, 'error.type': '503',
      'server.address': '127.0.0.1', 'server.port': failing.port, 'url.full': `${failing.url}/api/items/42`,
      'tollgate.upstream': 'items', 'tollgate.target': `127.0.0.1:${failing.port}`,
    })
    expect(clients[0]!.statusCode).toBe(2)
    expect(clients[1]!.attributes).toMatchObject({
      'http.response.status_code': 200, 'http.request.resend_count': 1, 'server.port': traced.port, 'tollgate.target': `127.0.0.1:${traced.port}`,
    })
    expect(clients[1]!.attributes['error.type']).toBeUndefined()
    // Times nest: the attempts inside the request.
    for (const c of clients) {
      expect(c.startNs >= server.startNs).toBe(true)
      expect(c.endNs <= server.endNs).toBe(true)
    }
    // Never the query string or header values.
    const everything = JSON.stringify(spans.map((s) => s.attributes))
    expect(everything).not.toContain('s3cr3t')
    expect(everything).not.toContain('t0ken')
    expect(everything).not.toContain('vendor=abc')
  })

  it('gives a request the gateway answered itself a SERVER span without CLIENT spans', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await startGateway(apiConfig(receiver.endpoint, up.url, 'sampleRatio: 1'))
    const caller = callerTraceparent()
    expect((await gw.get('/nowhere', { traceparent: caller.header })).status).toBe(404)
    await receiver.waitFor((spans) => ofTrace(spans, caller.traceId).length === 1)
    const [span] = ofTrace(receiver.spans, caller.traceId)
    expect(span!.name).toBe('GET')
    expect(span!.kind).toBe(SpanKind.Server)
    expect(span!.parentSpanId).toBe(caller.parentId)
    expect(span!.attributes['http.response.status_code']).toBe(404)
    expect(span!.attributes['http.route']).toBeUndefined()
    expect(span!.statusCode).toBe(0) // a 4xx is the client's, not an error of the server
    expect(span!.resource['service.name']).toBe('tollgate')
  })
})

describe('tracing: sampling', () => {
  it('samples by ratio for traces that start here, follows a sampled caller, and a route may override the ratio', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await startGateway(`
tracing: { exporter: otlp, endpoint: ${receiver.endpoint}, sampleRatio: 0 }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: quiet, match: { path: /quiet }, upstream: api }
  - { id: loud, match: { path: /loud }, upstream: api, tracing: { sampleRatio: 1 } }
`)
    const seen = async (path: string, headers: Record<string, string> = {}): Promise<{ traceId: string; flags: string }> => {
      expect((await gw.get(path, headers)).status).toBe(200)
      return parseTp(up.requests.at(-1)!.headers['traceparent'])
    }
    const unsampled = [await seen('/quiet'), await seen('/quiet'), await seen('/quiet', { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-00` })]
    for (const u of unsampled) expect(u.flags).toBe('00')
    const followed = callerTraceparent()
    expect(await seen('/quiet', { traceparent: followed.header })).toMatchObject({ traceId: followed.traceId, flags: '01' })
    const overridden = await seen('/loud')
    expect(overridden.flags).toBe('01')

    await receiver.waitFor((spans) => ofTrace(spans, overridden.traceId).length === 2 && ofTrace(spans, followed.traceId).length === 2)
    // The unsampled requests ended before the sampled ones: their spans, had there been any, came first.
    for (const u of unsampled) expect(ofTrace(receiver.spans, u.traceId)).toEqual([])
    expect(receiver.spans).toHaveLength(4)
  })

  it('restarts sampling at the edge when parentBased is off: a caller cannot force a trace', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await startGateway(`
tracing: { exporter: otlp, endpoint: ${receiver.endpoint}, sampleRatio: 0, parentBased: false }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: quiet, match: { path: /quiet }, upstream: api }
  - { id: loud, match: { path: /loud }, upstream: api, tracing: { sampleRatio: 1 } }
`)
    const forced = callerTraceparent()
    expect((await gw.get('/quiet', { traceparent: forced.header })).status).toBe(200)
    // The trace is continued (same trace id, the gateway as parent) but not sampled: the decision is the gateway's.
    expect(parseTp(up.requests.at(-1)!.headers['traceparent'])).toMatchObject({ traceId: forced.traceId, flags: '00' })
    const marker = callerTraceparent()
    expect((await gw.get('/loud', { traceparent: marker.header.replace(/-01$/, '-00') })).status).toBe(200)
    expect(parseTp(up.requests.at(-1)!.headers['traceparent']).flags).toBe('01')
    await receiver.waitFor((spans) => ofTrace(spans, marker.traceId).length === 2)
    expect(ofTrace(receiver.spans, forced.traceId)).toEqual([])
  })
})

describe('tracing: the export queue', () => {
  it('counts spans it could not export in tollgate_trace_spans_dropped_total', async () => {
    const receiver = await startOtlpReceiver({ mode: 'reject' })
    const up = await startUpstream()
    const gw = await startGateway(apiConfig(receiver.endpoint, up.url, 'sampleRatio: 1'))
    for (let i = 0; i < 3; i++) expect((await gw.get('/api/x')).status).toBe(200)
    await receiver.waitFor((spans) => spans.length >= 6)
    // The export failed (400): all six spans (3 SERVER, 3 CLIENT) were given up on. The count follows the
    // export's answer, so poll the admin endpoint until it shows (bounded).
    let value = 0
    for (let i = 0; i < 100 && value < 6; i++) {
      const text = (await gw.admin('/metrics')).body
      value = Number(/^tollgate_trace_spans_dropped_total (\S+)$/m.exec(text)?.[1] ?? 0)
      if (value < 6) await new Promise((r) => setTimeout(r, 50))
    }
    expect(value).toBe(6)
  })

  it('exports in batches of at most 128 spans, serialized 32 at a time, so that no single export holds the event loop long', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await startGateway(apiConfig(receiver.endpoint, up.url, 'sampleRatio: 1'))
    // 150 requests, 300 spans, all finished well inside one export interval (1 s): with one batch per
    // interval (the SDK's default of 512) they would go out in one or two requests of up to 300 spans.
    for (let round = 0; round < 15; round++) {
      const statuses = await Promise.all(Array.from({ length: 10 }, () => gw.get('/api/x').then((r) => r.status)))
      expect(statuses).toEqual(Array(10).fill(200))
    }
    await receiver.waitFor((spans) => spans.length >= 300)
    expect(receiver.spans).toHaveLength(300)
    expect(Math.max(...receiver.batchSizes)).toBeLessThanOrEqual(128)
    expect(receiver.batchSizes.length).toBeGreaterThanOrEqual(3)
    // Each export is one request made of slices serialized one per turn of the event loop: a resourceSpans
    // entry of at most 32 spans each, every one with the gateway's resource.
    expect(receiver.resourceSpanSizes.flat().reduce((a, b) => a + b, 0)).toBe(300)
    for (const sizes of receiver.resourceSpanSizes) {
      expect(Math.max(...sizes)).toBeLessThanOrEqual(32)
      expect(sizes.length).toBe(Math.ceil(sizes.reduce((a, b) => a + b, 0) / 32))
    }
    expect(Math.max(...receiver.resourceSpanSizes.map((sizes) => sizes.length))).toBeGreaterThan(1)
    expect(new Set(receiver.spans.map((s) => s.resource['service.name']))).toEqual(new Set(['tollgate']))
  })

  it('sends the spans still held and queued when the gateway is stopped with SIGTERM', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await spawnGateway(apiConfig(receiver.endpoint, up.url, 'sampleRatio: 1'))
    // 20 requests, 40 spans: fewer than a batch, so they wait for the half-second flush, which SIGTERM beats;
    // more than one serialization slice (32), so the export at shutdown spans turns of the event loop.
    const statuses = await Promise.all(Array.from({ length: 20 }, () =>
      httpRequest(`${gw.url}/api/stop`, { headers: { connection: 'close' } }).then((r) => r.status)))
    expect(statuses).toEqual(Array(20).fill(200))
    expect(receiver.requests).toBe(0)
    expect(await gw.stop('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(receiver.spans).toHaveLength(40)
    expect(receiver.spans.filter((s) => s.kind === SpanKind.Server)).toHaveLength(20)
    expect(Math.max(...receiver.resourceSpanSizes.flat())).toBeLessThanOrEqual(32)
  })

  it('does not put tollgate_trace_spans_dropped_total on /metrics when tracing is off', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    expect((await gw.get('/api/x')).status).toBe(200)
    expect((await gw.admin('/metrics')).body).not.toContain('tollgate_trace_spans_dropped_total')
  })
})

describe('tracing: the exporter', () => {
  it('turns on with a config reload, and the console exporter prints spans', async () => {
    const up = await startUpstream()
    const base = `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`
    // Access lines carry the trace id too: off, so that an id on stdout is a span the console exporter printed.
    const gw = await spawnGateway(base, [], { TOLLGATE_LOG_ACCESS: 'false' })
    const before = callerTraceparent()
    expect((await httpRequest(`${gw.url}/api/before`, { headers: { traceparent: before.header } })).status).toBe(200)
    writeFileSync(gw.configPath, readFileSync(gw.configPath, 'utf8') + 'tracing: { exporter: console, sampleRatio: 1 }\n')
    process.kill(gw.pid, 'SIGHUP')
    const after = callerTraceparent()
    // The reload is applied asynchronously: ask until a request's SERVER span shows on stdout (bounded). The
    // exporter prints each span apart, so the CLIENT span's lines (same trace id) may come in first.
    const serverSpanShown = (): boolean => gw.stdout().includes(after.traceId) && gw.stdout().includes("name: 'GET /api/*'")
    for (let i = 0; i < 100 && !serverSpanShown(); i++) {
      expect((await httpRequest(`${gw.url}/api/after`, { headers: { traceparent: after.header } })).status).toBe(200)
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(gw.stdout()).toContain(after.traceId)
    expect(gw.stdout()).toContain("name: 'GET /api/*'")
    expect((await gw.stop()).code).toBe(0)
    expect(gw.stdout()).not.toContain(before.traceId)
  })

  // prom-client loads @opentelemetry/api (for exemplars) in any case: the SDK and the exporter are what count.
  it('loads the OpenTelemetry SDK only when tracing.exporter is not none', { timeout: 90_000 }, async () => {
    const up = await startUpstream()
    const loaded = async (tracing: string): Promise<number> => {
      const dir = mkdtempSync(join(tmpdir(), 'tollgate-otel-'))
      onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
      const configPath = join(dir, 'routes.yaml')
      writeFileSync(configPath, `listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n${tracing}\nupstreams: { api: { targets: [{ url: ${up.url} }] } }\nroutes:\n  - { id: api, match: { path: /api/* }, upstream: api }\n`)
      const script = `
import { createRequire } from 'node:module'
import { Gateway } from ${JSON.stringify(pathToFileURL(join(DIST, 'src/lifecycle/gateway.js')).href)}
const gw = await Gateway.start({ configPath: ${JSON.stringify(configPath)}, watchFile: false, env: { ...process.env, TOLLGATE_LOG_LEVEL: 'silent' } })
await fetch('http://127.0.0.1:' + gw.proxyAddress.port + '/api/x').then((r) => r.text())
const otel = Object.keys(createRequire(import.meta.url).cache).filter((k) => ['sdk-trace', 'exporter-', 'otlp-', 'resources'].some((p) => k.includes('@opentelemetry/' + p)))
await gw.shutdown()
console.log(JSON.stringify(otel.length))
`
      // Async: the upstream it calls lives in this process.
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
      return Number(stdout.trim().split('\n').at(-1))
    }
    expect(await loaded('')).toBe(0)
    expect(await loaded('tracing: { exporter: none, sampleRatio: 1 }')).toBe(0)
    expect(await loaded(`tracing: { exporter: otlp, endpoint: 'http://127.0.0.1:1/v1/traces' }`)).toBeGreaterThan(0)
  })
})

describe('tracing: a client that goes away', () => {
  it('still gets its SERVER span, and the attempt its CLIENT span, when the client leaves before the upstream answers', async () => {
    const receiver = await startOtlpReceiver()
    const held = await startHoldingUpstream()
    const gw = await startGateway(apiConfig(receiver.endpoint, held.url, 'sampleRatio: 1'))
    const caller = callerTraceparent()
    const socket = connect(gw.port, '127.0.0.1')
    socket.on('error', () => undefined)
    // With a request body: node:http detaches the socket from the request when the client leaves (once a
    // TypeError in the span sink, found by the W3C harness run).
    socket.write(`POST /api/slow HTTP/1.1\r\nHost: x\r\ntraceparent: ${caller.header}\r\ncontent-length: 5\r\n\r\nhello`)
    await held.arrived
    socket.destroy()
    await receiver.waitFor((spans) => ofTrace(spans, caller.traceId).length === 2)
    const spans = ofTrace(receiver.spans, caller.traceId)
    const server = spans.find((s) => s.kind === SpanKind.Server)!
    const client = spans.find((s) => s.kind === SpanKind.Client)!
    expect(client.parentSpanId).toBe(server.spanId)
    expect(client.attributes['error.type']).toBe('TOLLGATE_CLIENT_GONE')
    held.release()
    expect((await gw.get('/api/after')).status).toBe(200) // and the gateway serves on
  })
})

describe('tracing: with --workers', () => {
  it('exports the spans of every worker, each of which runs its own exporter', async () => {
    const receiver = await startOtlpReceiver()
    const up = await startUpstream()
    const gw = await spawnGateway(apiConfig(receiver.endpoint, up.url, 'sampleRatio: 1'), ['--workers', '2'])
    const callers = [callerTraceparent(), callerTraceparent(), callerTraceparent(), callerTraceparent()]
    for (const c of callers) expect((await httpRequest(`${gw.url}/api/w`, { headers: { traceparent: c.header, connection: 'close' } })).status).toBe(200)
    await receiver.waitFor((spans) => callers.every((c) => ofTrace(spans, c.traceId).length === 2))
    for (const c of callers) {
      const server = ofTrace(receiver.spans, c.traceId).find((s) => s.kind === SpanKind.Server)!
      expect(server.parentSpanId).toBe(c.parentId)
    }
    expect((await httpRequest(`${gw.adminUrl}/metrics`)).body).toMatch(/^tollgate_trace_spans_dropped_total 0$/m)
    expect((await gw.stop()).code).toBe(0)
  })
})
