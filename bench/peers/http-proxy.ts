// http-proxy (http-party/node-http-proxy) from npm behind node:http, with a keep-alive agent: without
// one it opens a connection per request and would measure TCP set-up rather than proxying.
// node dist/bench/peers/http-proxy.js --port P --upstream http://127.0.0.1:U
import { Agent, createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import { exitOnSigterm, parsePeerArgs } from '../lib/peer-args.js'

// http-proxy ships no types; this is the part of its API used here.
interface ProxyServer {
  web(req: IncomingMessage, res: ServerResponse): void
  on(event: 'error', listener: (error: Error, req: IncomingMessage, res: ServerResponse) => void): void
}
interface HttpProxyModule {
  createProxyServer(options: { target: string, agent: Agent, xfwd: boolean }): ProxyServer
}
const httpProxy = createRequire(import.meta.url)('http-proxy') as HttpProxyModule

const { port, upstream } = parsePeerArgs()
const agent = new Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 60_000 })
const proxy = httpProxy.createProxyServer({ target: upstream, agent, xfwd: true })
proxy.on('error', (_error, _req, res) => {
  if (res.headersSent) res.destroy()
  else res.writeHead(502, { 'content-length': 0 }).end()
})
const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => proxy.web(req, res))
server.listen(port, '127.0.0.1')
exitOnSigterm(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  agent.destroy()
})
