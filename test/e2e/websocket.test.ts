// WebSocket through the pipeline (README "WebSocket"), with the `ws` package as client and as upstream: the
// upgrade passes the route's steps (one limiter decision per connection, breaker admission, a healthy
// target), frames are relayed both ways with backpressure, idleTimeout closes both sides, either side's
// close reaches the other, reloads leave open connections alone, SIGTERM ends them with 1001, and
// tollgate_websocket_connections follows them. Routes without `websocket: true` refuse upgrades.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { TestCa } from '../helpers/certs.js'
import { httpRequest, spawnGateway, startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort, startUpstream } from '../helpers/upstream.js'
import { closed, nextMessage, refusedStatus, startWsUpstream, WebSocket, wsConnect, type WsUpstream } from '../helpers/ws.js'

function wsUrl(gw: { url: string }, path: string): string {
  return gw.url.replace('http://', 'ws://') + path
}

function config(up: WsUpstream, route = ''): string {
  return `upstreams:
  chat: { targets: [{ url: ${up.url} }] }
routes:
  - { id: ws, match: { path: /ws/* }, upstream: chat, websocket: true${route} }
  - { id: plain, match: { path: /plain/* }, upstream: chat }
`
}

/** tollgate_websocket_connections{route} from /metrics; null when the series is absent. */
async function gauge(gw: TestGateway, route: string): Promise<number | null> {
  const text = (await gw.admin('/metrics')).body
  const m = new RegExp(`^tollgate_websocket_connections\\{route="${route}"\\} (\\S+)$`, 'm').exec(text)
  return m === null ? null : Number(m[1])
}

/** Polls `read` until it returns `want` (an event in another process or the metrics scrape); bounded. */
async function eventually<T>(read: () => Promise<T>, want: T, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: T
  do {
    last = await read()
    if (last === want) return
    await new Promise((r) => setTimeout(r, 20))
  } while (Date.now() < deadline)
  throw new Error(`expected ${String(want)}, last saw ${String(last)}`)
}

