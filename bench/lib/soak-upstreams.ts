// The soak's upstream servers, node:http in the soak's own process on 127.0.0.1: healthy ones, and ones that
// answer 500 in phases (a target that starts and stops failing, so passive ejection ejects it and a breaker
// opens and closes again, over and over).
//
// Every answer says who gave it: `ok <name>` (with the request body's length for a POST), a 256 KiB body for
// paths ending in /big, `boom <name>` with status 500 while failing. The soak's expectations check these.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export const BIG_BODY_BYTES = 256 * 1024
const big = Buffer.alloc(BIG_BODY_BYTES, 'x')

export interface SoakServer {
  readonly name: string
  readonly url: string
  readonly hits: number
  readonly failures: number
  close(): Promise<void>
}

/** `isFailing(nowMs)`: whether requests (health checks included) get 500 at this moment. */
export async function startSoakServer(name: string, isFailing: (nowMs: number) => boolean = () => false): Promise<SoakServer> {
  const sockets = new Set<Socket>()
  const state = { hits: 0, failures: 0 }
  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    let bytes = 0
    req.on('data', (chunk: Buffer) => { bytes += chunk.length })
    req.on('error', () => res.destroy())
    req.once('end', () => {
      state.hits++
      if (isFailing(Date.now())) {
        state.failures++
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`boom ${name}`)
        return
      }
      if (req.url?.endsWith('/big') === true) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length }).end(big)
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(req.method === 'POST' ? `ok ${name} ${bytes}` : `ok ${name}`)
    })
  }
  // 5 s, like the gateway's own default: the gateway's idle pooled connections close soon after the traffic
  // stops, and the soak can check that its file descriptors come back to where they started.
  const server: Server = createServer({ keepAliveTimeout: 5_000 }, answer)
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    get hits() { return state.hits },
    get failures() { return state.failures },
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    }),
  }
}

/** Failing for `failMs`, then healthy for `okMs`, and so on, counted from `originMs` (healthy first). */
export function phases(originMs: number, okMs: number, failMs: number): (nowMs: number) => boolean {
  return (nowMs) => (nowMs - originMs) % (okMs + failMs) >= okMs
}
