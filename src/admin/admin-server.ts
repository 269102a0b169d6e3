// The admin listener (README "Admin endpoints and metrics"): the status page (/), /healthz, /readyz, /status, /metrics.
// Never on the proxy port.
//
// node:http rather than fastify: five GET endpoints need no router, and bench/README.md "Targets" sets idle RSS <= 80 MiB.
// Measured (node 20, this machine): our other dependencies loaded = 68.1 MiB RSS, + fastify = 75.6 MiB;
// the whole gateway idled at 85 MiB with a fastify admin.
import { listenError } from '../lib/host-port.js'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { STATUS_PAGE } from './status-page.js'

export interface AdminSources {
  /** null when ready, else the reason for 503. */
  notReadyReason(): string | null
  /** The /status JSON; the cluster primary first asks its workers (their route counts). */
  status(): unknown
  metrics(): Promise<{ contentType: string; body: string }>
}

export interface AdminServer {
  address(): AddressInfo
  close(): Promise<void>
}

export async function startAdminServer(address: { host: string; port: number }, sources: AdminSources): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res, sources).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { status: 'error', message: (err as Error).message })
      else res.destroy()
    })
  })
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    const failed = (err: unknown): void => reject(listenError(err, 'admin', 'admin', address.host, address.port))
    server.once('error', failed)
    server.listen(address.port, address.host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  return {
    address: () => server.address() as AddressInfo,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, sources: AdminSources): Promise<void> {
  const q = (req.url ?? '/').indexOf('?')
  const path = q < 0 ? req.url ?? '/' : (req.url ?? '/').slice(0, q)
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD')
    return json(res, 405, { status: 'error', message: 'admin endpoints answer GET only' })
  }
  switch (path) {
    case '/':
      res.writeHead(200, { ...STATUS_PAGE.headers, 'content-length': STATUS_PAGE.body.length })
      res.end(req.method === 'HEAD' ? undefined : STATUS_PAGE.body)
      return
    case '/healthz':
      return json(res, 200, { status: 'ok' })
    case '/readyz': {
      const reason = sources.notReadyReason()
      return reason === null ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'not ready', reason })
    }
    case '/status':
      return json(res, 200, await sources.status())
    case '/metrics': {
      const { contentType, body } = await sources.metrics()
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    default:
      return json(res, 404, { status: 'error', message: `no admin endpoint ${path}; try / (status page), /healthz, /readyz, /status, /metrics` })
  }
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
