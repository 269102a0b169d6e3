// gRPC upstreams (README "gRPC") through a whole gateway, against real @grpc/grpc-js servers on 127.0.0.1.
// The gateway speaks HTTP/2 (h2c) to protocol: grpc targets — grpc-js speaks nothing else, so every call
// that passes proves it — relays messages both ways and the trailers back, answers its own refusals as gRPC
// statuses, lets failOn and passive health judge grpc-status, and probes with the gRPC health protocol.
//
// The client here is undici over HTTP/1.1 (chunked, with trailers): it shows the bytes and trailers exactly
// as they arrive.
import { describe, expect, it } from 'vitest'
import { Agent, request } from 'undici'
import { httpRequest, spawnGateway, startGateway, type TestGateway } from '../helpers/gateway.js'
import { until } from '../helpers/health-upstream.js'
import { grpcFrame, grpcMessages, Serving, startGrpcUpstream, type GrpcUpstream } from '../helpers/grpc-upstream.js'
import { startUpstream } from '../helpers/upstream.js'
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'

const agent = new Agent({ keepAliveTimeout: 1000 })

interface GrpcReply {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly messages: string[]
  readonly trailers: Record<string, string | string[] | undefined>
  /** grpc-status from the trailers (-1 when none). */
  readonly grpcStatus: number
}

async function call(gw: TestGateway, path: string, messages: string[], headers: Record<string, string> = {}): Promise<GrpcReply> {
  const r = await request(gw.url + path, {
    method: 'POST', dispatcher: agent,
    headers: { 'content-type': 'application/grpc', te: 'trailers', ...headers },
    body: Buffer.concat(messages.map((m) => grpcFrame(m))),
  })
  const body = Buffer.from(await r.body.arrayBuffer())
  const trailers = r.trailers
  const status = trailers['grpc-status']
  return {
    status: r.statusCode, headers: r.headers, messages: grpcMessages(body).map(String), trailers,
    grpcStatus: typeof status === 'string' ? Number(status) : -1,
  }
}

function config(targets: readonly GrpcUpstream[], upstreamExtra = '', routeExtra = ''): string {
  return `
upstreams:
  echo:
    protocol: grpc
    targets: [${targets.map((t) => `{ url: "${t.url}" }`).join(', ')}]
${upstreamExtra}
routes:
  - id: echo
    match: { path: /test.Echo/* }
    upstream: echo
${routeExtra}
`
}

async function targetHealth(gw: TestGateway, url: string): Promise<{ healthy: boolean; health: { active: { lastError: string | null } | null } }> {
  const status = (await gw.admin('/status')).json() as { upstreams: Array<{ targets: Array<{ url: string; healthy: boolean; health: { active: { lastError: string | null } | null } }> }> }
  return status.upstreams.flatMap((u) => u.targets).find((t) => t.url === url)!
}

