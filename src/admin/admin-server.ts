// The admin listener (SPEC §7): /healthz, /readyz, /status, /metrics. Never on the proxy port.
// fastify earns its place here (schema-less JSON replies, 404s, content types); the data path is node:http.
import Fastify, { type FastifyInstance } from 'fastify'

export interface AdminSources {
  /** null when ready, else the reason for 503. */
  notReadyReason(): string | null
  status(): unknown
  metrics(): Promise<{ contentType: string; body: string }>
}

export async function startAdminServer(address: { host: string; port: number }, sources: AdminSources): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  app.get('/healthz', async (_req, reply) => reply.code(200).send({ status: 'ok' }))
  app.get('/readyz', async (_req, reply) => {
    const reason = sources.notReadyReason()
    if (reason === null) return reply.code(200).send({ status: 'ready' })
    return reply.code(503).send({ status: 'not ready', reason })
  })
  app.get('/status', async (_req, reply) => reply.code(200).send(sources.status()))
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await sources.metrics()
    return reply.code(200).header('content-type', contentType).send(body)
  })
  await app.listen({ host: address.host, port: address.port })
  return app
}

/** 'host:port' (IPv6 in brackets) -> parts. */
export function parseAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':')
  let host = address.slice(0, i)
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  return { host: host === '' ? '0.0.0.0' : host, port: Number(address.slice(i + 1)) }
}
