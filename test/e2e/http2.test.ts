// HTTP/2 to clients (README "HTTP/2"; issue 16 item 2): h2 by ALPN on the TLS listener with HTTP/1.1 still
// served on the same port, h2c with prior knowledge on a plaintext one; every route, limit and hygiene rule
// as over HTTP/1.1 (404, 413, 429, pseudo-headers never forwarded, :authority as Host and a conflicting Host
// refused, cookies joined, connection-specific response headers dropped), request bodies streamed, trailers
// passed, RST_STREAM aborting the upstream request, GOAWAY when draining. The upstream stays HTTP/1.1.
// Real gateway (in process), real node:http upstreams and node:http2 clients on 127.0.0.1.
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { TestCa, type CertFiles } from '../helpers/certs.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { connectH2, h2Request } from '../helpers/h2-client.js'
import { startHeldUpstream } from '../helpers/held.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

let dir: string
let ca: TestCa
let cert: CertFiles
let caPem: string

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-h2-'))
  ca = new TestCa(dir)
  cert = ca.server('gw', 'gw.test', ['gw.test', 'other.test'])
  caPem = readFileSync(ca.cert, 'utf8')
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const ROUTES = `
routes:
  - { id: api, match: { path: /api/* }, upstream: u }
  - id: limited
    match: { path: /limited }
    upstream: u
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1m, burst: 1 }]
  - { id: small, match: { path: /small }, upstream: u, maxBodySize: 10 }
`

/** A gateway with `http2: true` on TLS (or h2c on plaintext) in front of `up`. */
async function startH2Gateway(up: Upstream, mode: 'tls' | 'h2c' = 'tls', extra = ''): Promise<TestGateway & { h2url: string }> {
  const listener = mode === 'tls'
    ? `tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }] }\nhttp2: true`
    : 'http2: h2c'
  const gw = await startGateway(`${listener}\n${extra}\nupstreams: { u: { targets: [{ url: "${up.url}" }] } }\n${ROUTES}`)
  return Object.assign(gw, { h2url: `${mode === 'tls' ? 'https' : 'http'}://127.0.0.1:${gw.port}` })
}

const tlsClient = (): { ca: string; servername: string } => ({ ca: caPem, servername: 'gw.test' })

