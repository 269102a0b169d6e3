// Hostile HTTP (README "The canonical path", "Headers"): every rejection answers the right
// status AND the upstream receives nothing; accepted requests reach the upstream in the routed form.
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { rawRequest, statusOf } from '../helpers/raw.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

let up: Upstream
let gw: TestGateway
let host: string

// One gateway for the file: these tests only read.
beforeAll(async () => {
  up = await startUpstream({
    suite: true,
    handler(req, res) {
      if (req.url?.startsWith('/hop')) {
        res.writeHead(200, [
          'Connection', 'keep-alive, x-up-secret', 'X-Up-Secret', 'leak', 'Keep-Alive', 'timeout=999',
          'Proxy-Authenticate', 'Basic', 'Upgrade', 'h2c', 'Trailer', 'x-t', 'X-Kept', 'yes',
        ])
        res.end('ok')
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    },
  })
  gw = await startGateway(`
limits: { headersTimeout: 1s, requestTimeout: 5s }
upstreams:
  api: { targets: [{ url: ${up.url} }] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
  - { id: enc, match: { path: /enc/:name }, upstream: api, allowEncodedSlash: true }
  - { id: hop, match: { path: /hop }, upstream: api }
  - { id: get-only, match: { path: /only-get, methods: [GET] }, upstream: api }
`, { suite: true })
  host = `127.0.0.1:${gw.port}`
})
afterAll(async () => {
  await gw.close()
  await up.close()
})

function req(target: string, extra = '', body = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n${body}`
}

/** Sends raw bytes; asserts the status and that the upstream saw no request. */
async function expectRejected(data: string, status: number): Promise<string> {
  const before = up.hits
  const response = await rawRequest(gw.port, data)
  expect(statusOf(response), response).toBe(status)
  expect(up.hits).toBe(before)
  return response
}

async function forwardedPath(target: string): Promise<string> {
  const before = up.hits
  const response = await rawRequest(gw.port, req(target))
  expect(statusOf(response), response).toBe(200)
  expect(up.hits).toBe(before + 1)
  return up.requests[up.requests.length - 1]!.url
}

describe('canonical path: rejected with 400 and never forwarded', () => {
  it.each([
    ['dot-dot segment', '/api/../admin'],
    ['encoded dot-dot', '/api/%2e%2e/admin'],
    ['mixed dot-dot', '/api/.%2E/admin'],
    ['single dot segment', '/api/./x'],
    ['encoded single dot', '/api/%2E/x'],
    ['trailing dot-dot', '/api/x/..'],
    ['encoded slash without opt-in', '/api/a%2Fb'],
    ['lower-case encoded slash', '/api/a%2fb'],
    ['raw backslash', '/api/a\\b'],
    ['encoded backslash', '/api/a%5Cb'],
    ['lower-case encoded backslash', '/api/a%5cb'],
    ['encoded NUL', '/api/a%00b'],
    ['encoded control character', '/api/a%1Fb'],
    ['encoded DEL', '/api/a%7F'],
    ['malformed percent', '/api/a%zz'],
    ['truncated percent', '/api/a%4'],
    ['lone percent', '/api/%'],
    ['semicolon', '/api/a;jsessionid=1'],
    ['encoded semicolon', '/api/a%3Bx=1'],
    ['fragment', '/api/a#frag'],
    ['absolute form naming another host', 'http://evil.example/api/x'],
    ['asterisk for GET', '*'],
  ])('%s: %s', async (_name, target) => {
    const response = await expectRejected(req(target), 400)
    expect(response).toContain('x-tollgate-error: BAD_REQUEST')
    expect(response).toContain('{"code":"BAD_REQUEST"')
  })

  it.each([
    ['/api/../admin', 'dot segment in the path'],
    ['/api/a%2Fb', 'encoded slash (%2F) in the path, which this route does not allow'],
    ['/api/a%5Cb', 'backslash in the path'],
    ['/api/a%00b', 'control character'],
    ['/api/a%zz', 'malformed percent-encoding'],
    ['/api/a;jsessionid=1', 'semicolon in the path'],
  ])('says which rule refused %s, without echoing the input', async (target, rule) => {
    const response = await expectRejected(req(target), 400)
    const body = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { message: string }
    expect(body.message).toContain(rule)
    expect(body.message).not.toContain(target.slice(5))
  })
})

describe('canonical path: normalized, then matched and forwarded as routed', () => {
  it('merges repeated slashes', async () => {
    expect(await forwardedPath('/api//x///y')).toBe('/api/x/y')
  })
  it('decodes unreserved characters before matching (/%61pi matches /api/*)', async () => {
    expect(await forwardedPath('/%61pi/x')).toBe('/api/x')
  })
  it('decodes %7E and upper-cases the hex of other escapes', async () => {
    expect(await forwardedPath('/api/%7euser/%c3%a9')).toBe('/api/~user/%C3%A9')
  })
  it('forwards %2F still encoded on a route that allows it', async () => {
    expect(await forwardedPath('/enc/a%2fb')).toBe('/enc/a%2Fb')
  })
  it('passes the query string unchanged', async () => {
    expect(await forwardedPath('/api/q?x=../../admin&y=%2f&z=%zz')).toBe('/api/q?x=../../admin&y=%2f&z=%zz')
  })
  it('accepts an absolute-form target whose authority is the Host and forwards its path', async () => {
    expect(await forwardedPath(`http://${host}/api/abs`)).toBe('/api/abs')
  })
  it('keeps segments that only look like dots', async () => {
    expect(await forwardedPath('/api/.../x/.hidden/b.')).toBe('/api/.../x/.hidden/b.')
  })
  it('answers OPTIONS * itself with 204', async () => {
    const before = up.hits
    const response = await rawRequest(gw.port, `OPTIONS * HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    expect(statusOf(response)).toBe(204)
    expect(up.hits).toBe(before)
  })
})

describe('framing: ambiguous requests are rejected and never forwarded', () => {
  it('Content-Length together with Transfer-Encoding', async () => {
    await expectRejected(`POST /api/x HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400)
  })
  it('two Content-Length headers', async () => {
    await expectRejected(`POST /api/x HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab`, 400)
  })
  it('Transfer-Encoding split across two header lines (gzip, then chunked)', async () => {
    await expectRejected(`POST /api/x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400)
  })
  it('Transfer-Encoding other than exactly chunked', async () => {
    await expectRejected(`POST /api/x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 400)
  })
  it('two Host headers', async () => {
    await expectRejected(`GET /api/x HTTP/1.1\r\nHost: ${host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n`, 400)
  })
  it('obs-fold (a header continued on the next line)', async () => {
    await expectRejected(`GET /api/x HTTP/1.1\r\nHost: ${host}\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n`, 400)
  })
  it('an Expect other than 100-continue gets 417', async () => {
    const response = await expectRejected(req('/api/x', 'Expect: teapot\r\n'), 417)
    expect(response).toContain('EXPECTATION_FAILED')
  })
})