describe('gRPC upstreams', () => {
  it('carries unary and streaming calls over HTTP/2 and relays the trailers', async () => {
    const up = await startGrpcUpstream('a')
    const gw = await startGateway(config([up]))
    const unary = await call(gw, '/test.Echo/Unary', ['hello'])
    expect(unary.status).toBe(200)
    expect(unary.messages).toEqual(['echo:a:hello'])
    expect(unary.grpcStatus).toBe(0)
    expect(unary.headers['content-type']).toMatch(/^application\/grpc/)
    // The status is a trailer, never a header the client could take for metadata.
    expect(unary.headers['grpc-status']).toBeUndefined()

    const stream = await call(gw, '/test.Echo/ServerStream', ['5'])
    expect(stream.messages).toEqual(['0', '1', '2', '3', '4'])
    expect(stream.grpcStatus).toBe(0)
    const upload = await call(gw, '/test.Echo/ClientStream', ['ab', 'cd', 'ef'])
    expect(upload.messages).toEqual(['abcdef'])
    const bidi = await call(gw, '/test.Echo/Bidi', ['x', 'y'])
    expect(bidi.messages).toEqual(['x', 'y'])

    // What the server received: the request id and the trace context, as on any route.
    const metadata = up.calls[0]!.metadata
    expect(metadata['x-request-id']).toBe(unary.headers['x-request-id'])
    expect(String(metadata['traceparent'])).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
  })

  it('sends te: trailers and the client\'s metadata over h2c, never the client\'s hop-by-hop headers', async () => {
    const seen: http2.IncomingHttpHeaders[] = []
    const server = http2.createServer((req, res) => {
      seen.push(req.headers)
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/grpc' })
        res.addTrailers({ 'grpc-status': '0', 'x-trailer': 'kept' })
        res.end(grpcFrame('raw'))
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const gw = await startGateway(`
upstreams: { raw: { protocol: grpc, targets: [{ url: "${url}" }] } }
routes: [{ id: r, match: { path: /* }, upstream: raw }]
`)
      // node:http, not undici: undici refuses to send Connection and Keep-Alive headers.
      const reply = await new Promise<{ body: Buffer; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
        const req = http.request(gw.url + '/pkg.Svc/M', {
          method: 'POST',
          headers: { 'content-type': 'application/grpc', te: 'trailers', 'x-meta': 'one', 'keep-alive': 'timeout=5', connection: 'keep-alive, x-secret', 'x-secret': 'no' },
        }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ body: Buffer.concat(chunks), trailers: res.trailers }))
        })
        req.on('error', reject)
        req.end(grpcFrame('x'))
      })
      expect(grpcMessages(reply.body).map(String)).toEqual(['raw'])
      expect(reply.trailers['x-trailer']).toBe('kept')
      expect(reply.trailers['grpc-status']).toBe('0')
      const h = seen[0]!
      expect(h[':method']).toBe('POST')
      expect(h[':path']).toBe('/pkg.Svc/M')
      expect(h['te']).toBe('trailers')
      expect(h['content-type']).toBe('application/grpc')
      expect(h['x-meta']).toBe('one')
      expect(h['x-secret']).toBeUndefined()
      expect(h['keep-alive']).toBeUndefined()
    } finally {
      server.close()
    }
  })

  it('relays a status the server ends the call with, a trailers-only answer included, as trailers', async () => {
    const up = await startGrpcUpstream()
    const gw = await startGateway(config([up]))
    const failed = await call(gw, '/test.Echo/Unary', ['fail:5'])
    expect(failed.status).toBe(200)
    expect(failed.messages).toEqual([])
    expect(failed.grpcStatus).toBe(5)
    expect(failed.trailers['grpc-message']).toBe('asked%20to%20fail') // percent-encoded, as the server sent it
    expect(failed.headers['grpc-status']).toBeUndefined()
    const unknown = await call(gw, '/test.Echo/Nope', ['x'])
    expect(unknown.grpcStatus).toBe(12) // UNIMPLEMENTED, from the server
  })

  it('answers its own refusals as gRPC statuses: 429 RESOURCE_EXHAUSTED, 404 UNIMPLEMENTED, 503 UNAVAILABLE', async () => {
    const up = await startGrpcUpstream()
    const gw = await startGateway(config([up], '', `
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1m, burst: 2, key: route }]
  - id: down
    match: { path: /test.Down/* }
    upstream: down`).replace('routes:', `  down: { protocol: grpc, targets: [{ url: "http://127.0.0.1:1" }], retry: { attempts: 0 } }\nroutes:`))
    expect((await call(gw, '/test.Echo/Unary', ['1'])).grpcStatus).toBe(0)
    expect((await call(gw, '/test.Echo/Unary', ['2'])).grpcStatus).toBe(0)
    const limited = await call(gw, '/test.Echo/Unary', ['3'])
    expect(limited.status).toBe(200)
    expect(limited.headers['content-type']).toBe('application/grpc')
    expect(limited.headers['x-tollgate-error']).toBe('RATE_LIMITED')
    expect(limited.grpcStatus).toBe(8)
    expect(String(limited.trailers['grpc-message'])).toContain('RATE_LIMITED')
    expect(up.calls).toHaveLength(2)

    const noRoute = await call(gw, '/other.Service/Method', ['x'])
    expect(noRoute.status).toBe(200)
    expect(noRoute.grpcStatus).toBe(12)
    expect(noRoute.headers['x-tollgate-error']).toBe('ROUTE_NOT_FOUND')
    // A plain HTTP client on no route still gets the JSON 404.
    const plain = await gw.get('/other')
    expect(plain.status).toBe(404)
    expect(plain.headers['content-type']).toBe('application/json')

    const down = await call(gw, '/test.Down/Call', ['x'])
    expect(down.status).toBe(200)
    expect(down.grpcStatus).toBe(14)
    expect(down.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
  })

  it('counts grpc-status against the breaker only as failOn names it', async () => {
    const up = await startGrpcUpstream()
    const breaker = (failOn: string) => `    circuitBreaker: { minRequests: 3, errorRate: 50, openFor: 1m, failOn: ${failOn} }`
    const gw = await startGateway(config([up], '', breaker('[5xx, timeout, connect-failure]')))
    for (let i = 0; i < 5; i++) expect((await call(gw, '/test.Echo/Unary', ['fail:14'])).grpcStatus).toBe(14)
    // 5xx does not cover a gRPC status: the breaker stayed closed and every call reached the server.
    expect(up.calls).toHaveLength(5)

    expect(await gw.rewrite(config([up], '', breaker('[grpc-unavailable]')))).toBe('applied')
    for (let i = 0; i < 3; i++) expect((await call(gw, '/test.Echo/Unary', ['fail:14'])).grpcStatus).toBe(14)
    const open = await call(gw, '/test.Echo/Unary', ['hello'])
    expect(open.headers['x-tollgate-error']).toBe('CIRCUIT_OPEN')
    expect(open.grpcStatus).toBe(14)
    expect(up.calls).toHaveLength(8)
  })

  it('passive health ejects a target whose calls end UNAVAILABLE, not one whose calls end NOT_FOUND', async () => {
    const bad = await startGrpcUpstream('bad')
    const good = await startGrpcUpstream('good')
    const gw = await startGateway(config([bad, good], '    healthCheck: { passive: { consecutiveFailures: 2, ejectionTime: 1m } }'))
    // Round robin: the bad target gets every other call. NOT_FOUND is the caller's problem: no ejection.
    for (let i = 0; i < 6; i++) await call(gw, '/test.Echo/Unary', ['fail:5'])
    expect((await targetHealth(gw, bad.url)).healthy).toBe(true)
    for (let i = 0; i < 4; i++) await call(gw, '/test.Echo/Unary', ['fail:14'])
    expect((await targetHealth(gw, bad.url)).healthy).toBe(false)
    expect((await targetHealth(gw, good.url)).healthy).toBe(true)
    const before = bad.calls.length
    for (let i = 0; i < 4; i++) expect((await call(gw, '/test.Echo/Unary', ['x'])).messages).toEqual(['echo:good:x'])
    expect(bad.calls.length).toBe(before)
  })

  it('probes with the gRPC health protocol: NOT_SERVING takes a target out, SERVING brings it back', async () => {
    const up = await startGrpcUpstream()
    up.health = new Map([['', Serving.SERVING], ['test.Echo', Serving.SERVING]])
    const gw = await startGateway(config([up], `    onAllUnhealthy: fail
    healthCheck: { active: { grpcService: test.Echo, interval: 50ms, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 1 } }`))
    await until('the first probe passed', async () => (await targetHealth(gw, up.url)).healthy)
    expect((await call(gw, '/test.Echo/Unary', ['x'])).grpcStatus).toBe(0)

    up.health.set('test.Echo', Serving.NOT_SERVING)
    await until('NOT_SERVING seen', async () => !(await targetHealth(gw, up.url)).healthy)
    expect((await targetHealth(gw, up.url)).health.active!.lastError).toBe('health status NOT_SERVING')
    const refused = await call(gw, '/test.Echo/Unary', ['x'])
    expect(refused.headers['x-tollgate-error']).toBe('NO_HEALTHY_UPSTREAM')
    expect(refused.grpcStatus).toBe(14)

    up.health.delete('test.Echo') // the server answers NOT_FOUND for a service it does not know
    const checks = up.healthChecks
    await until('a probe answered NOT_FOUND', () => up.healthChecks > checks + 1)
    expect((await targetHealth(gw, up.url)).health.active!.lastError).toBe('grpc-status 5')

    up.health.set('test.Echo', Serving.SERVING)
    await until('SERVING again', async () => (await targetHealth(gw, up.url)).healthy)
    expect((await call(gw, '/test.Echo/Unary', ['y'])).messages).toEqual(['echo:upstream:y'])
  })

  it('a gRPC health probe fails against a server that is not gRPC', async () => {
    const plain = await startUpstream()
    const gw = await startGateway(`
upstreams:
  echo:
    protocol: grpc
    targets: [{ url: "${plain.url}" }]
    healthCheck: { active: { grpcService: "", interval: 50ms, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 1 } }
routes:
  - { id: echo, match: { path: /test.Echo/* }, upstream: echo }
`)
    await until('probe failed', async () => (await targetHealth(gw, plain.url)).health.active?.lastError != null)
    expect((await targetHealth(gw, plain.url)).healthy).toBe(false)
  })
})