/** `promise`, or a failure naming `what` after `ms`: a property that is broken fails fast, not at the test timeout. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms) })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** A raw HTTP/1.1 exchange: the bytes the gateway answered until it closed the connection. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(request))
    let out = ''
    s.setEncoding('latin1')
    s.on('data', (d: string) => { out += d })
    s.on('close', () => resolve(out))
    s.on('error', reject)
  })
}

describe('WebSocket', () => {
  it('relays messages both ways, pushes from the upstream included, with the handshake headers forwarded', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    const { ws, headers } = await wsConnect(wsUrl(gw, '/ws/room?x=1'), { protocols: ['chat.v1'], headers: { 'x-request-id': 'ws-test-1' } })
    expect(headers['x-request-id']).toBe('ws-test-1')
    expect(headers['sec-websocket-protocol']).toBe('chat.v1')
    ws.send('hello')
    expect((await nextMessage(ws)).data.toString()).toBe('hello')
    ws.send(Buffer.from([0, 1, 2, 255]))
    const binary = await nextMessage(ws)
    expect(binary.isBinary).toBe(true)
    expect([...binary.data]).toEqual([0, 1, 2, 255])
    // Pushed by the upstream without a message first.
    up.sockets[0]!.send('server push')
    expect((await nextMessage(ws)).data.toString()).toBe('server push')

    const hs = up.handshakes[0]!
    expect(hs.url).toBe('/ws/room?x=1')
    expect(hs.headers['upgrade']).toBe('websocket')
    expect(hs.headers['sec-websocket-key']).toBeTruthy()
    expect(hs.headers['sec-websocket-protocol']).toBe('chat.v1')
    expect(hs.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(hs.headers['x-request-id']).toBe('ws-test-1')
    expect(hs.headers['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
    ws.close()
  })

  it('works over TLS (wss://) on a listener with tls:', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-wss-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const ca = new TestCa(dir)
    const leaf = ca.server('ws', 'ws', ['ws.test'])
    const up = await startWsUpstream()
    const gw = await startGateway(`tls:\n  certificates: [{ cert: ${leaf.cert}, key: ${leaf.key} }]\n${config(up)}`)
    const { ws } = await wsConnect(`wss://127.0.0.1:${gw.port}/ws/secure`, { tls: { ca: readFileSync(ca.cert), servername: 'ws.test' } })
    ws.send('over tls')
    expect((await nextMessage(ws)).data.toString()).toBe('over tls')
    expect(up.handshakes[0]!.headers['x-forwarded-proto']).toBe('https')
    ws.close()
  })

  it('relays big messages whole both ways', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    const { ws } = await wsConnect(wsUrl(gw, '/ws/big'))
    const big = Buffer.alloc(16 * 1024 * 1024)
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff
    ws.send(big)
    const back = await nextMessage(ws)
    expect(back.data.length).toBe(big.length)
    expect(back.data.equals(big)).toBe(true)
    // Many at once: order and content kept.
    const received: string[] = []
    const all = new Promise<void>((resolve) => ws.on('message', (d) => { received.push(d.toString().slice(0, 8)); if (received.length === 20) resolve() }))
    for (let i = 0; i < 20; i++) ws.send(String(i).padStart(8, '0') + 'x'.repeat(256 * 1024))
    await all
    expect(received).toEqual(Array.from({ length: 20 }, (_, i) => String(i).padStart(8, '0')))
    ws.close()
  })

  it('stops reading from the upstream while the client does not read (backpressure), then delivers everything', async () => {
    const up = await startWsUpstream({ echo: false })
    const gw = await startGateway(config(up))
    const serverSide = up.nextConnection()
    const { ws } = await wsConnect(wsUrl(gw, '/ws/slow'))
    const upstreamWs = await serverSide
    ws.pause() // the client stops reading its socket
    const chunk = Buffer.alloc(1024 * 1024, 7)
    const total = 256
    let flushed = 0
    let lastProgress = Date.now()
    // The upstream sends the next message once the previous one is written to its socket.
    const sendNext = (): void => {
      if (flushed === total) return
      upstreamWs.send(chunk, { binary: true }, () => { flushed++; lastProgress = Date.now(); sendNext() })
    }
    sendNext()
    // Wait until the upstream stalls (no write completed for 500 ms), bounded.
    const deadline = Date.now() + 20_000
    while (Date.now() - lastProgress < 500 && flushed < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    // Socket buffers on the way hold some MiB; a gateway that buffered would have taken all 256.
    expect(flushed).toBeLessThan(64)
    let received = 0
    const all = new Promise<void>((resolve) => ws.on('message', (d: Buffer) => { received += d.length; if (received === total * chunk.length) resolve() }))
    ws.resume()
    await all
    expect(flushed).toBe(total)
    ws.close()
  })

  it('makes one limiter decision per connection: N connections with a burst of N-1, the last gets 429', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up, ', rateLimit: [{ name: conn, algorithm: token-bucket, rate: 1, period: 1h, burst: 2 }]'))
    const a = await wsConnect(wsUrl(gw, '/ws/a'))
    // Messages on an open connection are not limited.
    for (let i = 0; i < 10; i++) {
      a.ws.send('m' + i)
      expect((await nextMessage(a.ws)).data.toString()).toBe('m' + i)
    }
    const b = await wsConnect(wsUrl(gw, '/ws/b'))
    const refused = await refusedStatus(wsUrl(gw, '/ws/c'))
    expect(refused.status).toBe(429)
    expect(refused.headers['x-tollgate-error']).toBe('RATE_LIMITED')
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'RATE_LIMITED' })
    expect(up.handshakes).toHaveLength(2)
    const metrics = (await gw.admin('/metrics')).body
    expect(metrics).toMatch(/tollgate_ratelimit_decisions_total\{route="ws",limiter="conn",decision="allowed"\} 2\n/)
    expect(metrics).toMatch(/tollgate_ratelimit_decisions_total\{route="ws",limiter="conn",decision="rejected"\} 1\n/)
    a.ws.close()
    b.ws.close()
  })

  it('answers 502 when the target refuses the connection, and 503 CIRCUIT_OPEN once the breaker opened', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`
    const gw = await startGateway(`upstreams:
  chat: { targets: [{ url: ${dead} }] }
routes:
  - { id: ws, match: { path: /ws/* }, upstream: chat, websocket: true, circuitBreaker: { minRequests: 2, openFor: 1m, failOn: [connect-failure] } }
`)
    const statuses: number[] = []
    for (let i = 0; i < 3; i++) statuses.push((await refusedStatus(wsUrl(gw, '/ws/x'))).status)
    expect(statuses).toEqual([502, 502, 503])
    const open = await refusedStatus(wsUrl(gw, '/ws/x'))
    expect(open.headers['x-tollgate-error']).toBe('CIRCUIT_OPEN')
  })

  it('answers 504 when the upstream does not answer the handshake within timeouts.response', async () => {
    // Accepts the connection, reads the handshake, never answers.
    const silent = net.createServer((socket) => socket.resume())
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const held = new Set<net.Socket>()
    silent.on('connection', (s) => { held.add(s); s.on('close', () => held.delete(s)) })
    onTestFinished(() => new Promise<void>((r) => { for (const s of held) s.destroy(); silent.close(() => r()) }))
    const gw = await startGateway(`upstreams:
  chat: { targets: [{ url: http://127.0.0.1:${(silent.address() as net.AddressInfo).port} }], timeouts: { connect: 5s, response: 300ms } }
routes:
  - { id: ws, match: { path: /ws/* }, upstream: chat, websocket: true }
`)
    const started = Date.now()
    const refused = await within(refusedStatus(wsUrl(gw, '/ws/x')), 5000, 'an answer to the handshake')
    expect(refused.status).toBe(504)
    expect(refused.headers['x-tollgate-error']).toBe('UPSTREAM_TIMEOUT')
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
  })

  it('passes a non-101 answer of the upstream back as a normal response', async () => {
    // A plain HTTP server: the upgrade request gets its normal 200 (it has no 'upgrade' listener).
    const up = await startUpstream({ statuses: [403], body: 'no socket for you' })
    const gw = await startGateway(`upstreams:
  chat: { targets: [{ url: ${up.url} }] }
routes:
  - { id: ws, match: { path: /ws/* }, upstream: chat, websocket: true }
`)
    const refused = await refusedStatus(wsUrl(gw, '/ws/x'))
    expect(refused.status).toBe(403)
    expect(refused.body).toBe('no socket for you')
    expect(refused.headers['x-request-id']).toBeTruthy()
    expect(refused.headers['x-tollgate-error']).toBeUndefined()
  })

  it('counts a 5xx answer to the handshake for passive health: the target is ejected, later handshakes go elsewhere', async () => {
    const bad = await startUpstream({ statuses: [503] })
    const good = await startWsUpstream()
    const gw = await startGateway(`upstreams:
  chat:
    targets: [{ url: ${bad.url} }, { url: ${good.url} }]
    healthCheck: { passive: { consecutiveFailures: 1, ejectionTime: 1m } }
routes:
  - { id: ws, match: { path: /ws/* }, upstream: chat, websocket: true }
`)
    const outcomes: number[] = []
    for (let i = 0; i < 4; i++) {
      try {
        const { ws } = await wsConnect(wsUrl(gw, '/ws/x'))
        outcomes.push(101)
        ws.close()
      } catch (err) {
        outcomes.push((err as { status?: number }).status ?? 0)
      }
    }
    expect(outcomes.filter((s) => s === 503)).toHaveLength(1)
    expect(outcomes.filter((s) => s === 101)).toHaveLength(3)
    expect(bad.hits).toBe(1)
  })

  it('refuses an upgrade on a route without websocket: true with 403, and the upstream never sees it', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    const refused = await refusedStatus(wsUrl(gw, '/plain/x'))
    expect(refused.status).toBe(403)
    expect(refused.headers['x-tollgate-error']).toBe('FORBIDDEN')
    expect(refused.headers['connection']).toBe('close')
    expect(up.handshakes).toHaveLength(0)
    expect(up.plain).toHaveLength(0)
    // Unmatched: 404, as for any request.
    expect((await refusedStatus(wsUrl(gw, '/nowhere'))).status).toBe(404)
  })

  it('never forwards Sec-WebSocket-* or Upgrade on a normal route; another Upgrade (h2c) is served as a plain request', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    const r = await httpRequest(gw.url + '/plain/x', { headers: { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' } })
    expect(r.status).toBe(200)
    expect(up.plain[0]!.headers['sec-websocket-key']).toBeUndefined()
    expect(up.plain[0]!.headers['sec-websocket-version']).toBeUndefined()
    const answer = await rawExchange(gw.port, 'GET /plain/h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n')
    expect(answer).toMatch(/^HTTP\/1\.1 200 /)
    expect(answer.toLowerCase()).toContain('connection: close')
    expect(answer.endsWith('plain')).toBe(true)
    expect(up.plain[1]!.url).toBe('/plain/h2c')
    expect(up.plain[1]!.headers['upgrade']).toBeUndefined()
    expect(up.plain[1]!.headers['http2-settings']).toBeUndefined()
    expect(up.handshakes).toHaveLength(0)
  })

  it('closes both sides after idleTimeout without traffic, not while messages flow', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up, ', idleTimeout: 400ms'))
    const serverSide = up.nextConnection()
    const { ws } = await wsConnect(wsUrl(gw, '/ws/idle'))
    const upstreamWs = await serverSide
    const clientClosed = closed(ws)
    const upstreamClosed = closed(upstreamWs)
    const started = Date.now()
    // Traffic for 1 s (every 100 ms, each way through the echo): it stays open.
    for (let i = 0; i < 10; i++) {
      ws.send('tick')
      await nextMessage(ws)
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(ws.readyState).toBe(WebSocket.OPEN)
    await within(Promise.all([clientClosed, upstreamClosed]), 5000, 'both sides closed by idleTimeout')
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000)
    await eventually(() => gauge(gw, 'ws'), 0)
  })

  it('passes a close of either side to the other, with its code', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    let serverSide = up.nextConnection()
    const a = await wsConnect(wsUrl(gw, '/ws/a'))
    const upA = await serverSide
    const aClosed = closed(a.ws)
    upA.close(4001, 'upstream done')
    expect(await within(aClosed, 5000, 'client closed')).toBe(4001)

    serverSide = up.nextConnection()
    const b = await wsConnect(wsUrl(gw, '/ws/b'))
    const upB = await serverSide
    const upBClosed = closed(upB)
    b.ws.close(4002, 'client done')
    expect(await within(upBClosed, 5000, 'upstream closed')).toBe(4002)

    // A reset of the upstream's TCP connection closes the client's too.
    serverSide = up.nextConnection()
    const c = await wsConnect(wsUrl(gw, '/ws/c'))
    const upC = await serverSide
    const cClosed = closed(c.ws)
    upC.terminate()
    expect(await within(cClosed, 5000, 'client closed after the reset')).toBe(1006)
    await eventually(() => gauge(gw, 'ws'), 0)
  })

  it('keeps open connections through a reload that removes their route', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    const { ws } = await wsConnect(wsUrl(gw, '/ws/stay'))
    expect(await gw.rewrite(`upstreams:
  chat: { targets: [{ url: ${up.url} }] }
routes:
  - { id: plain, match: { path: /plain/* }, upstream: chat }
`)).toBe('applied')
    expect((await refusedStatus(wsUrl(gw, '/ws/new'))).status).toBe(404)
    ws.send('still here')
    expect((await within(nextMessage(ws), 5000, 'echo after the reload')).data.toString()).toBe('still here')
    // The gone route's series stays while its connection is open.
    expect(await gauge(gw, 'ws')).toBe(1)
    ws.close()
    await eventually(() => gauge(gw, 'ws'), null)
  })

  it('counts open connections in tollgate_websocket_connections', async () => {
    const up = await startWsUpstream()
    const gw = await startGateway(config(up))
    expect(await gauge(gw, 'ws')).toBe(0)
    const a = await wsConnect(wsUrl(gw, '/ws/a'))
    const b = await wsConnect(wsUrl(gw, '/ws/b'))
    expect(await gauge(gw, 'ws')).toBe(2)
    a.ws.close()
    await eventually(() => gauge(gw, 'ws'), 1)
    b.ws.close()
    await eventually(() => gauge(gw, 'ws'), 0)
    // Counted once each, at the upgrade, as 101.
    expect((await gw.admin('/metrics')).body).toMatch(/tollgate_requests_total\{route="ws",method="GET",code="101"\} 2\n/)
  })

  it('on SIGTERM keeps open connections while draining, takes no new ones, and ends them with close code 1001 when shutdown.timeout passes', async () => {
    const up = await startWsUpstream()
    const proc = await spawnGateway(`shutdown: { delay: 300ms, timeout: 700ms }\n${config(up)}`)
    const serverSide = up.nextConnection()
    const { ws } = await wsConnect(wsUrl(proc, '/ws/live'))
    const upstreamWs = await serverSide
    const clientClosed = closed(ws)
    const upstreamClosed = closed(upstreamWs)
    const signalled = Date.now()
    process.kill(proc.pid, 'SIGTERM')
    // While delaying, the connection still works.
    ws.send('during delay')
    expect((await nextMessage(ws)).data.toString()).toBe('during delay')
    // Draining: the listener is closed, no new handshake gets in; the open connection goes on.
    await proc.waitForStdout('"msg":"draining"')
    await expect(wsConnect(wsUrl(proc, '/ws/late'))).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    ws.send('while draining')
    expect((await nextMessage(ws)).data.toString()).toBe('while draining')
    expect(await within(clientClosed, 10_000, 'client closed by the shutdown')).toBe(1001)
    expect(await within(upstreamClosed, 5000, 'upstream closed by the shutdown')).toBe(1001)
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(900)
    expect((await proc.exited).code).toBe(0)
    // One access-log line for the connection, written at the upgrade, with status 101.
    const access = proc.stdout().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['msg'] === 'access')
    expect(access.map((l) => [l['path'], l['status']])).toEqual([['/ws/live', 101]])
  })
})
