// Forwarding (README "Headers", "The canonical path"). Real gateway, real upstreams on 127.0.0.1, no mocks.
import { spawn } from 'node:child_process'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startGateway, type Response } from '../helpers/gateway.js'
import { rawRequest, statusOf } from '../helpers/raw.js'
import { freePort, startUpstream } from '../helpers/upstream.js'

/** An upstream that counts accepted connections and records how much of each request body arrived. */
async function startCountingUpstream(handler?: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen: Array<{ url: string; bytes: number; complete: boolean; closed: boolean }> = []
  let connections = 0
  let waiters: Array<{ ready: () => boolean; resolve: () => void }> = []
  const changed = (): void => {
    waiters = waiters.filter((w) => {
      if (!w.ready()) return true
      w.resolve()
      return false
    })
  }
  const server = http.createServer((req, res) => {
    const entry = { url: req.url ?? '', bytes: 0, complete: false, closed: false }
    seen.push(entry)
    req.on('data', (c: Buffer) => { entry.bytes += c.length; changed() })
    req.on('end', () => { entry.complete = true; changed() })
    req.on('close', () => { entry.closed = true; changed() })
    changed()
    if (handler !== undefined) return handler(req, res)
    req.on('end', () => res.end('ok'))
  })
  server.on('connection', () => { connections++ })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    get connections() { return connections },
    /** Resolves once `ready()` holds, re-checked on every request event (no polling). */
    until(ready: () => boolean): Promise<void> {
      if (ready()) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ ready, resolve }))
    },
  }
}

function route(upstreamUrl: string, extra = '', upstreamExtra = ''): string {
  return `
upstreams:
  api: { targets: [{ url: ${upstreamUrl} }]${upstreamExtra} }
routes:
  - { id: api, match: { path: /api/* }, upstream: api${extra} }
`
}

/** Every gateway-made response, README "Error codes": JSON {code, message}, content-type, x-tollgate-error, x-request-id. */
function expectGatewayResponse(r: Response, status: number, code: string): void {
  expect(r.status).toBe(status)
  expect(r.headers['content-type']).toBe('application/json')
  expect(r.headers['x-tollgate-error']).toBe(code)
  expect(r.headers['x-request-id']).toMatch(/^\S+$/)
  const body = r.json() as Record<string, unknown>
  expect(Object.keys(body).sort()).toEqual(['code', 'message'])
  expect(body['code']).toBe(code)
  expect(body['message']).toBeTypeOf('string')
  expect((body['message'] as string).length).toBeGreaterThan(0)
}

function header(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) out.push(rawHeaders[i + 1]!)
  return out
}

describe('forwarding', () => {
  it('forwards a matched request to the upstream and returns its response', async () => {
    const up = await startUpstream({ body: 'pong' })
    const gw = await startGateway(route(up.url))
    const r = await gw.get('/api/ping?x=1')
    expect(r.status).toBe(200)
    expect(r.body).toBe('pong')
    expect(up.requests[0]!.url).toBe('/api/ping?x=1')
    expect(r.headers['x-request-id']).toBeTypeOf('string')
  })

  it('reuses a few keep-alive connections per target for many sequential requests', async () => {
    const a = await startCountingUpstream()
    const b = await startCountingUpstream()
    const gw = await startGateway(`
upstreams:
  a: { targets: [{ url: ${a.url} }] }
  b: { targets: [{ url: ${b.url} }] }
routes:
  - { id: a, match: { path: /a/* }, upstream: a }
  - { id: b, match: { path: /b/* }, upstream: b }
`)
    for (let i = 0; i < 50; i++) {
      expect((await gw.get(`/a/${i}`)).status).toBe(200)
      expect((await gw.get(`/b/${i}`)).status).toBe(200)
    }
    expect(a.seen).toHaveLength(50)
    expect(b.seen).toHaveLength(50)
    expect(a.connections).toBeLessThanOrEqual(2)
    expect(b.connections).toBeLessThanOrEqual(2)
  })
})

