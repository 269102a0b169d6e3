// The data-path listener: node:http, not fastify. bench/README.md "Peers" measured fastify + @fastify/http-proxy at
// 17.4k req/s vs 24.5k for node:http + undici on the same 2-core machine (0.71x); the data path has one
// route of its own (the trie), so fastify's router and hooks would be pure overhead here. The admin
// listener is node:http too (src/admin/admin-server.ts says why). With `tls:` it is node:https with the same
// options, handlers and limits: the certificates are tls-contexts.ts's, chosen by SNI (README "TLS").
//
// HTTP/2 (README "HTTP/2"): with `http2: true` the TLS listener is node:http2's secure server with
// allowHTTP1, so ALPN picks h2 or http/1.1 per connection and HTTP/1.1 connections get node:http's parser and
// the same limits as before. With `http2: h2c` the plaintext listener hands a connection that starts with the
// HTTP/2 preface to a node:http2 server (h2c-preface.ts). An HTTP/2 stream arrives through node's
// compatibility API (Http2ServerRequest/Response), which has the shape of IncomingMessage/ServerResponse the
// pipeline reads, and goes through the same Exchange and pipeline; it skips ClientConnection, whose ordering
// exists for HTTP/1.1 pipelining (streams are independent and framed by the protocol). Draining sends GOAWAY.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import http2, { type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2'
import https from 'node:https'
import net, { type Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { BAD_CONNECT, BAD_FRAMING, REQUEST_TIMEOUT } from '../errors.js'
import type { Config, LoadedTls } from '../config/schema.js'
import { newRequestId } from '../http/ids.js'
import { attachConnection, type ClientConnection, connectionOf } from './client-connection.js'
import { Exchange, refuseInProgress } from './exchange.js'
import { sniffPreface } from './h2c-preface.js'
import { startExchange } from './pipeline.js'
import type { ProxyState } from './proxy-state.js'
import { rawRefusal, sendRefusal } from './refusal.js'
import { TlsContexts } from './tls-contexts.js'
import { handleUpgrade } from './websocket-upgrade.js'

/** `http2:` of the config: false (HTTP/1.1 only), true (h2 by ALPN on the TLS listener), 'h2c' (plaintext). */
export type Http2Mode = Config['http2']

// RFC 9113 §6.5.2 leaves SETTINGS_MAX_CONCURRENT_STREAMS to the server; nginx's http2_max_concurrent_streams
// is 128. Node's default (no limit announced) lets one connection open thousands of streams.
const H2_SETTINGS = { maxConcurrentStreams: 128 } as const

export interface ProxyServer {
  readonly server: http.Server | https.Server | Http2SecureServer
  /** `http2:` the listener was made with. */
  readonly http2: Http2Mode
  /** The certificates served; null on a plaintext listener. */
  readonly tls: TlsContexts | null
  /**
   * Puts the certificates of a new config in service (the SNI set and the default context) and the client
   * certificate settings; connections already open keep theirs. Throws, changing nothing, on material
   * OpenSSL refuses. Returns false when nothing changed.
   */
  applyTls(tls: LoadedTls): boolean
  /** limits: of a new config, for the connections that come next (HTTP/1.1 timeouts, HTTP/2 idle sessions). */
  applyLimits(limits: Config['limits']): void
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

export function createProxyServer(state: ProxyState, limits: Config['limits'], tlsSettings?: LoadedTls, http2Mode: Http2Mode = false): ProxyServer {
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
  let limitsNow = limits
  const tls = tlsSettings === undefined ? null : new TlsContexts(tlsSettings)
  const tlsOptions = tls === null ? null : {
    ...tls.defaultOptions,
    SNICallback: tls.sniCallback,
    // A client that opens a connection and never finishes the handshake is held no longer than one that
    // never finishes its headers (Node's default is 120 s).
    handshakeTimeout: limits.headersTimeout,
    requestCert: tlsSettings?.clientAuth !== undefined,
    rejectUnauthorized: tlsSettings?.clientAuth?.required === true,
  }
  const h2Sockets = new WeakSet<Socket>()
  const sessions = new Set<Http2Session>()
  let server: http.Server | https.Server | Http2SecureServer
  // The server HTTP/2 streams arrive on: the listener itself (TLS), a second one fed by the preface sniff (h2c).
  let h2Server: Http2SecureServer | Http2Server | null = null
  if (tlsOptions === null) {
    server = http.createServer(options)
    if (http2Mode === 'h2c') {
      const h2c = http2.createServer({ settings: H2_SETTINGS })
      h2Server = h2c
      const plain = server
      // node:http's own 'connection' listener parses HTTP/1.1; the sniff decides first who gets the socket.
      const parseHttp1 = plain.listeners('connection') as Array<(socket: Socket) => void>
      plain.removeAllListeners('connection')
      const toH2 = (socket: Socket): void => {
        h2Sockets.add(socket)
        h2c.emit('connection', socket)
      }
      const toH1 = (socket: Socket): void => {
        for (const listener of parseHttp1) listener.call(plain, socket)
      }
      plain.on('connection', (socket: Socket) => sniffPreface(socket, limitsNow.headersTimeout, toH2, toH1))
    }
  } else if (http2Mode === true) {
    const secure = http2.createSecureServer({ ...tlsOptions, allowHTTP1: true, settings: H2_SETTINGS })
    // HTTP/1.1 connections of allowHTTP1 get node:http's connection handling, which reads these from the
    // server object as http.Server would have them (createSecureServer takes none of them as options).
    Object.assign(secure, { requireHostHeader: false, joinDuplicateHeaders: false, insecureHTTPParser: false, connectionsCheckingInterval: 500 })
    server = secure
    h2Server = secure
  } else {
    server = https.createServer({ ...options, ...tlsOptions })
  }
  setHttp1Limits(server, limits)
  state.scheme = tls === null ? 'http' : 'https'
  let onStream: ((req: Http2ServerRequest, res: Http2ServerResponse, sendContinue: boolean) => void) | null = null
  if (h2Server !== null) {
    onStream = (req, res, sendContinue) => {
      // The compatibility API mirrors IncomingMessage/ServerResponse where the pipeline reads them
      // (method, url, rawHeaders, socket, writeHead with a flat list, write/end/drain, 'close', destroy).
      const ex = new Exchange(state, req as unknown as IncomingMessage, res as unknown as ServerResponse)
      startExchange(ex, sendContinue, null)
    }
    const stream = h2Server as Http2Server
    const h2c = onStream
    // On the TLS listener, 'request' and 'checkContinue' also carry HTTP/1.1 requests (allowHTTP1): those
    // are told apart by httpVersionMajor and go through their connection as before (the handlers below).
    if (http2Mode === 'h2c') {
      stream.on('request', (req, res) => h2c(req, res, false))
      stream.on('checkContinue', (req, res) => h2c(req, res, true))
      stream.on('checkExpectation', (req: Http2ServerRequest, res: Http2ServerResponse) => h2c(req, res, false))
    }
    stream.on('session', (session: Http2Session) => {
      sessions.add(session)
      session.once('close', () => sessions.delete(session))
      // An idle session is told GOAWAY after keepAliveTimeout, as an idle HTTP/1.1 connection is closed.
      session.setTimeout(limitsNow.keepAliveTimeout, () => session.close())
    })
    if (http2Mode === 'h2c') {
      // CONNECT on an HTTP/2 stream (RFC 9113 §8.5): refused as on HTTP/1.1.
      stream.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => {
        void req
        sendRefusal(res as unknown as ServerResponse, BAD_CONNECT, newRequestId(), false)
      })
    }
  }
  // Every request goes through its connection, which processes them one at a time and stops after a
  // refusal that closes it (client-connection.ts).
  // On the TLS HTTP/2 listener (allowHTTP1) these events carry HTTP/2 streams too: httpVersionMajor 2.
  const serverOn = server as http.Server
  const tlsH2 = http2Mode === true && onStream !== null ? onStream : null
  serverOn.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (tlsH2 !== null && req.httpVersionMajor === 2) return tlsH2(req as unknown as Http2ServerRequest, res as unknown as Http2ServerResponse, false)
    ;(connectionOf(req.socket) as ClientConnection).admit(req, res, false)
  })
  // Expect: 100-continue: answer 100 only once the route is known and the declared size is acceptable.
  serverOn.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (tlsH2 !== null && req.httpVersionMajor === 2) return tlsH2(req as unknown as Http2ServerRequest, res as unknown as Http2ServerResponse, true)
    ;(connectionOf(req.socket) as ClientConnection).admit(req, res, true)
  })
  // Any other Expect: the header scan answers 417 (request-facts.ts), in turn, like every refusal.
  serverOn.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    if (tlsH2 !== null && req.httpVersionMajor === 2) return tlsH2(req as unknown as Http2ServerRequest, res as unknown as Http2ServerResponse, false)
    ;(connectionOf(req.socket) as ClientConnection).admit(req, res, false)
  })
  // Connection: upgrade (WebSocket, h2c...): Node hands over the socket; without this listener it would serve
  // the request as a plain one and forward it, Upgrade stripped, to any route (websocket-upgrade.ts).
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handleUpgrade(state, req, socket, head))
  // CONNECT (authority-form): Node hands over the socket, and without this listener closes it unanswered.
  // On an HTTP/2 stream the second argument is the stream's response.
  serverOn.on('connect', (req: IncomingMessage, socket: Socket | Http2ServerResponse) => {
    void req
    if (req.httpVersionMajor === 2) {
      sendRefusal(socket as unknown as ServerResponse, BAD_CONNECT, newRequestId(), false)
      return
    }
    ;(socket as Socket).end(rawRefusal(BAD_CONNECT, newRequestId()))
  })
  serverOn.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
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
    // Registered after the sniff's listener (h2c): every plaintext connection, whichever protocol it speaks.
    serverOn.on('connection', track)
  } else {
    serverOn.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2') h2Sockets.add(socket)
      track(socket)
    })
  }
  return {
    server,
    http2: http2Mode,
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
    applyLimits(next) {
      limitsNow = next
      setHttp1Limits(server, next)
    },
    stopAccepting() {
      return new Promise((resolve) => {
        // The listener first: http.Server.close() closes idle connections before the listener, and a client
        // that reconnects the moment its idle connection closes then lands in the backlog of a closing
        // listener and is reset instead of refused.
        net.Server.prototype.close.call(server)
        // HTTP/2: GOAWAY now (RFC 9113 §6.8): no new stream is accepted, the open ones finish, then the
        // session closes. Node's server.close() leaves sessions open.
        for (const session of sessions) session.close()
        // Now idle connections (and the timeout checker); resolves once the last connection is gone.
        server.close(() => resolve())
      })
    },
    endAll() {
      // destroySoon: end after the queued bytes are written (a slow reader still gets its whole response),
      // then close; destroying at once would drop what is still queued in user space.
      for (const socket of sockets) if (!h2Sockets.has(socket)) socket.destroySoon()
      for (const session of sessions) session.close()
    },
    destroyAll() {
      for (const session of sessions) session.destroy()
      if (server instanceof http.Server) server.closeAllConnections()
      for (const socket of sockets) socket.destroy()
    },
  }
}

/** HTTP/1.1 timeouts, read by node:http for each new connection (also those of an HTTP/2 listener's allowHTTP1). */
function setHttp1Limits(server: http.Server | https.Server | Http2SecureServer, limits: Config['limits']): void {
  const s = server as http.Server
  s.headersTimeout = limits.headersTimeout
  s.requestTimeout = limits.requestTimeout
  s.keepAliveTimeout = limits.keepAliveTimeout
}
