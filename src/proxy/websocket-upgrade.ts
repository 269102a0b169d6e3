// Requests Node hands over as upgrades (the server's 'upgrade' event: `Connection: upgrade` with an
// `Upgrade` header), README "WebSocket". Node has already detached its parser from the socket, so the
// request gets a ServerResponse of its own on that socket, and runs the same pipeline as any request:
//
//   Upgrade: websocket  -> pipeline (framing, draining, canonical path, match, route steps: access, auth,
//                          limiters once per connection, breaker admission); on a route without
//                          `websocket: true` 403 FORBIDDEN, never forwarded (Envoy answers 403 to an upgrade
//                          its route does not enable); then websocket-forward.ts.
//   any other Upgrade   -> served as a plain request with the Upgrade ignored (RFC 9110 §7.8: a server may
//   (h2c, ...)             ignore it), like nginx without `proxy_set_header Upgrade`.
//
// Either way the connection ends with this request (`Connection: close`): no parser is left to read the
// next one. An upgrade with a request body is refused with 400 (pipeline.ts): its bytes are not parsed.
import { type IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { connectionOf } from './client-connection.js'
import { Exchange } from './exchange.js'
import { startExchange } from './pipeline.js'
import type { ProxyState } from './proxy-state.js'

/** Module-level listeners: no closure per request. */
function onSocketError(this: Socket): void {
  this.destroy()
}

function onResponseFinish(this: ServerResponse): void {
  const socket = this.socket
  if (socket === null) return
  this.detachSocket(socket)
  socket.destroySoon()
}

/** RFC 6455 §4.2.1: `Upgrade` lists the `websocket` token (case-insensitive), maybe among others. */
export function asksForWebSocket(upgrade: string | undefined): boolean {
  if (upgrade === undefined) return false
  for (const token of upgrade.split(',')) if (token.trim().toLowerCase() === 'websocket') return true
  return false
}

export function handleUpgrade(state: ProxyState, req: IncomingMessage, socket: Socket, head: Buffer): void {
  // Node took its own 'error' listener off with the parser: without one a reset would be an uncaught error.
  socket.on('error', onSocketError)
  const connection = connectionOf(socket)
  // An upgrade pipelined behind a request still being answered: its bytes would interleave with that
  // response. RFC 6455 clients send the handshake on a connection of its own; this is not one.
  if (connection === undefined || connection.current !== null || connection.closing) {
    socket.destroy()
    return
  }
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket)
  res.on('finish', onResponseFinish)
  const ex = new Exchange(state, req, res)
  ex.connection = connection
  ex.closesConnection = true
  ex.isUpgrade = true
  ex.upgradeHead = asksForWebSocket(req.headers.upgrade) ? head : null
  connection.current = ex
  startExchange(ex, false, null)
}
