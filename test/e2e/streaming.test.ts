// Streaming: bodies stream through the gateway in both directions with backpressure. The gateway
// runs as its own process (the built CLI), so its resident memory can be read from /proc while 50 MB go
// through it towards a slow reader.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { describe, expect, it, onTestFinished } from 'vitest'
import { spawnGateway, type GatewayProcess } from '../helpers/gateway.js'

const SIZE = 50 * 1024 * 1024
const MiB = 1024 * 1024
/**
 * "A few MB", with room for measurement noise. RSS is read when a phase ends, not at its peak: the first
 * ~100 ms of any fast burst through a Node process raise RSS by up to ~30 MiB of allocator churn
 * (64 KiB socket read buffers in a malloc arena) that the next scavenge gives back; that is garbage, not
 * data held. At the end of a 1 s stall or of 1.5 s of slow reading the gateway measured -27..+8 MiB
 * against its baseline; without backpressure it holds the whole 50 MB as soon as the slow end stalls.
 */
const MAX_RSS_GROWTH = 16 * MiB
/**
 * Bytes between the two ends at any sample: the kernel socket buffers of both connections (on loopback,
 * autotuning lets each reach 4 MiB to send and 6 MiB to receive; 7-18 MiB measured) plus what the
 * gateway holds. Without backpressure this reaches the full 50 MB.
 */
const MAX_IN_PIPE = 24 * MiB
/** A deliberately slow reader: one socket read (at most 64 KiB) every 25 ms, about 2.5 MB/s. */
const SLOW_READ_INTERVAL_MS = 25

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) * 1024
}

/**
 * Samples every 20 ms the bytes in flight between the two ends of the stream (`inPipe()`: sent by one end
 * minus received by the other) and keeps the peak.
 */