describe('forwarding headers', () => {
  it('drops client-sent forwarding headers from an untrusted peer and sets X-Forwarded-For to the peer', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url))
    const r = await gw.get('/api/x', {
      host: 'shop.example.com',
      'x-forwarded-for': '6.6.6.6',
      'x-real-ip': '6.6.6.6',
      forwarded: 'for=6.6.6.6',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'evil.example.com',
      'x-forwarded-port': '443',
    })
    expect(r.status).toBe(200)
    const raw = up.requests[0]!.rawHeaders
    expect(header(raw, 'x-forwarded-for')).toEqual(['127.0.0.1'])
    expect(header(raw, 'x-real-ip')).toEqual([])
    expect(header(raw, 'forwarded')).toEqual([])
    expect(header(raw, 'x-forwarded-port')).toEqual([])
    expect(header(raw, 'x-forwarded-proto')).toEqual(['http'])
    expect(header(raw, 'x-forwarded-host')).toEqual(['shop.example.com'])
  })

  it('appends the peer to X-Forwarded-For from a trusted proxy', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`clientIp: { trustedProxies: [127.0.0.1/32] }\n${route(up.url)}`)
    const r = await gw.get('/api/x', { host: 'shop.example.com', 'x-forwarded-for': '203.0.113.7, 10.1.2.3', 'x-forwarded-proto': 'https' })
    expect(r.status).toBe(200)
    const raw = up.requests[0]!.rawHeaders
    expect(header(raw, 'x-forwarded-for')).toEqual(['203.0.113.7, 10.1.2.3, 127.0.0.1'])
    expect(header(raw, 'x-forwarded-proto')).toEqual(['https'])
    expect(header(raw, 'x-forwarded-host')).toEqual(['shop.example.com'])
  })

  it('keeps a client X-Request-Id and sends the same value upstream and back', async () => {
    const up = await startUpstream({ headers: { 'x-request-id': 'from-upstream' } })
    const gw = await startGateway(route(up.url))
    const r = await gw.get('/api/x', { 'x-request-id': 'req-abc-123' })
    expect(r.headers['x-request-id']).toBe('req-abc-123')
    expect(header(up.requests[0]!.rawHeaders, 'x-request-id')).toEqual(['req-abc-123'])
  })

  it('generates an X-Request-Id when the client has none, the same upstream and back', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url))
    const r1 = await gw.get('/api/x')
    const r2 = await gw.get('/api/x')
    const id1 = r1.headers['x-request-id'] as string
    expect(id1).toMatch(/^[0-9a-f-]{36}$/)
    expect(header(up.requests[0]!.rawHeaders, 'x-request-id')).toEqual([id1])
    expect(r2.headers['x-request-id']).not.toBe(id1)
    expect(header(up.requests[1]!.rawHeaders, 'x-request-id')).toEqual([r2.headers['x-request-id']])
  })

  it('replaces an unusable X-Request-Id (spaces, over 200 characters) with a generated one', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url))
    for (const bad of ['has space', 'x'.repeat(201)]) {
      const r = await gw.get('/api/x', { 'x-request-id': bad })
      const id = r.headers['x-request-id'] as string
      expect(id).toMatch(/^[0-9a-f-]{36}$/)
      expect(header(up.requests.at(-1)!.rawHeaders, 'x-request-id')).toEqual([id])
    }
  })
})

describe('methods and bodies', () => {
  it('forwards HEAD and returns the upstream headers without a body', async () => {
    const up = await startUpstream({ body: 'twelve bytes', headers: { 'content-length': '12' } })
    const gw = await startGateway(route(up.url))
    const r = await gw.request('/api/x', { method: 'HEAD' })
    expect(r.status).toBe(200)
    expect(r.headers['content-length']).toBe('12')
    expect(r.body).toBe('')
    expect(up.requests[0]!.method).toBe('HEAD')
  })

  it('forwards a body with its length, re-framed, and the response body unchanged', async () => {
    const body = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251))
    const up = await startUpstream({ handler: (_req, res, got) => { res.end(got) } })
    const gw = await startGateway(route(up.url))
    const r = await gw.request('/api/echo', { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' } })
    expect(r.status).toBe(200)
    expect(Buffer.from(r.body, 'latin1').length).toBe(body.length)
    expect(up.requests[0]!.body.equals(body)).toBe(true)
    expect(header(up.requests[0]!.rawHeaders, 'content-length')).toEqual(['100000'])
  })
})