describe('HTTP/2 on the TLS listener (http2: true)', () => {
  it('negotiates h2 by ALPN and forwards over HTTP/1.1 with :authority as Host and no pseudo-headers', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    expect(session.alpnProtocol).toBe('h2')
    const r = await h2Request(session, { ':path': '/api/x?q=1', ':authority': 'gw.test', 'x-custom': 'yes' })
    expect(r.status).toBe(200)
    expect(r.body).toContain('/api/x?q=1')
    expect(r.headers['x-request-id']).toMatch(/./)
    const seen = up.requests[0]!
    expect(seen.url).toBe('/api/x?q=1')
    expect(seen.headers['host']).toBe('gw.test')
    expect(seen.headers['x-forwarded-proto']).toBe('https')
    expect(seen.headers['x-custom']).toBe('yes')
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.startsWith(':'))).toEqual([])
  })

  it('still serves HTTP/1.1 on the same port (ALPN http/1.1, and clients that offer no ALPN)', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    for (const ALPNProtocols of [['http/1.1'], undefined]) {
      const r = await new Promise<{ status: number; alpn: string | false; version: string }>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: gw.port, path: '/api/one', ca: caPem, servername: 'gw.test', headers: { host: 'gw.test' }, agent: false, ...(ALPNProtocols === undefined ? {} : { ALPNProtocols }) }, (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode!, alpn: (res.socket as import("node:tls").TLSSocket).alpnProtocol ?? false, version: res.httpVersion }))
        })
        req.on('error', reject)
        req.end()
      })
      expect(r.status).toBe(200)
      expect(r.version).toBe('1.1')
      expect(r.alpn).not.toBe('h2')
    }
  })

  it('answers 404, 413 and 429 over h2 as over HTTP/1.1', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const notFound = await h2Request(session, { ':path': '/nowhere' })
    expect(notFound.status).toBe(404)
    expect(notFound.headers['x-tollgate-error']).toBe('ROUTE_NOT_FOUND')
    expect(JSON.parse(notFound.body)).toMatchObject({ code: 'ROUTE_NOT_FOUND' })
    expect(notFound.headers['connection']).toBeUndefined()

    const tooLarge = await h2Request(session, { ':method': 'POST', ':path': '/small', 'content-length': '20' }, 'x'.repeat(20))
    expect(tooLarge.status).toBe(413)
    // Without Content-Length the body is counted while it streams.
    const streamedTooLarge = await h2Request(session, { ':method': 'POST', ':path': '/small' }, ['x'.repeat(8), 'x'.repeat(8)])
    expect(streamedTooLarge.status).toBe(413)

    expect((await h2Request(session, { ':path': '/limited' })).status).toBe(200)
    const limited = await h2Request(session, { ':path': '/limited' })
    expect(limited.status).toBe(429)
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(limited.headers['ratelimit-remaining']).toBe('0')
    // The session survived every refusal: HTTP/2 framing leaves nothing to close the connection over.
    expect((await h2Request(session, { ':path': '/api/after' })).status).toBe(200)
  })

  it('verifies client certificates on h2 connections and forwards the subject (forwardClientCert)', async () => {
    const up = await startUpstream()
    const client = ca.client('h2-client', 'h2 client')
    const gw = await startGateway(`tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }], clientAuth: { ca: ${ca.cert}, required: false } }
http2: true
upstreams: { u: { targets: [{ url: "${up.url}" }] } }
routes:
  - { id: api, match: { path: /api/* }, upstream: u, forwardClientCert: X-Client-Cert }
`)
    const url = `https://127.0.0.1:${gw.port}`
    const withCert = await connectH2(url, { ...tlsClient(), cert: readFileSync(client.cert), key: readFileSync(client.key) })
    expect((await h2Request(withCert, { ':path': '/api/a', 'x-client-cert': 'CN=forged' })).status).toBe(200)
    const anonymous = await connectH2(url, tlsClient())
    expect((await h2Request(anonymous, { ':path': '/api/b', 'x-client-cert': 'CN=forged' })).status).toBe(200)
    expect(up.requests.map((r) => [r.url, r.headers['x-client-cert']])).toEqual([['/api/a', 'CN=h2 client'], ['/api/b', undefined]])
  })

  it('answers Expect: 100-continue on a stream once the route is known, then forwards the body', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const r = await new Promise<{ continued: boolean; status: number }>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/api/expect', expect: '100-continue', 'content-length': '5' }, { endStream: false })
      let continued = false
      stream.on('continue', () => {
        continued = true
        stream.end('hello')
      })
      stream.on('response', (h) => {
        stream.resume()
        stream.on('end', () => resolve({ continued, status: Number(h[':status']) }))
      })
      stream.on('error', reject)
    })
    expect(r).toEqual({ continued: true, status: 200 })
    expect(up.requests[0]!.body.toString()).toBe('hello')
    expect(up.requests[0]!.headers['expect']).toBeUndefined()
  })

  it('answers 417 to an Expect other than 100-continue and 400 to CONNECT, on TLS and h2c alike', async () => {
    const up = await startUpstream()
    for (const mode of ['tls', 'h2c'] as const) {
      const gw = await startH2Gateway(up, mode)
      const session = await connectH2(gw.h2url, mode === 'tls' ? tlsClient() : {})
      const expectation = await h2Request(session, { ':path': '/api/x', expect: 'something-else' })
      expect(expectation.status).toBe(417)
      expect(expectation.headers['x-tollgate-error']).toBe('EXPECTATION_FAILED')
      const connect = await h2Request(session, { ':method': 'CONNECT', ':authority': 'internal.test:443' })
      expect(connect.status).toBe(400)
      expect(connect.body).toContain('CONNECT')
      expect((await h2Request(session, { ':path': '/api/after' })).status).toBe(200)
    }
    expect(up.requests.map((r) => r.url)).toEqual(['/api/after', '/api/after'])
  })

  it('refuses a Host that names another host than :authority (RFC 9113 §8.3.1) and takes a matching one', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const conflict = await h2Request(session, { ':path': '/api/x', ':authority': 'gw.test', host: 'evil.test' })
    expect(conflict.status).toBe(400)
    expect(conflict.body).toContain(':authority')
    const same = await h2Request(session, { ':path': '/api/x', ':authority': 'gw.test', host: 'GW.test' })
    expect(same.status).toBe(200)
    expect(up.requests.map((r) => r.headers['host'])).toEqual(['gw.test'])
  })

  it('never forwards a malformed request: node:http2 resets the stream, or the pipeline answers 400', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const cases: Array<[Record<string, string>, string]> = [
      [{ ':path': 'api/x' }, 'reset'],                     // not origin-form
      [{ ':path': '' }, 'reset'],
      [{ ':path': 'http://evil.test/api/x' }, 'reset'],    // absolute-form has no place in :path
      [{ ':path': '*' }, 'reset'],                         // asterisk-form outside OPTIONS
      [{ ':path': '/api/x', ':authority': 'a b' }, 'reset'],
      [{ ':path': '/api/x', ':scheme': 'ftp' }, '400'],
      [{ ':path': '/api/x', ':authority': 'user@gw.test' }, '400'],
      [{ ':path': '/api/%2e%2e/x' }, '400'],              // the canonical path rules, as over HTTP/1.1
      [{ ':path': '/api/x#frag' }, '400'],
    ]
    for (const [headers, expected] of cases) {
      const session = await connectH2(gw.h2url, tlsClient())
      const got = await h2Request(session, headers).then((r) => String(r.status), (err: Error) => (/NGHTTP2_PROTOCOL_ERROR/.test(err.message) ? 'reset' : err.message))
      expect([headers, got]).toEqual([headers, expected])
    }
    expect(up.hits).toBe(0)
  })

  it('streams a request body of unknown length upstream, and joins split cookies into one field', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const r = await h2Request(session, { ':method': 'POST', ':path': '/api/upload', cookie: ['a=1', 'b=2'] }, ['part one, ', 'part two'])
    expect(r.status).toBe(200)
    const seen = up.requests[0]!
    expect(seen.body.toString()).toBe('part one, part two')
    expect(seen.headers['transfer-encoding']).toBe('chunked')
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'cookie')).toHaveLength(1)
    expect(seen.headers['cookie']).toBe('a=1; b=2')
  })

  it('streams a 4 MiB response to a client that reads slowly (flow control, backpressure), and HEAD without a body', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'x')
    const up = await startUpstream({ body: big })
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const received = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':path': '/api/big' })
      let n = 0
      stream.on('data', (c: Buffer) => {
        n += c.length
        // Read in bursts: the gateway's writes wait for the window to open again.
        stream.pause()
        setTimeout(() => stream.resume(), 1)
      })
      stream.on('end', () => resolve(n))
      stream.on('error', reject)
    })
    expect(received).toBe(big.length)
    const head = await h2Request(session, { ':method': 'HEAD', ':path': '/api/big' })
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
  })

  it('drops connection-specific headers an HTTP/1.1 upstream sends, and passes its trailers', async () => {
    // Written raw: Connection, Keep-Alive, Proxy-Connection, Upgrade and Transfer-Encoding are illegal in an
    // HTTP/2 response (node:http2 throws on them), and the chunked body carries a trailer.
    const raw = net.createServer((socket) => {
      socket.once('data', () => {
        socket.end('HTTP/1.1 200 OK\r\nConnection: close, x-hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n' +
          'Upgrade: h2c\r\nx-hop: secret\r\nx-kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n')
      })
    })
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r))
    const up = { url: `http://127.0.0.1:${(raw.address() as net.AddressInfo).port}` } as Upstream
    try {
      const gw = await startH2Gateway(up)
      const session = await connectH2(gw.h2url, tlsClient())
      const r = await h2Request(session, { ':path': '/api/raw' })
      expect(r.status).toBe(200)
      expect(r.body).toBe('hello')
      expect(r.headers['x-kept']).toBe('yes')
      for (const name of ['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding', 'x-hop']) expect(r.headers[name]).toBeUndefined()
      expect(r.trailers?.['x-checksum']).toBe('abc')
    } finally {
      await new Promise<void>((r) => raw.close(() => r()))
    }
  })

  it('answers 502 when the upstream response cannot be sent over HTTP/2 (a repeated Content-Type)', async () => {
    const up = await startUpstream({ handler: (_req, res) => { res.writeHead(200, [['content-type', 'text/plain'], ['content-type', 'text/html']].flat()); res.end('x') } })
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const r = await h2Request(session, { ':path': '/api/dup' })
    expect(r.status).toBe(502)
    expect(r.headers['x-tollgate-error']).toBe('UPSTREAM_UNAVAILABLE')
    expect(r.headers['content-type']).toBe('application/json')
    expect((await h2Request(session, { ':path': '/api/again' })).status).toBe(502)
  })

  it('aborts the upstream request when the client resets the stream (RST_STREAM)', async () => {
    const up = await startHeldUpstream()
    const gw = await startH2Gateway(up)
    const session = await connectH2(gw.h2url, tlsClient())
    const stream = session.request({ ':path': '/api/held' })
    stream.on('error', () => undefined)
    await up.holding(1)
    expect(up.sockets.size).toBe(1)
    const upstreamSocket = [...up.sockets][0]!
    const upstreamClosed = new Promise<void>((resolve) => upstreamSocket.once('close', () => resolve()))
    const t0 = performance.now()
    stream.close(http2.constants.NGHTTP2_CANCEL)
    // The gateway aborted its upstream request: undici destroyed that connection (at once, not after its
    // 4 s keep-alive timeout).
    await upstreamClosed
    expect(performance.now() - t0).toBeLessThan(3_000)
    up.release()
    expect((await h2Request(session, { ':path': '/api/next' })).status).toBe(200)
    void gw
  })

  it('sends GOAWAY when draining and lets the stream in flight finish', async () => {
    const up = await startHeldUpstream('finished')
    // keepAliveTimeout far beyond the test: the GOAWAY seen is the drain's, not the idle session's.
    const gw = await startH2Gateway(up, 'tls', 'limits: { keepAliveTimeout: 60s }')
    const session = await connectH2(gw.h2url, tlsClient())
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()))
    const inFlight = h2Request(session, { ':path': '/api/slow' })
    await up.holding(1)
    const closed = gw.close()
    await goaway
    up.release()
    const r = await inFlight
    expect(r.status).toBe(200)
    expect(r.body).toBe('finished')
    await closed
  })
})

