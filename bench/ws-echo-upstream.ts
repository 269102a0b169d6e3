// The upstream of scenario websocket-echo (bench/websocket-echo.ts): a `ws` echo server, and 200 "ok" to
// plain requests (the harness's readiness probe).
// node dist/bench/ws-echo-upstream.js --port P
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'
import { WebSocketServer } from 'ws'

const { values } = parseArgs({ options: { port: { type: 'string' } } })
if (values.port === undefined) throw new Error('usage: node ws-echo-upstream.js --port P')
const server = createServer((_req, res) => res.end('ok'))
const wss = new WebSocketServer({ server, perMessageDeflate: false })
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  ws.on('error', () => ws.terminate())
})
server.listen(Number(values.port), '127.0.0.1')
process.once('SIGTERM', () => {
  for (const ws of wss.clients) ws.terminate()
  server.close(() => process.exit(0))
})