describe('hop-by-hop headers', () => {
  it('are removed towards the upstream, and a listed header cannot remove one the gateway adds', async () => {
    const response = await rawRequest(gw.port, req('/api/hbh',
      'Connection: keep-alive, x-forwarded-for, x-request-id, traceparent, x-custom\r\n' +
      'X-Custom: 1\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nProxy-Authorization: Basic eA==\r\n' +
      'Proxy-Connection: keep-alive\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc\r\nTrailer: x-t\r\n' +
      'X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Other: kept\r\n'))
    expect(statusOf(response)).toBe(200)
    const seen = up.requests[up.requests.length - 1]!.headers
    for (const gone of ['x-custom', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'upgrade',
      'sec-websocket-key', 'trailer', 'x-real-ip', 'forwarded']) {
      expect(seen[gone], gone).toBeUndefined()
    }
    expect(seen['x-other']).toBe('kept')
    expect(seen['x-forwarded-for']).toBe('127.0.0.1')
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    expect(seen['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    expect(seen['x-forwarded-proto']).toBe('http')
    expect(seen['x-forwarded-host']).toBe(host)
  })

  it('from the upstream response never reach the client', async () => {
    const response = await rawRequest(gw.port, req('/hop'))
    expect(statusOf(response)).toBe(200)
    const head = response.split('\r\n\r\n')[0]!.toLowerCase()
    expect(head).not.toContain('x-up-secret')
    expect(head).not.toContain('timeout=999')
    expect(head).not.toContain('proxy-authenticate')
    expect(head).not.toContain('upgrade')
    expect(head).not.toContain('trailer')
    expect(head).toContain('x-kept: yes')
    expect(head).toContain('x-request-id:')
  })

  it('Keep-Alive, TE and Proxy-* from the client never cause a 500', async () => {
    for (const header of ['Keep-Alive: timeout=5, max=100', 'TE: trailers, deflate', 'Proxy-Authorization: Basic eA==', 'Proxy-Connection: close']) {
      const response = await rawRequest(gw.port, req('/api/h', header + '\r\n'))
      expect(statusOf(response), header).toBe(200)
    }
  })
})

describe('Expect: 100-continue', () => {
  it('the client gets 100, then the upstream gets the body (without the Expect header)', async () => {
    const before = up.hits
    const socket = net.connect(gw.port, '127.0.0.1')
    let out = ''
    const gotContinue = new Promise<void>((resolve) => {
      socket.on('data', (d) => {
        out += d.toString()
        if (out.includes('100 Continue')) resolve()
      })
    })
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    socket.write(`POST /api/upload HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`)
    await gotContinue
    expect(up.hits).toBe(before)
    socket.write('hello')
    await closed
    expect(out).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/)
    const seen = up.requests[up.requests.length - 1]!
    expect(seen.body.toString()).toBe('hello')
    expect(seen.headers['expect']).toBeUndefined()
  })

  it('a request for no route gets its 404 without a 100', async () => {
    const response = await rawRequest(gw.port, `POST /nothing HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`)
    expect(statusOf(response)).toBe(404)
    expect(response).not.toContain('100 Continue')
  })
})

describe('slow clients', () => {
  it('a slowloris client gets 408 within headersTimeout + 1 s', async () => {
    const started = Date.now()
    const socket = net.connect(gw.port, '127.0.0.1')
    let out = ''
    socket.on('data', (d) => { out += d.toString() })
    socket.write(`GET /api/x HTTP/1.1\r\nHost: ${host}\r\n`)
    const drip = setInterval(() => socket.write('X-Slow: a\r\n'), 200)
    await new Promise<void>((resolve) => socket.on('close', () => resolve()))
    clearInterval(drip)
    const elapsed = Date.now() - started
    expect(statusOf(out)).toBe(408)
    expect(out).toContain('REQUEST_TIMEOUT')
    expect(elapsed).toBeLessThan(1000 + 1000 + 500)
  })
})

describe('broken upstream framing', () => {
  it('becomes a 502 and the bad connection is not reused', async () => {
    let connections = 0
    const bad = net.createServer((s) => {
      connections++
      s.on('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'))
    })
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r))
    const badGw = await startGateway(`
upstreams:
  bad: { targets: [{ url: http://127.0.0.1:${(bad.address() as net.AddressInfo).port} }] }
routes:
  - { id: bad, match: { path: /* }, upstream: bad }
`)
    const first = await badGw.get('/x')
    expect(first.status).toBe(502)
    expect(first.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    const second = await badGw.get('/y')
    expect(second.status).toBe(502)
    expect(connections).toBe(2)
    await new Promise<void>((r) => bad.close(() => r()))
  })
})