describe('h2c on the plaintext listener (http2: h2c)', () => {
  it('serves HTTP/2 with prior knowledge and HTTP/1.1 on the same port', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up, 'h2c')
    const session = await connectH2(gw.h2url)
    const r = await h2Request(session, { ':path': '/api/h2c' })
    expect(r.status).toBe(200)
    expect(up.requests[0]!.headers['x-forwarded-proto']).toBe('http')
    expect((await h2Request(session, { ':path': '/nowhere' })).status).toBe(404)
    const h1 = await gw.get('/api/h1')
    expect(h1.status).toBe(200)
    expect(up.requests.map((q) => q.url)).toEqual(['/api/h2c', '/api/h1'])
  })

  it('tells HTTP/1.1 from the preface when the first bytes arrive one at a time (a P could start either)', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up, 'h2c')
    const socket = net.connect(gw.port, '127.0.0.1')
    const answer = new Promise<string>((resolve) => {
      let text = ''
      socket.on('data', (c: Buffer) => {
        text += c.toString()
        if (text.includes('hello from')) resolve(text)
      })
    })
    await new Promise<void>((r) => socket.once('connect', () => r()))
    for (const part of ['P', 'O', 'ST /api/slow-start HTTP/1.1\r\nHost: gw.test\r\ncontent-length: 0\r\n\r\n']) {
      socket.write(part)
      await new Promise((r) => setTimeout(r, 30))
    }
    expect(await answer).toMatch(/^HTTP\/1\.1 200 OK/)
    socket.destroy()
    expect(up.requests.map((q) => [q.method, q.url])).toEqual([['POST', '/api/slow-start']])
  })

  it('closes a plaintext connection that sends nothing within headersTimeout, before knowing its protocol', async () => {
    const up = await startUpstream()
    const gw = await startH2Gateway(up, 'h2c', 'limits: { headersTimeout: 300ms }')
    const socket = net.connect(gw.port, '127.0.0.1')
    const started = performance.now()
    await new Promise<void>((resolve) => socket.once('close', () => resolve()))
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  it('keeps a plaintext listener HTTP/1.1-only without h2c: the preface is no request', async () => {
    const up = await startUpstream()
    const gw = await startGateway(`upstreams: { u: { targets: [{ url: "${up.url}" }] } }\n${ROUTES}`)
    const session = http2.connect(gw.url)
    session.on('error', () => undefined)
    const answered = await new Promise<boolean>((resolve) => {
      const stream = session.request({ ':path': '/api/x' })
      stream.on('response', () => resolve(true))
      stream.on('error', () => resolve(false))
      stream.on('close', () => resolve(false))
      stream.end()
    })
    session.destroy()
    expect(answered).toBe(false)
    expect(up.hits).toBe(0)
  })
})

describe('http2 config', () => {
  const load = (yaml: string): string[] => {
    try {
      return loadConfigText(`${yaml}\nupstreams: { u: { targets: [{ url: "http://127.0.0.1:1" }] } }\n${ROUTES}`, join(dir, 'routes.yaml'), {}).warnings.map((w) => `${w.where} ${w.path}: ${w.message}`)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      return [err.message]
    }
  }

  it('warns that http2: true does nothing without tls:', () => {
    expect(load('http2: true')).toEqual([expect.stringMatching(/routes\.yaml:1:8 http2: http2: true offers HTTP\/2 by ALPN on a TLS listener and has no effect without tls:/)])
  })

  it('refuses h2c on a TLS listener', () => {
    expect(load(`tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }] }\nhttp2: h2c`)).toEqual([
      expect.stringMatching(/routes\.yaml:2:8 http2: h2c is HTTP\/2 without TLS; with tls: write http2: true/),
    ])
  })
})

void http
