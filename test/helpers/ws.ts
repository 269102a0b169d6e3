// WebSocket peers for tests, with the `ws` package: an echo upstream on 127.0.0.1 (a random port) that records
// each handshake, and a client that resolves once open or rejects with the refusal's status. Both are
// closed (every connection terminated) when the test finishes.
import http, { type IncomingHttpHeaders } from 'node:http'
import { onTestFinished } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { listenForTest } from './listen.js'

export interface WsUpstream {
  readonly url: string
  readonly port: number
  /** Handshakes that reached it (upgrade requests), in order. */
  readonly handshakes: Array<{ url: string; headers: IncomingHttpHeaders }>
  /** Plain (non-upgrade) requests that reached it. */
  readonly plain: Array<{ url: string; headers: IncomingHttpHeaders }>
  /** Its side of each accepted connection, in order. */
  readonly sockets: WebSocket[]
  /** Resolves with its side of the next connection accepted. */
  nextConnection(): Promise<WebSocket>
  close(): Promise<void>
}

/** An echo server: each message comes back as it came (text as text, binary as binary). */
export async function startWsUpstream(options: { echo?: boolean } = {}): Promise<WsUpstream> {
  const handshakes: WsUpstream['handshakes'] = []
  const plain: WsUpstream['plain'] = []
  const sockets: WebSocket[] = []
  let waiters: Array<(ws: WebSocket) => void> = []
  const server = http.createServer((req, res) => {
    plain.push({ url: req.url ?? '', headers: req.headers })
    res.end('plain')
  })
  const wss = new WebSocketServer({ noServer: true, maxPayload: 512 * 1024 * 1024 })
  server.on('upgrade', (req, socket, head) => {
    handshakes.push({ url: req.url ?? '', headers: req.headers })
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.push(ws)
      if (options.echo !== false) ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
      ws.on('error', () => ws.terminate())
      const w = waiters
      waiters = []
      for (const f of w) f(ws)
    })
  })
  const { port, close: closeServer } = await listenForTest(server, true)
  const close = async (): Promise<void> => {
    for (const ws of sockets) ws.terminate()
    await new Promise<void>((r) => wss.close(() => r()))
    await closeServer()
  }
  onTestFinished(close)
  return {
    url: `http://127.0.0.1:${port}`, port, handshakes, plain, sockets,
    nextConnection: () => new Promise((resolve) => waiters.push(resolve)),
    close,
  }
}

export class RefusedError extends Error {
  constructor(readonly status: number, readonly headers: IncomingHttpHeaders, readonly body: string) {
    super(`handshake refused with ${status}: ${body}`)
  }
}

export interface OpenedClient {
  readonly ws: WebSocket
  /** The 101 response's headers. */
  readonly headers: IncomingHttpHeaders
}

/** Opens a WebSocket to `url` (ws://...); rejects with RefusedError when the answer is not a 101. */
export function wsConnect(url: string, options: { headers?: Record<string, string>; protocols?: string[]; tls?: { ca: Buffer; servername: string } } = {}): Promise<OpenedClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers, maxPayload: 512 * 1024 * 1024, ...options.tls })
    onTestFinished(() => ws.terminate())
    let headers: IncomingHttpHeaders = {}
    ws.once('upgrade', (res) => { headers = res.headers })
    ws.once('open', () => resolve({ ws, headers }))
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => {
        ws.terminate()
        reject(new RefusedError(res.statusCode ?? 0, res.headers, body))
      })
    })
    ws.once('error', reject)
  })
}

/** The status of a refused handshake (fails the test when it opened). */
export async function refusedStatus(url: string, options: { headers?: Record<string, string> } = {}): Promise<RefusedError> {
  try {
    const opened = await wsConnect(url, options)
    opened.ws.terminate()
  } catch (err) {
    if (err instanceof RefusedError) return err
    throw err
  }
  throw new Error(`expected ${url} to be refused, but it opened`)
}

/** The next message on `ws`. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
      ws.off('close', onClose)
      resolve({ data: Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer), isBinary })
    }
    const onClose = (code: number): void => {
      ws.off('message', onMessage)
      reject(new Error(`closed (${code}) before a message`))
    }
    ws.once('message', onMessage)
    ws.once('close', onClose)
  })
}

/** Resolves with the close code `ws` sees (at once if it is already closed). */
export function closed(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve(-1)
    ws.once('close', (code) => resolve(code))
  })
}

export { WebSocket }
