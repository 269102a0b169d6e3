// The thinnest Node forwarder we know of, the reference point for Tollgate's hot path:
// node:http server + one undici Pool, Pool.stream per request writing straight into the response.
// No routing, no canonicalization, no metrics; only the hop-by-hop headers that would break framing
// are dropped (RFC 9110 §7.6.1).
// node dist/bench/peers/undici-stream-forwarder.js --port P --upstream http://127.0.0.1:U
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { Pool, type Dispatcher } from 'undici'
import { exitOnSigterm, parsePeerArgs } from '../lib/peer-args.js'

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'])

const { port, upstream } = parsePeerArgs()
const pool = new Pool(upstream, { keepAliveTimeout: 60_000 })

function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP_BY_HOP.has(name)) kept[name] = value
  }
  return kept
}

// The response travels as undici's `opaque`, so the factory is one function for all requests.
function onResponse({ statusCode, headers, opaque: res }: Dispatcher.StreamFactoryData<ServerResponse>): ServerResponse {
  res.writeHead(statusCode, endToEnd(headers as IncomingHttpHeaders))
  return res
}

function forward(req: IncomingMessage, res: ServerResponse): void {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  pool.stream<ServerResponse>({
    path: req.url ?? '/',
    method: req.method as Dispatcher.HttpMethod,
    headers: endToEnd(req.headers),
    body: hasBody ? req : null,
    opaque: res,
  }, onResponse, (error) => {
    if (error === null) return
    if (res.headersSent) res.destroy(error)
    else res.writeHead(502, { 'content-length': 0 }).end()
  })
}

const server = createServer({ keepAliveTimeout: 60_000 }, forward)
server.listen(port, '127.0.0.1')
exitOnSigterm(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await pool.close()
})
