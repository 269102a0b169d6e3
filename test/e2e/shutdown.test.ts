// Graceful shutdown (README "Deployment"), on the built CLI as a real process: SIGTERM turns /readyz
// to 503, traffic is served for shutdown.delay, then the listener closes, idle keep-alive connections close
// at once, busy ones after their response (Connection: close), and the process exits 0 when the last
// request in flight is done or shutdown.timeout passed. A second signal exits at once.
import http from 'node:http'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startHoldingUpstream, startUpstream, type Upstream } from '../helpers/upstream.js'

function config(fast: Upstream, slow: Upstream, shutdown = ''): string {
  return `${shutdown === '' ? '' : `shutdown: ${shutdown}\n`}upstreams:
  fast: { targets: [{ url: ${fast.url} }] }
  slow: { targets: [{ url: ${slow.url} }] }
routes:
  - { id: fast, match: { path: /fast/* }, upstream: fast }
  - { id: slow, match: { path: /slow/* }, upstream: slow }
`
}

interface NodeResponse { status: number; headers: http.IncomingHttpHeaders; body: string }

/** A GET through `agent` (node:http, so the socket and its `connection` header are visible). */
function get(url: string, agent: http.Agent | false, onSocket?: (s: net.Socket) => void): Promise<NodeResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (onSocket !== undefined) req.once('socket', onSocket)
  })
}

/** Resolves with the connect error code, or 'connected'. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve('connected') })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

function portOf(proc: GatewayProcess): number {
  return Number(new URL(proc.url).port)
}

/** Polls /readyz until it answers `status` (the signal is handled asynchronously); bounded. */
async function readyzBecomes(proc: GatewayProcess, status: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const r = await httpRequest(proc.adminUrl + '/readyz').catch(() => null)
    if (r?.status === status) return
    if (Date.now() > deadline) throw new Error(`/readyz did not become ${status} within ${timeoutMs} ms (last: ${r?.status})`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('graceful shutdown', () => {
  it('on SIGTERM closes idle keep-alive connections at once, refuses new ones, finishes the request in flight with Connection: close and exits 0', async () => {
    const fast = await startUpstream({ body: 'fast' })
    const slow = await startHoldingUpstream()
    const proc = await spawnGateway(config(fast, slow))
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 })
    let idleSocket!: net.Socket
    expect((await get(proc.url + '/fast/x', keepAlive, (s) => { idleSocket = s })).status).toBe(200)
    const idleClosed = new Promise<void>((r) => idleSocket.once('close', () => r()))
    const inflight = get(proc.url + '/slow/x', false)
    await slow.arrived

    proc.child.kill('SIGTERM')

    await idleClosed
    expect(await connectOutcome(portOf(proc))).toBe('ECONNREFUSED')
    expect(proc.child.exitCode).toBeNull()
    slow.release()
    const r = await inflight
    expect(r).toMatchObject({ status: 200, body: 'slow done' })
    expect(r.headers['connection']).toBe('close')
    expect(await proc.exited).toEqual({ code: 0, signal: null })
    keepAlive.destroy()
  })

  it('answers /readyz 503 during shutdown.delay while still serving traffic, then exits 0', async () => {
    const fast = await startUpstream({ body: 'fast' })
    const slow = await startHoldingUpstream()
    const proc = await spawnGateway(config(fast, slow, '{ delay: 3s, timeout: 5s }'))
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 })
    expect((await get(proc.url + '/fast/x', keepAlive)).status).toBe(200)

    const signalledMs = performance.now()
    proc.child.kill('SIGTERM')
    await readyzBecomes(proc, 503)

    const readyz = await httpRequest(proc.adminUrl + '/readyz')
    expect(readyz.json()).toMatchObject({ reason: 'draining' })
    // Still served, on a kept-alive connection and on a new one.
    const kept = await get(proc.url + '/fast/x', keepAlive)
    const fresh = await get(proc.url + '/fast/y', false)
    expect(performance.now() - signalledMs).toBeLessThan(3000)
    expect([kept.status, fresh.status]).toEqual([200, 200])
    expect(await proc.exited).toEqual({ code: 0, signal: null })
    expect(performance.now() - signalledMs).toBeGreaterThanOrEqual(2900)
    keepAlive.destroy()
  })

  it('exits 0 once shutdown.timeout passes even when a request is stuck', async () => {
    const fast = await startUpstream({ body: 'fast' })
    const stuck = await startHoldingUpstream()
    const proc = await spawnGateway(config(fast, stuck, '{ timeout: 1s }'))
    const inflight = get(proc.url + '/slow/x', false).then(() => 'answered', (err: NodeJS.ErrnoException) => err.code ?? err.message)
    await stuck.arrived

    const signalledMs = performance.now()
    proc.child.kill('SIGTERM')
    const exit = await proc.exited

    const elapsedMs = performance.now() - signalledMs
    expect(exit).toEqual({ code: 0, signal: null })
    expect(elapsedMs).toBeGreaterThanOrEqual(950)
    expect(elapsedMs).toBeLessThan(5000)
    expect(await inflight).toBe('ECONNRESET')
  })

  it('exits at once on a second signal', async () => {
    const fast = await startUpstream({ body: 'fast' })
    const stuck = await startHoldingUpstream()
    const proc = await spawnGateway(config(fast, stuck, '{ timeout: 30s }'))
    void get(proc.url + '/slow/x', false).catch(() => undefined)
    await stuck.arrived
    proc.child.kill('SIGTERM')
    await readyzBecomes(proc, 503)

    const secondMs = performance.now()
    proc.child.kill('SIGINT')
    const exit = await proc.exited

    expect(performance.now() - secondMs).toBeLessThan(3000)
    expect(exit.signal).toBeNull()
    expect(exit.code).not.toBe(0)
  })

  it('delivers the whole body of a large response to a slow reader before closing its connection', async () => {
    const fast = await startUpstream({ body: 'fast' })
    const size = 16 * 1024 * 1024
    const big = await startHoldingUpstream(Buffer.alloc(size, 'x'))
    const proc = await spawnGateway(config(fast, big))
    // A raw client that reads about 16 MB/s, so the gateway always has bytes queued for it.
    const socket = net.connect(portOf(proc), '127.0.0.1')
    let received = Buffer.alloc(0)
    let bodyBytes = 0
    let head = ''
    const closed = new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        if (head === '') {
          received = Buffer.concat([received, chunk])
          const end = received.indexOf('\r\n\r\n')
          if (end < 0) return
          head = received.subarray(0, end).toString('latin1')
          bodyBytes = received.length - end - 4
        } else bodyBytes += chunk.length
        socket.pause()
        setTimeout(() => socket.resume(), 4)
      })
      socket.on('close', () => resolve())
      socket.on('error', () => undefined)
    })
    socket.write('GET /slow/big HTTP/1.1\r\nhost: example.test\r\n\r\n')
    await big.arrived

    proc.child.kill('SIGTERM')
    await readyzBecomes(proc, 503)
    big.release()
    await closed

    expect(head).toMatch(/^HTTP\/1\.1 200/)
    expect(head.toLowerCase()).toContain('connection: close')
    expect(bodyBytes).toBe(size)
    expect(await proc.exited).toEqual({ code: 0, signal: null })
  })
})