describe('traceparent', () => {
  const valid = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

  /** Sends one request on its own path; returns its status and the headers the upstream saw for IT. */
  async function traced(name: string, header: string): Promise<{ status: number; seen: Upstream['requests'][number]['headers'] | undefined }> {
    const path = `/api/trace-${name.replace(/\W/g, '-')}-${up.hits}`
    const status = statusOf(await rawRequest(gw.port, req(path, header)))
    return { status, seen: up.requests.find((r) => r.url === path)?.headers }
  }

  it('keeps a valid incoming trace id and makes the gateway the parent', async () => {
    const { status, seen } = await traced('valid', `traceparent: ${valid}\r\ntracestate: a=1\r\n`)
    expect(status).toBe(200)
    expect(seen?.['traceparent']).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/)
    expect(seen?.['traceparent']).not.toBe(valid)
    expect(seen?.['tracestate']).toBe('a=1')
  })
  it.each([
    ['invalid', `traceparent: 00-xyz-00f067aa0ba902b7-01\r\n`],
    ['duplicated', `traceparent: ${valid}\r\ntraceparent: ${valid}\r\n`],
    ['all-zero trace id', `traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n`],
  ])('forwards the request with a new trace when the incoming one is %s', async (name, header) => {
    const { status, seen } = await traced(name, header + 'tracestate: a=1\r\n')
    expect(status).toBe(200)
    expect(seen).toBeDefined()
    expect(seen!['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    expect(seen!['traceparent']).not.toContain('4bf92f3577b34da6a3ce929d0e0e4736')
    expect(seen!['tracestate']).toBeUndefined()
  })
})