describe('gRPC in the access log', () => {
  it('gives each call its grpcStatus, the gateway\'s own included, and no such field on plain HTTP', async () => {
    const up = await startGrpcUpstream()
    const plain = await startUpstream()
    const proc = await spawnGateway(`
upstreams:
  echo: { protocol: grpc, targets: [{ url: "${up.url}" }] }
  web: { targets: [{ url: "${plain.url}" }] }
routes:
  - { id: echo, match: { path: /test.Echo/* }, upstream: echo, rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1m, burst: 2, key: route }] }
  - { id: web, match: { path: /web }, upstream: web }
`, [], { TOLLGATE_LOG_ACCESS: 'true' })
    const gw = { url: proc.url } as TestGateway
    await call(gw, '/test.Echo/Unary', ['ok'])
    await call(gw, '/test.Echo/Unary', ['fail:14'])
    await call(gw, '/test.Echo/Unary', ['limited'])
    expect((await httpRequest(proc.url + '/web')).status).toBe(200)
    await proc.stop()
    const lines = proc.stdout().split('\n').filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => [l['route'], l['status'], l['grpcStatus']])).toEqual([
      ['echo', 200, 0], ['echo', 200, 14], ['echo', 200, 8], ['web', 200, undefined],
    ])
  })
})

describe('gRPC config', () => {
  it('refuses grpcService on an upstream that is not protocol: grpc, and an unknown grpc failOn word', async () => {
    const start = startGateway(`
upstreams:
  u: { targets: [{ url: "http://127.0.0.1:9" }], healthCheck: { active: { grpcService: "" } } }
routes:
  - { id: r, match: { path: /* }, upstream: u, circuitBreaker: { failOn: [grpc-sleepy] } }
`)
    await expect(start).rejects.toThrow(/routes\.yaml:\d+:\d+ upstreams\.u\.healthCheck\.active\.grpcService: the gRPC health protocol needs protocol: grpc on the upstream/)
    await expect(start).rejects.toThrow(/routes\.yaml:\d+:\d+ routes\[0\]\.circuitBreaker\.failOn\[0\]/)
  })
})
