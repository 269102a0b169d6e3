// The thinnest Node forwarder over TLS, the reference point of scenarios tls and h2: node:https (HTTP/1.1
// over TLS) or node:http2's secure server with allowHTTP1 (--h2), and one undici Pool, Pool.stream per request
// writing straight into the response, as bench/peers/undici-stream-forwarder.ts does in plaintext. No routing,
// no policies; the pseudo-headers of an HTTP/2 request are not forwarded (:authority becomes Host), and the
// connection-specific headers HTTP/2 forbids in a response are dropped (RFC 9113 §8.2.2).
// node dist/bench/peers/node-tls-forwarder.js --port P --upstream http://127.0.0.1:U --cert F --key F [--h2]
import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { Pool, type Dispatcher } from 'undici'
import { exitOnSigterm } from '../lib/peer-args.js'

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

const { values } = parseArgs({ options: { port: { type: 'string' }, upstream: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, h2: { type: 'boolean', default: false } } })
if (values.port === undefined || values.upstream === undefined || values.cert === undefined || values.key === undefined) {
  throw new Error('usage: node node-tls-forwarder.js --port P --upstream http://127.0.0.1:U --cert F --key F [--h2]')
}
const pool = new Pool(values.upstream, { keepAliveTimeout: 60_000 })

function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP_BY_HOP.has(name) && name.charCodeAt(0) !== 0x3a) kept[name] = value
  }
  return kept
}

type Res = ServerResponse | Http2ServerResponse

function onResponse({ statusCode, headers, opaque: res }: Dispatcher.StreamFactoryData<Res>): Res {
  ;(res as ServerResponse).writeHead(statusCode, endToEnd(headers as IncomingHttpHeaders))
  return res
}

function forward(req: IncomingMessage | Http2ServerRequest, res: Res): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  const headers = endToEnd(req.headers)
  headers['host'] = (req as Http2ServerRequest).authority ?? req.headers.host ?? ''
  pool.stream<Res>({
    path: req.url ?? '/',
    method: req.method as Dispatcher.HttpMethod,
    headers,
    body: hasBody ? req : null,
    opaque: res,
  }, onResponse as Dispatcher.StreamFactory<Res>, (error) => {
    if (error === null) return
    if (res.headersSent) res.destroy(error)
    else (res as ServerResponse).writeHead(502, { 'content-length': 0 }).end()
  })
}

const tls = { cert: readFileSync(values.cert), key: readFileSync(values.key) }
const server = values.h2
  ? createSecureServer({ ...tls, allowHTTP1: true }, forward)
  : createHttpsServer({ ...tls, keepAliveTimeout: 60_000 }, forward)
server.listen(Number(values.port), '127.0.0.1')
exitOnSigterm(async () => {
  if ('closeAllConnections' in server) server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await pool.close()
})