function watchPipe(pid: number, inPipe: () => number) {
  let peak = inPipe()
  const timer = setInterval(() => { peak = Math.max(peak, inPipe()) }, 20)
  onTestFinished(() => clearInterval(timer))
  return {
    /** The gateway's RSS now and the peak in the pipe since the previous phase(). */
    phase(): { rss: number; inPipe: number } {
      const out = { rss: rssBytes(pid), inPipe: Math.max(peak, inPipe()) }
      peak = inPipe()
      return out
    },
    stop() { clearInterval(timer) },
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function gatewayYaml(upstreamUrl: string): string {
  return `
limits: { maxBodySize: 100MiB }
upstreams:
  api: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - { id: api, match: { path: /* }, upstream: api }
`
}

/** A few small exchanges first, so lazily built state (JIT, connection pools) exists before the baseline. */
async function warmUp(gw: GatewayProcess): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${gw.url}/small`, { method: i % 2 === 0 ? 'GET' : 'POST', body: i % 2 === 0 ? undefined : 'x'.repeat(16 * 1024) })
    await r.arrayBuffer()
  }
}

/** Upstream side of warmUp(); true when it answered the request. */
function answerWarmUp(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  if (req.url !== '/small') return false
  req.resume()
  req.on('end', () => res.end('ok'))
  return true
}

describe('streaming with backpressure', () => {
  it('streams a 50 MB response to a slow client without buffering it in the gateway', async () => {
    let written = 0
    const chunk = Buffer.alloc(64 * 1024, 'a')
    const upstream = http.createServer((req, res) => {
      if (answerWarmUp(req, res)) return
      req.resume()
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) })
      const pump = (): void => {
        while (written < SIZE) {
          const n = Math.min(chunk.length, SIZE - written)
          written += n
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump)
            return
          }
        }
        res.end()
      }
      pump()
    })
    const gw = await spawnGateway(gatewayYaml(await listen(upstream)))
    await warmUp(gw)

    const client = net.connect(Number(new URL(gw.url).port), '127.0.0.1')
    onTestFinished(() => { client.destroy() })
    let received = 0
    let head: string | null = null
    let slow = false
    const done = new Promise<void>((resolve, reject) => {
      client.on('data', (d: Buffer) => {
        if (head === null) {
          const text = d.toString('latin1')
          const end = text.indexOf('\r\n\r\n')
          head = text.slice(0, end)
          received += d.length - end - 4
        } else {
          received += d.length
        }
        if (slow) {
          client.pause()
          setTimeout(() => client.resume(), SLOW_READ_INTERVAL_MS)
        }
      })
      client.on('end', resolve)
      client.on('error', reject)
    })
    const baseline = rssBytes(gw.pid)
    const watch = watchPipe(gw.pid, () => written - received)
    client.write('GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')

    // 1 s of not reading at all: the gateway must stop reading from the upstream.
    client.pause()
    await delay(1000)
    const paused = watch.phase()
    // 1.5 s of slow reading.
    slow = true
    client.resume()
    await delay(1500)
    const slowly = watch.phase()
    const receivedSlowly = received
    // Then as fast as the client can: everything arrives.
    slow = false
    client.resume()
    await done
    const fast = watch.phase()
    watch.stop()

    expect(head).toMatch(/^HTTP\/1\.1 200/)
    expect(received).toBe(SIZE)
    expect(receivedSlowly).toBeLessThan(SIZE / 2) // the slow phase really was slow
    for (const phase of [paused, slowly, fast]) expect(phase.inPipe).toBeLessThan(MAX_IN_PIPE)
    expect(paused.rss - baseline).toBeLessThan(MAX_RSS_GROWTH)
    expect(slowly.rss - baseline).toBeLessThan(MAX_RSS_GROWTH)
    // Each stall waits for one 'drain': listeners must not pile up on the response.
    expect(gw.stderr()).not.toMatch(/MaxListenersExceeded/)
  })

  it('streams a 50 MB upload to a slow upstream without buffering it in the gateway', async () => {
    const up = await startSlowReadingUpstream()
    const gw = await spawnGateway(gatewayYaml(up.url))
    await warmUp(gw)
    const baseline = rssBytes(gw.pid)
    const client = net.connect(Number(new URL(gw.url).port), '127.0.0.1')
    onTestFinished(() => { client.destroy() })
    let response = ''
    client.on('data', (d: Buffer) => { response += d.toString('latin1') })
    const ended = new Promise<void>((r) => client.on('end', () => r()))
    let sent = 0
    const watch = watchPipe(gw.pid, () => sent - up.received)
    client.write(`POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${SIZE}\r\nConnection: close\r\n\r\n`)
    const chunk = Buffer.alloc(64 * 1024, 'b')
    const sendAll = (async () => {
      while (sent < SIZE) {
        const n = Math.min(chunk.length, SIZE - sent)
        sent += n
        if (!client.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => client.once('drain', r))
      }
    })()

    // The upstream does not read for 1 s, then reads slowly for 1.5 s: the client must be held back.
    await up.arrived
    await delay(1000)
    const paused = watch.phase()
    const sentWhilePaused = sent
    up.readSlowly()
    await delay(1500)
    const slowly = watch.phase()
    up.readFast()
    await sendAll
    await ended
    const fast = watch.phase()
    watch.stop()

    expect(response).toMatch(/^HTTP\/1\.1 200/)
    expect(response.endsWith(`\r\n\r\n${SIZE}`)).toBe(true)
    expect(up.received).toBe(SIZE)
    expect(sentWhilePaused).toBeLessThan(MAX_IN_PIPE)
    for (const phase of [paused, slowly, fast]) expect(phase.inPipe).toBeLessThan(MAX_IN_PIPE)
    expect(paused.rss - baseline).toBeLessThan(MAX_RSS_GROWTH)
    expect(slowly.rss - baseline).toBeLessThan(MAX_RSS_GROWTH)
  })

  it('streams a 50 MB chunked upload (counted against maxBodySize) with backpressure too', async () => {
    const up = await startSlowReadingUpstream()
    const gw = await spawnGateway(gatewayYaml(up.url))
    await warmUp(gw)
    const baseline = rssBytes(gw.pid)
    const client = net.connect(Number(new URL(gw.url).port), '127.0.0.1')
    onTestFinished(() => { client.destroy() })
    let response = ''
    client.on('data', (d: Buffer) => { response += d.toString('latin1') })
    const ended = new Promise<void>((r) => client.on('end', () => r()))
    let sent = 0
    const watch = watchPipe(gw.pid, () => sent - up.received)
    client.write('POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')
    const chunk = Buffer.alloc(64 * 1024, 'c')
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')])
    const sendAll = (async () => {
      while (sent < SIZE) {
        sent += chunk.length
        if (!client.write(frame)) await new Promise((r) => client.once('drain', r))
      }
      client.write('0\r\n\r\n')
    })()

    await up.arrived
    await delay(1000)
    const paused = watch.phase()
    up.readFast()
    await sendAll
    await ended
    const fast = watch.phase()
    watch.stop()

    expect(response).toMatch(/^HTTP\/1\.1 200/)
    expect(response.endsWith(`\r\n\r\n${SIZE}`)).toBe(true)
    expect(up.received).toBe(SIZE)
    for (const phase of [paused, fast]) expect(phase.inPipe).toBeLessThan(MAX_IN_PIPE)
    expect(paused.rss - baseline).toBeLessThan(MAX_RSS_GROWTH)
  })
})

/**
 * An upstream whose /upload handler does not read the body until told to: readSlowly() takes one read
 * per SLOW_READ_INTERVAL_MS, readFast() reads freely. Answers with the byte count it received.
 */
async function startSlowReadingUpstream() {
  let onArrived: () => void = () => undefined
  const arrived = new Promise<void>((r) => { onArrived = r })
  let body: http.IncomingMessage | null = null
  let slow = false
  const state = {
    url: '',
    received: 0,
    arrived,
    readSlowly(): void {
      slow = true
      body?.resume()
    },
    readFast(): void {
      slow = false
      body?.resume()
    },
  }
  const server = http.createServer((req, res) => {
    if (answerWarmUp(req, res)) return
    body = req
    req.pause()
    req.on('data', (d: Buffer) => {
      state.received += d.length
      if (slow) {
        req.pause()
        setTimeout(() => { if (slow) req.resume() }, SLOW_READ_INTERVAL_MS)
      }
    })
    req.on('end', () => res.end(String(state.received)))
    onArrived()
  })
  state.url = await listen(server)
  return state
}
