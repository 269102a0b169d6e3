// The thinnest WebSocket forwarder in Node we can write, the reference point for Tollgate's WebSocket path
// (scenario websocket-echo): node:http 'upgrade' -> a net socket to the upstream, the request head written
// as it came, then pipe() both ways. No routing, no policies, no header hygiene; plain requests get 200 "ok"
// (the harness's readiness probe).
// node dist/bench/peers/ws-upgrade-forwarder.js --port P --upstream http://127.0.0.1:U
import { createServer } from 'node:http'
import net from 'node:net'
import { exitOnSigterm, parsePeerArgs } from '../lib/peer-args.js'

const { port, upstream } = parsePeerArgs()
const target = new URL(upstream)
const server = createServer((_req, res) => res.end('ok'))
server.on('upgrade', (req, client: net.Socket, head: Buffer) => {
  const up = net.connect(Number(target.port), target.hostname, () => {
    let text = `${req.method} ${req.url} HTTP/1.1\r\n`
    for (let i = 0; i < req.rawHeaders.length; i += 2) text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`
    up.write(text + '\r\n')
    if (head.length > 0) up.write(head)
    up.setNoDelay(true)
    client.setNoDelay(true)
    up.pipe(client)
    client.pipe(up)
  })
  up.on('error', () => client.destroy())
  client.on('error', () => up.destroy())
  up.on('close', () => client.destroy())
  client.on('close', () => up.destroy())
})
server.listen(port, '127.0.0.1')
exitOnSigterm(() => new Promise((resolve) => {
  server.closeAllConnections()
  server.close(() => resolve())
}))
