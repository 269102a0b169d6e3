// A real upstream on 127.0.0.1:0 that answers with a scripted list of statuses and delays (then repeats
// the last) and records every request it receives.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net, { type AddressInfo, type Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import { listenForTest } from './listen.js'

export interface RecordedRequest {
  readonly method: string
  readonly url: string
  readonly rawHeaders: readonly string[]
  readonly headers: IncomingMessage['headers']
  readonly body: Buffer
}

export interface UpstreamOptions {
  statuses?: number[]
  delaysMs?: number[]
  body?: string | Buffer
  headers?: Record<string, string | string[]>
  /** Full control: the recorder still records. */
  handler?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void
  /** Do not read the body before answering (for streaming tests). */
  streaming?: boolean
  /** The caller closes it (afterAll) instead of the end of the current test. */
  suite?: boolean
}

export interface Upstream {
  readonly url: string
  readonly port: number
  readonly requests: RecordedRequest[]
  readonly hits: number
  readonly sockets: Set<Socket>
  close(): Promise<void>
}

export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const requests: RecordedRequest[] = []
  const sockets = new Set<Socket>()
  let n = 0
  const server = http.createServer((req, res) => {
    const i = n++
    const answer = (body: Buffer): void => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: req.headers, body })
      if (options.handler) return options.handler(req, res, body)
      const statuses = options.statuses ?? [200]
      const delays = options.delaysMs ?? [0]
      const status = statuses[Math.min(i, statuses.length - 1)]!
      const delay = delays[Math.min(i, delays.length - 1)]!
      const send = (): void => {
        res.writeHead(status, { 'content-type': 'text/plain', ...(options.headers ?? {}) })
        res.end(options.body ?? `hello from ${server.address() && (server.address() as AddressInfo).port} ${req.url}`)
      }
      if (delay > 0) setTimeout(send, delay)
      else send()
    }
    if (options.streaming) return answer(Buffer.alloc(0))
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => answer(Buffer.concat(chunks)))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const { port, close } = await listenForTest(server, options.suite === true)
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get hits() { return requests.length },
    sockets,
    close,
  }
}

/**
 * Ports handed to processes a test starts (gateways, etcd, Redis, Prometheus), which must be written into
 * their config before they bind. They come from below the kernel's ephemeral range, in a block of 1000 per
 * vitest worker, cycled in order: a port released by `listen(0)` is the ephemeral range's, and the kernel
 * gives it again to the next `listen(0)` or outgoing connection of any test file running at the same time,
 * so a gateway's proxy and admin ports once came out the same and another time were taken before the
 * gateway bound them. Below the ephemeral range, only this helper hands ports out, each worker its own.
 */
const PORT_BLOCK = 1000
const portWindow: { next: number; low: number; high: number } | null = (() => {
  let ephemeralLow = 32768
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
  } catch { /* not Linux: assume its default range */ }
  const worker = Number(process.env.VITEST_POOL_ID ?? '1') % 10
  const low = ephemeralLow - 10 * PORT_BLOCK + worker * PORT_BLOCK
  if (!Number.isInteger(low) || low < 1024) return null
  return { next: low + (process.pid % PORT_BLOCK), low, high: low + PORT_BLOCK }
})()

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** A port nothing listens on, for a process a test starts (bound then released; see portWindow). */
export async function freePort(): Promise<number> {
  if (portWindow !== null) {
    for (let tries = 0; tries < PORT_BLOCK; tries++) {
      const port = portWindow.next
      portWindow.next = port + 1 >= portWindow.high ? portWindow.low : port + 1
      if (await bindable(port)) return port
    }
  }
  const s = http.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

export interface HoldingUpstream extends Upstream {
  readonly arrived: Promise<void>
  release(): void
}

/** An upstream that holds every request until release() and tells when one arrived. */
export async function startHoldingUpstream(body: string | Buffer = 'slow done'): Promise<HoldingUpstream> {
  let arrive!: () => void
  const arrived = new Promise<void>((r) => { arrive = r })
  const held: ServerResponse[] = []
  let released = false
  const up = await startUpstream({
    handler: (_req: IncomingMessage, res: ServerResponse) => {
      if (released) return void res.end(body)
      held.push(res)
      arrive()
    },
  })
  return Object.assign(up, {
    arrived,
    release() {
      released = true
      for (const res of held.splice(0)) res.end(body)
    },
  })
}
