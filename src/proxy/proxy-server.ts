// The data-path listener: node:http, not fastify. bench/README.md "Peers" measured fastify + @fastify/http-proxy at
// 17.4k req/s vs 24.5k for node:http + undici on the same 2-core machine (0.71x); the data path has one
// route of its own (the trie), so fastify's router and hooks would be pure overhead here. The admin
// listener is node:http too (src/admin/admin-server.ts says why). With `tls:` it is node:https with the same
// options, handlers and limits: the certificates are tls-contexts.ts's, chosen by SNI (README "TLS").
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import net, { type Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { BAD_CONNECT, BAD_FRAMING, REQUEST_TIMEOUT } from '../errors.js'
import type { Config, LoadedTls } from '../config/schema.js'
import { newRequestId } from '../http/ids.js'
import { attachConnection, type ClientConnection, connectionOf } from './client-connection.js'
import { refuseInProgress } from './exchange.js'
import type { ProxyState } from './proxy-state.js'
import { rawRefusal } from './refusal.js'
import { TlsContexts } from './tls-contexts.js'
import { handleUpgrade } from './websocket-upgrade.js'

export interface ProxyServer {
  readonly server: http.Server | https.Server
  /** The certificates served; null on a plaintext listener. */
  readonly tls: TlsContexts | null
  /**
   * Puts the certificates of a new config in service (the SNI set and the default context) and the client
   * certificate settings; connections already open keep theirs. Throws, changing nothing, on material
   * OpenSSL refuses. Returns false when nothing changed.
   */
  applyTls(tls: LoadedTls): boolean
  /**
   * Stop accepting: the listener closes first, then idle keep-alive connections; busy ones close after
   * their response (the exchange adds `Connection: close` while draining). Resolves when every connection
   * is closed.
   */
  stopAccepting(): Promise<void>
  /** No request is in flight any more: close every connection left once its queued bytes are written. */
  endAll(): void
  /** Destroy every socket (shutdown timeout or second signal). */
  destroyAll(): void
}

export function createProxyServer(state: ProxyState, limits: Config['limits'], tlsSettings?: LoadedTls): ProxyServer {
  const options: http.ServerOptions = {
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    // Node checks the two timeouts above only this often (default 30 s: a slowloris lived 30 s). (Node's server.connectionsCheckingInterval, default 30000 ms: nodejs.org/api/http.html)
    connectionsCheckingInterval: 500,
    // The pipeline refuses a missing Host itself: Node's own 400 keeps parsing the requests pipelined behind it.
    requireHostHeader: false,
    insecureHTTPParser: false,
    joinDuplicateHeaders: false,
  }
  const tls = tlsSettings === undefined ? null : new TlsContexts(tlsSettings)
  const server = tls === null ? http.createServer(options) : https.createServer({
    ...options,
    ...tls.defaultOptions,
    SNICallback: tls.sniCallback,
    // A client that opens a connection and never finishes the handshake is held no longer than one that
    // never finishes its headers (Node's default is 120 s).
    handshakeTimeout: limits.headersTimeout,
    requestCert: tlsSettings?.clientAuth !== undefined,
    rejectUnauthorized: tlsSettings?.clientAuth?.required === true,
  })
  state.scheme = tls === null ? 'http' : 'https'
  // Every request goes through its connection, which processes them one at a time and stops after a
  // refusal that closes it (client-connection.ts).
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    (connectionOf(req.socket) as ClientConnection).admit(req, res, false)
  })
  // Expect: 100-continue: answer 100 only once the route is known and the declared size is acceptable.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    (connectionOf(req.socket) as ClientConnection).admit(req, res, true)
  })
  // Any other Expect: the header scan answers 417 (request-facts.ts), in turn, like every refusal.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    (connectionOf(req.socket) as ClientConnection).admit(req, res, false)
  })
  // Connection: upgrade (WebSocket, h2c...): Node hands over the socket; without this listener it would serve
  // the request as a plain one and forward it, Upgrade stripped, to any route (websocket-upgrade.ts).
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handleUpgrade(state, req, socket, head))
  // CONNECT (authority-form): Node hands over the socket, and without this listener closes it unanswered.
  server.on('connect', (req: IncomingMessage, socket: Socket) => {
    void req
    socket.end(rawRefusal(BAD_CONNECT, newRequestId()))
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Over TLS a failed handshake (its timeout, a refused version, a missing client certificate) comes here
    // too: node:https hands tlsClientError to 'clientError' and then leaves the socket to this listener.
    // No HTTP can be spoken on it yet, so it is closed at once (an HTTP 400 written here kept it open).
    if (tls !== null && connectionOf(socket) === undefined) {
      socket.destroy()
      return
    }
    // A parse error behind requests already parsed: they are still answered (client-connection.ts).
    if (err.code !== 'ERR_HTTP_REQUEST_TIMEOUT' && connectionOf(socket)?.onParseError() === true) return
    const inProgress = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage
    if (inProgress) {
      // requestTimeout while the body is still arriving: the request already has an Exchange. It aborts the
      // upstream attempt and answers 408 itself when no response has started; otherwise the socket goes.
      if (!(err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && refuseInProgress(inProgress, REQUEST_TIMEOUT))) socket.destroy()
      return
    }
    if (!socket.writable) {
      socket.destroy()
      return
    }
    const code = err.code
    const refusal = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? REQUEST_TIMEOUT
      : code === 'HPE_HEADER_OVERFLOW' ? null
        : BAD_FRAMING
    if (refusal === null) {
      socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    } else {
      socket.end(rawRefusal(refusal, newRequestId()))
    }
  })
  // Every open connection, so that endAll() can close those a response left idle after draining began.
  // Over TLS the requests' socket is the TLSSocket of 'secureConnection'. A connection still in its
  // handshake is not one of them: handshakeTimeout (limits.headersTimeout) closes it if it stalls.
  const sockets = new Set<Socket>()
  const track = (socket: Socket): void => {
    attachConnection(state, socket)
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }
  if (tls === null) {
    server.on('connection', track)
  } else {
    server.on('secureConnection', (socket: TLSSocket) => track(socket))
  }
  return {
    server,
    tls,
    applyTls(next) {
      if (tls === null) return false // a plaintext listener: tls: applies at the next restart (gateway.ts says so)
      const changed = tls.update(next)
      if (changed) (server as https.Server).setSecureContext(tls.defaultOptions)
      // Read by Node for each new connection (TLSSocket options come from the server's fields).
      const s = server as https.Server & { requestCert: boolean; rejectUnauthorized: boolean }
      s.requestCert = next.clientAuth !== undefined
      s.rejectUnauthorized = next.clientAuth?.required === true
      return changed
    },
    stopAccepting() {
      return new Promise((resolve) => {
        // The listener first: http.Server.close() closes idle connections before the listener, and a client
        // that reconnects the moment its idle connection closes then lands in the backlog of a closing
        // listener and is reset instead of refused.
        net.Server.prototype.close.call(server)
        // Now idle connections (and the timeout checker); resolves once the last connection is gone.
        server.close(() => resolve())
      })
    },
    endAll() {
      // destroySoon: end after the queued bytes are written (a slow reader still gets its whole response),
      // then close; destroying at once would drop what is still queued in user space.
      for (const socket of sockets) socket.destroySoon()
    },
    destroyAll() {
      server.closeAllConnections()
    },
  }
}
