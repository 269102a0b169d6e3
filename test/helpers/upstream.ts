// A real upstream on 127.0.0.1:0 that answers with a scripted list of statuses and delays (then repeats
// the last) and records every request it receives.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
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

/** A port nothing listens on (bound then released). */
export async function freePort(): Promise<number> {
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