describe('Content-Length bodies in pieces', () => {
  it('streams each piece as it comes, ends the response with the last one and keeps the connection', async () => {
    let sendRest: () => void = () => undefined
    const up = await startUpstream({
      handler: (req, res) => {
        if (req.url === '/api/second') return void res.end('two')
        res.writeHead(200, { 'content-length': '10' })
        res.write('01234')
        sendRest = () => res.end('56789')
      },
    })
    const gw = await startGateway(route(up.url))
    const socket = net.connect(gw.port, '127.0.0.1')
    onTestFinished(() => { socket.destroy() })
    let received = ''
    let waiter: { until: (s: string) => boolean; resolve: () => void } | null = null
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      received += d
      if (waiter !== null && waiter.until(received)) waiter.resolve()
    })
    const receivedUntil = (until: (s: string) => boolean): Promise<void> => new Promise((resolve) => {
      if (until(received)) return resolve()
      waiter = { until, resolve }
    })
    socket.write('GET /api/first HTTP/1.1\r\nHost: a\r\n\r\n')
    // The first piece reaches the client before the upstream has sent the rest.
    await receivedUntil((s) => s.endsWith('\r\n\r\n01234'))
    sendRest()
    await receivedUntil((s) => s.endsWith('0123456789'))
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(received.toLowerCase()).toContain('content-length: 10\r\n')
    // Same connection, next request: the first response ended cleanly at its 10th byte.
    received = ''
    socket.write('GET /api/second HTTP/1.1\r\nHost: a\r\n\r\n')
    await receivedUntil((s) => s.endsWith('\r\n\r\ntwo'))
    expect(up.requests.map((r) => r.url)).toEqual(['/api/first', '/api/second'])
    const status = (await gw.admin('/status')).json() as { inflight: number }
    expect(status.inflight).toBe(0)
  })
})

describe('client going away', () => {
  it('a client that disconnects mid-response stops the upstream transfer', async () => {
    const total = 100 * 1024 * 1024
    let written = 0
    let upstreamClosed: () => void = () => undefined
    const closed = new Promise<void>((r) => { upstreamClosed = r })
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(total) })
      const chunk = Buffer.alloc(64 * 1024)
      const pump = (): void => {
        while (written < total) {
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      res.on('close', () => upstreamClosed())
      pump()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    onTestFinished(async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    })
    const gw = await startGateway(route(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
    const socket = net.connect(gw.port, '127.0.0.1')
    let received = 0
    socket.on('data', (d: Buffer) => {
      received += d.length
      if (received > 1024 * 1024) socket.destroy()
    })
    socket.write('GET /api/big HTTP/1.1\r\nHost: a\r\n\r\n')
    await closed
    expect(written).toBeLessThan(total / 2)
    const status = (await gw.admin('/status')).json() as { inflight: number }
    expect(status.inflight).toBe(0)
  })
})

describe('hostHeader', () => {
  it.each([
    ['pass', (_port: number) => 'shop.example.com:8443'],
    ['target', (port: number) => `127.0.0.1:${port}`],
    ['internal.svc.local', (_port: number) => 'internal.svc.local'],
  ])('hostHeader %s sets the upstream Host', async (mode, expected) => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url, '', `, hostHeader: ${mode}`))
    const r = await gw.get('/api/x', { host: 'shop.example.com:8443' })
    expect(r.status).toBe(200)
    const raw = up.requests[0]!.rawHeaders
    expect(header(raw, 'host')).toEqual([expected(up.port)])
    expect(header(raw, 'x-forwarded-host')).toEqual(['shop.example.com:8443'])
  })
})

describe('rewrite', () => {
  async function forwardedPaths(yamlRoutes: string, paths: string[]): Promise<string[]> {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
${yamlRoutes}`)
    for (const p of paths) expect((await gw.get(p)).status).toBe(200)
    return up.requests.map((r) => r.url)
  }

  it('stripPrefix removes the prefix, forwards / for an empty result and keeps the query unchanged', async () => {
    const got = await forwardedPaths(`  - { id: api, match: { path: /api/* }, upstream: api, rewrite: { stripPrefix: /api } }`, [
      '/api/users/1?b=2&a=1&c=%2f%zz+x',
      '/api',
      '/api/',
      '/api?q=1',
    ])
    expect(got).toEqual(['/users/1?b=2&a=1&c=%2f%zz+x', '/', '/', '/?q=1'])
  })

  it('stripPrefix only strips whole segments', async () => {
    const got = await forwardedPaths(`  - { id: api, match: { path: /* }, upstream: api, rewrite: { stripPrefix: /api } }`, [
      '/apiary/x',
      '/api/x',
    ])
    expect(got).toEqual(['/apiary/x', '/x'])
  })

  it('a path template fills :params and * from the match and keeps the query unchanged', async () => {
    const got = await forwardedPaths(
      `  - { id: files, match: { path: /v1/users/:id/files/* }, upstream: api, rewrite: { path: /internal/u/:id/f/* } }
  - { id: one, match: { path: /v1/orders/:order }, upstream: api, rewrite: { path: /orders/:order/detail } }`,
      ['/v1/users/42/files/a/b.txt?x=%41&y', '/v1/orders/7?z=1', '/v1/users/9/files/', '/v1/users/9/files'],
    )
    expect(got).toEqual(['/internal/u/42/f/a/b.txt?x=%41&y', '/orders/7/detail?z=1', '/internal/u/9/f/', '/internal/u/9/f/'])
  })

  it('a path template without parameters forwards the fixed path with the query', async () => {
    const got = await forwardedPaths(`  - { id: h, match: { path: /health/* }, upstream: api, rewrite: { path: /internal/status/ } }`, ['/health/deep/x?v=1'])
    expect(got).toEqual(['/internal/status/?v=1'])
  })

  it('forwards the canonical path, not the client spelling', async () => {
    const got = await forwardedPaths(`  - { id: api, match: { path: /api/* }, upstream: api, rewrite: { stripPrefix: /api } }`, [
      '/api//%7euser/%61?q=%7e',
    ])
    expect(got).toEqual(['/~user/a?q=%7e'])
  })
})

describe('upstream timeouts', () => {
  it('a refused connection is 502 UPSTREAM_UNAVAILABLE', async () => {
    const port = await freePort()
    const gw = await startGateway(route(`http://127.0.0.1:${port}`))
    expectGatewayResponse(await gw.get('/api/x'), 502, 'UPSTREAM_UNAVAILABLE')
  })

  it('no response headers within timeouts.response is 504 UPSTREAM_TIMEOUT, on time', async () => {
    const up = await startUpstream({ delaysMs: [5000] })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 300ms }'))
    const t0 = performance.now()
    const r = await gw.get('/api/x')
    const elapsed = performance.now() - t0
    expectGatewayResponse(r, 504, 'UPSTREAM_TIMEOUT')
    expect(elapsed).toBeGreaterThanOrEqual(280)
    expect(elapsed).toBeLessThan(3000) // generous: a loaded machine delays the timer, never advances it
  })

  it('an upstream that stops mid-body for timeouts.response is cut off: the client connection closes, the upstream request is aborted', async () => {
    let upstreamClosed: () => void = () => undefined
    const aborted = new Promise<void>((r) => { upstreamClosed = r })
    const up = await startUpstream({
      handler: (_req, res) => {
        res.writeHead(200, { 'content-length': '10' })
        res.write('01234') // and nothing more
        res.on('close', () => upstreamClosed())
      },
    })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 300ms }'))
    const socket = net.connect(gw.port, '127.0.0.1')
    let received = ''
    socket.on('data', (d: Buffer) => { received += d.toString('latin1') })
    const closed = new Promise<void>((r) => socket.on('close', () => r()))
    const t0 = performance.now()
    socket.write('GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n')
    await closed
    const elapsed = performance.now() - t0
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n01234$/)
    expect(elapsed).toBeGreaterThanOrEqual(280)
    expect(elapsed).toBeLessThan(3000) // generous: a loaded machine delays the timer, never advances it
    await aborted
    const status = (await gw.admin('/status')).json() as { inflight: number }
    expect(status.inflight).toBe(0)
  })

  it('a client reading slowly for longer than timeouts.response still gets the whole body', async () => {
    const SIZE = 8 * 1024 * 1024
    const up = await startUpstream({ body: Buffer.alloc(SIZE, 0x61), headers: { 'content-length': String(SIZE) } })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 200ms }'))
    const socket = net.connect(gw.port, '127.0.0.1')
    onTestFinished(() => { socket.destroy() })
    let received = 0
    socket.on('data', (d: Buffer) => { received += d.length })
    const done = new Promise<void>((resolve) => socket.on('close', () => resolve())) // Connection: close
    socket.pause() // the gateway fills the socket buffers, then has to wait for this client
    socket.write('GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')
    await new Promise((r) => setTimeout(r, 800)) // a slow client: 4x timeouts.response without reading
    socket.resume()
    await done
    expect(received).toBeGreaterThan(SIZE) // the body, plus the head
  })

  it('a reload that changes only timeouts.response applies it to the next request', async () => {
    const up = await startUpstream({ delaysMs: [600] })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 5s }'))
    expect((await gw.get('/api/x')).status).toBe(200)
    expect(await gw.rewrite(route(up.url, '', ', timeouts: { response: 200ms }'))).toBe('applied')
    expectGatewayResponse(await gw.get('/api/x'), 504, 'UPSTREAM_TIMEOUT')
  })

  it('timeouts.response does not cut off a client upload that takes longer than it', async () => {
    const up = await startUpstream({ handler: (_req, res, body) => { res.end(String(body.length)) } })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 300ms }'))
    const socket = net.connect(gw.port, '127.0.0.1')
    onTestFinished(() => { socket.destroy() })
    let response = ''
    socket.on('data', (d: Buffer) => { response += d.toString('latin1') })
    const closed = new Promise((r) => socket.on('close', r))
    socket.write('POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n')
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100)) // a slow client: 1 s for the body
      socket.write('z')
    }
    await closed
    expect(statusOf(response)).toBe(200)
    expect(response.endsWith('\r\n\r\n10')).toBe(true)
  })

  it('no connection within timeouts.connect is 504 UPSTREAM_TIMEOUT, on time', async () => {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs. The
    // listener lives in a child process that blocks in Atomics.wait right after printing its port, so it
    // never accepts, however late the test gets to connect on a busy machine.
    const child = spawn(process.execPath, ['-e', `
      const net = require('node:net'); const fs = require('node:fs')
      const s = net.createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
        fs.writeSync(1, s.address().port + '\\n')
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
      })`], { stdio: ['ignore', 'pipe', 'inherit'] })
    onTestFinished(() => { child.kill('SIGKILL') })
    const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))))
    // Linux queues backlog + 1 = 2 finished handshakes; once two fillers are connected, the queue is full.
    const fillers: net.Socket[] = []
    onTestFinished(() => { for (const s of fillers) s.destroy() })
    const connected: Array<Promise<void>> = []
    for (let i = 0; i < 4; i++) {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => undefined)
      connected.push(new Promise((r) => s.once('connect', () => r())))
      fillers.push(s)
    }
    await atLeast(2, connected)
    const gw = await startGateway(route(`http://127.0.0.1:${port}`, '', ', timeouts: { connect: 300ms }'))
    const t0 = performance.now()
    const r = await gw.get('/api/x')
    const elapsed = performance.now() - t0
    expectGatewayResponse(r, 504, 'UPSTREAM_TIMEOUT')
    expect(elapsed).toBeGreaterThanOrEqual(280)
    expect(elapsed).toBeLessThan(3000) // generous: a loaded machine delays the timer, never advances it
  })
})

describe('maxBodySize', () => {
  const limited = (url: string) => `
limits: { maxBodySize: 1KiB }
upstreams:
  api: { targets: [{ url: ${url} }] }
routes:
  - { id: small, match: { path: /small/* }, upstream: api }
  - { id: big, match: { path: /big/* }, upstream: api, maxBodySize: 4KiB }
`

  it('answers 413 from Content-Length before reading the body, and the upstream gets nothing', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(limited(up.url))
    // Only the headers are sent: the 413 must come without the gateway waiting for the body.
    const res = await rawRequest(gw.port, 'POST /small/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n')
    expect(statusOf(res)).toBe(413)
    expect(res).toContain('x-tollgate-error: PAYLOAD_TOO_LARGE')
    expect(up.seen).toHaveLength(0)
    expect(up.connections).toBe(0)
  })

  it('applies a per-route maxBodySize override', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(limited(up.url))
    const body = Buffer.alloc(2000, 'x')
    expect((await gw.request('/big/x', { method: 'POST', body })).status).toBe(200)
    expect(up.seen[0]!.bytes).toBe(2000)
    const over = await rawRequest(gw.port, 'POST /big/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n')
    expect(statusOf(over)).toBe(413)
    expect(up.seen).toHaveLength(1)
  })

  it('answers 413 while streaming a chunked body over the limit and aborts the upstream request', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(limited(up.url))
    const socket = net.connect(gw.port, '127.0.0.1')
    onTestFinished(() => { socket.destroy() })
    let response = ''
    socket.on('data', (d: Buffer) => { response += d.toString('latin1') })
    socket.on('error', () => undefined)
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.write('POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n')
    const chunk = `258\r\n${'y'.repeat(600)}\r\n` // 0x258 = 600 bytes
    socket.write(chunk)
    // Under the limit so far: the body streams to the upstream before it is complete.
    await up.until(() => up.seen.length === 1 && up.seen[0]!.bytes === 600)
    socket.write(chunk) // 1200 > 1024
    await up.until(() => up.seen[0]!.closed)
    await closed
    expect(statusOf(response)).toBe(413)
    expect(response).toContain('x-tollgate-error: PAYLOAD_TOO_LARGE')
    expect(up.seen[0]!.complete).toBe(false)
    expect(up.seen[0]!.bytes).toBeLessThanOrEqual(1024)
  })

  it('streams a chunked body under the limit whole', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(limited(up.url))
    const res = await rawRequest(gw.port,
      'POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' +
      `1f4\r\n${'z'.repeat(500)}\r\n1f4\r\n${'z'.repeat(500)}\r\n0\r\n\r\n`, 10_000) // ends when the gateway closes
    expect(statusOf(res)).toBe(200)
    expect(up.seen[0]).toMatchObject({ bytes: 1000, complete: true })
  })
})

describe('client limits', () => {
  /** Sends `text` one byte every `everyMs`; resolves with everything the gateway wrote and when it closed. */
  function trickle(port: number, text: string, everyMs: number): Promise<{ response: string; ms: number }> {
    return new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      const t0 = performance.now()
      let response = ''
      let i = 0
      const timer = setInterval(() => {
        if (i < text.length && !socket.destroyed) socket.write(text[i++]!)
      }, everyMs)
      socket.on('data', (d: Buffer) => { response += d.toString('latin1') })
      socket.on('error', () => undefined)
      socket.on('close', () => {
        clearInterval(timer)
        resolve({ response, ms: performance.now() - t0 })
      })
      onTestFinished(() => {
        clearInterval(timer)
        socket.destroy()
      })
    })
  }

  it('a slowloris client gets 408 REQUEST_TIMEOUT within headersTimeout + 1 s and is closed', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(`limits: { headersTimeout: 1s }\n${route(up.url)}`)
    // Keeps sending header bytes, never the blank line.
    const { response, ms } = await trickle(gw.port, 'GET /api/x HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'a'.repeat(1000), 100)
    expect(statusOf(response)).toBe(408)
    expect(response).toContain('x-tollgate-error: REQUEST_TIMEOUT')
    expect(ms).toBeLessThan(2000)
    expect(up.seen).toHaveLength(0)
  })

  it('a client sending its body too slowly gets 408 within requestTimeout + 1 s and the upstream request is aborted', async () => {
    const up = await startCountingUpstream()
    const gw = await startGateway(`limits: { requestTimeout: 2s, headersTimeout: 1s }\n${route(up.url)}`)
    const socket = net.connect(gw.port, '127.0.0.1')
    onTestFinished(() => { socket.destroy() })
    const t0 = performance.now()
    let response = ''
    socket.on('data', (d: Buffer) => { response += d.toString('latin1') })
    socket.on('error', () => undefined)
    const closed = new Promise<number>((r) => socket.on('close', () => r(performance.now() - t0)))
    socket.write('POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n')
    const timer = setInterval(() => { if (!socket.destroyed) socket.write('z') }, 100)
    onTestFinished(() => clearInterval(timer))
    const ms = await closed
    clearInterval(timer)
    expect(ms).toBeGreaterThanOrEqual(1900)
    expect(ms).toBeLessThan(3000)
    // The part of the body that had arrived was streaming upstream; that request is aborted, not completed.
    await up.until(() => up.seen[0]?.closed === true)
    expect(up.seen[0]!.complete).toBe(false)
    expect(statusOf(response)).toBe(408)
    expect(response).toContain('x-tollgate-error: REQUEST_TIMEOUT')
  })
})

describe('gateway-made responses (README "Error codes")', () => {
  it('404 ROUTE_NOT_FOUND', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url))
    expectGatewayResponse(await gw.get('/nothing/here'), 404, 'ROUTE_NOT_FOUND')
    expect(up.hits).toBe(0)
  })

  it('405 METHOD_NOT_ALLOWED with Allow', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/*, methods: [GET, PUT] }, upstream: api }
`)
    const r = await gw.request('/api/x', { method: 'DELETE' })
    expectGatewayResponse(r, 405, 'METHOD_NOT_ALLOWED')
    expect(r.headers['allow']).toBe('GET, HEAD, PUT')
    expect(up.hits).toBe(0)
  })

  it('413 PAYLOAD_TOO_LARGE', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`limits: { maxBodySize: 10 }\n${route(up.url)}`)
    expectGatewayResponse(await gw.request('/api/x', { method: 'POST', body: 'x'.repeat(11) }), 413, 'PAYLOAD_TOO_LARGE')
    expect(up.hits).toBe(0)
  })

  it('502 UPSTREAM_UNAVAILABLE when the upstream sends broken framing', async () => {
    const server = net.createServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello'))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())))
    const gw = await startGateway(route(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
    expectGatewayResponse(await gw.get('/api/x'), 502, 'UPSTREAM_UNAVAILABLE')
  })

  it('503 NO_HEALTHY_UPSTREAM with onAllUnhealthy: fail and every target unhealthy', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url, '', ', onAllUnhealthy: fail'))
    for (const t of gw.gateway.table.upstreams.get('api')!.pool.targets) t.healthy = false
    expectGatewayResponse(await gw.get('/api/x'), 503, 'NO_HEALTHY_UPSTREAM')
    expect(up.hits).toBe(0)
  })

  it('503 OVERLOADED at maxConcurrent', async () => {
    let release: () => void = () => undefined
    const held = new Promise<void>((r) => { release = r })
    const up = await startCountingUpstream((_req, res) => { void held.then(() => res.end('late')) })
    const gw = await startGateway(route(up.url, '', ', maxConcurrent: 1'))
    onTestFinished(() => release()) // before the gateway drains: hooks run in reverse order
    const first = gw.get('/api/slow')
    await up.until(() => up.seen.length === 1)
    expectGatewayResponse(await gw.get('/api/x'), 503, 'OVERLOADED')
    release()
    expect((await first).status).toBe(200)
  })

  it('504 UPSTREAM_TIMEOUT', async () => {
    const up = await startUpstream({ delaysMs: [2000] })
    const gw = await startGateway(route(up.url, '', ', timeouts: { response: 100ms }'))
    expectGatewayResponse(await gw.get('/api/x'), 504, 'UPSTREAM_TIMEOUT')
  })

  it('a gateway-made response carries the client X-Request-Id', async () => {
    const up = await startUpstream()
    const gw = await startGateway(route(up.url))
    const r = await gw.get('/nothing', { 'x-request-id': 'trace-me-1' })
    expect(r.headers['x-request-id']).toBe('trace-me-1')
  })
})

/** Resolves once `n` of the promises resolved. */
function atLeast(n: number, promises: ReadonlyArray<Promise<void>>): Promise<void> {
  let done = 0
  return new Promise((resolve) => {
    for (const p of promises) void p.then(() => { if (++done === n) resolve() })
  })
}
