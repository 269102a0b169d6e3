// The last step of a WebSocket upgrade (README "WebSocket"): forward.ts has built the upstream headers
// (Upgrade, Connection: upgrade and Sec-WebSocket-* kept on websocket routes), this picks a healthy target
// and sends the handshake with node:http (node:https with the upstream's tls: towards https:// targets),
// whose ClientRequest hands over the socket on a 101 ('upgrade').
// undici would too, but only through its upgrade() API, which takes no handler object and gives no
// 'response' for a refused handshake; one request per connection is not the hot path.
//
//   101          -> the 101 and its headers to the client (hop-by-hop ones dropped), then a Tunnel relays
//                   both ways; the exchange ends here: it is counted (status 101) and logged once.
//   other status -> passed back as a normal response (Connection: close), counted for the breaker and
//                   passive health like any response.
//   no answer    -> 502 UPSTREAM_UNAVAILABLE (504 after timeouts.connect / timeouts.response), a passive
//                   health failure.
//
// One object and a few listeners per connection, not per message.
import { performance } from 'node:perf_hooks'
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { NO_HEALTHY_UPSTREAM, UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE } from '../errors.js'
import { FailureKind, classifyError, isConnectTimeout } from '../upstream/outcome.js'
import type { Target } from '../upstream/target.js'
import type { Exchange } from './exchange.js'
import { HOP_BY_HOP_NAMES } from './header-names.js'
import { buildResponseHeaders } from './response-headers.js'
import { Tunnel } from './websocket-tunnel.js'

const NO_TARGETS_TRIED: Target[] = []
const HOP_BY_HOP = new Set(HOP_BY_HOP_NAMES)
const CONNECT_TIMEOUT = Object.assign(new Error('no connection within timeouts.connect'), { code: 'UND_ERR_CONNECT_TIMEOUT' })
const RESPONSE_TIMEOUT = Object.assign(new Error('no handshake response within timeouts.response'), { code: 'TOLLGATE_RESPONSE_TIMEOUT' })

/** Sends the upgrade request of `ex` (its upstream headers built) to a target of its upstream. */
export function forwardWebSocket(ex: Exchange): void {
  const upstream = ex.upstream!
  const target = upstream.pool.pick(NO_TARGETS_TRIED, 0, ex.hashValue)
  if (target === null) return ex.refuse(NO_HEALTHY_UPSTREAM, true)
  ex.target = target
  ex.lastTarget = target.hostPort
  target.inflight++
  ex.attempts = 1
  ex.attemptStartMs = performance.now()
  const headers = ex.upstreamHeaders!
  if (upstream.hostFromTarget) headers[1] = target.origin.slice(target.origin.indexOf('//') + 2)
  const url = new URL(target.url)
  const options: https.RequestOptions = {
    host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port,
    method: 'GET',
    path: ex.upstreamPath,
    headers,
    agent: false, // its own connection: it becomes the tunnel's
  }
  // wss: the upstream's tls: (ca, client certificate, servername) as for its HTTP requests (tls-connect.ts);
  // rejectUnauthorized stays true, so a certificate that does not verify is a connect failure (502), never plaintext.
  const request = url.protocol === 'https:' ? https.request(Object.assign(options, upstream.tls)) : http.request(options)
  new Handshake(ex, target, request)
  request.end()
}

/** One upstream handshake: its listeners and timeouts. */
class Handshake {
  readonly #ex: Exchange
  readonly #target: Target
  readonly #request: http.ClientRequest
  #settled = false

  constructor(ex: Exchange, target: Target, request: http.ClientRequest) {
    this.#ex = ex
    this.#target = target
    this.#request = request
    const upstream = ex.upstream!
    // timeouts.connect until the TCP connection is up, then timeouts.response for the answer to the handshake.
    let isConnected = false
    request.setTimeout(upstream.connectTimeoutMs)
    request.on('timeout', () => request.destroy(isConnected ? RESPONSE_TIMEOUT : CONNECT_TIMEOUT))
    request.once('socket', (socket: Socket) => {
      socket.once('connect', () => {
        isConnected = true
        request.setTimeout(upstream.responseTimeoutMs)
      })
    })
    request.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => this.#onUpgrade(res, socket, head))
    request.once('response', (res: IncomingMessage) => this.#onResponse(res))
    request.on('error', (err: Error) => this.#onError(err))
    // The client leaving before the handshake ends stops it (Exchange.onClientClose).
    ex.abortUpstream = (err?: Error) => request.destroy(err)
  }

  /**
   * The attempt has its answer (or failure): the target's in-flight slot and the abort go, and it is counted
   * (`failed` null: not the target's doing, passive health is not told). False when already settled.
   */
  #settle(status: number, failed: boolean | null): boolean {
    if (this.#settled) return false
    this.#settled = true
    const ex = this.#ex
    const upstream = ex.upstream!
    this.#target.inflight--
    ex.abortUpstream = null
    this.#request.setTimeout(0)
    if (status > 0) upstream.metrics.duration.observe((performance.now() - ex.attemptStartMs) / 1000)
    upstream.metrics.countResponse(this.#target.hostPort, status)
    if (failed !== null) upstream.passive?.record(this.#target, failed)
    return true
  }

  #onUpgrade(res: IncomingMessage, socket: Socket, head: Buffer): void {
    const ex = this.#ex
    if (!this.#settle(101, false) || ex.finished) {
      socket.destroy()
      return
    }
    const client = ex.req.socket
    ex.res.detachSocket(client)
    const lines = ['HTTP/1.1 101 Switching Protocols']
    const out = upgradeResponseHeaders(res.rawHeaders, ex.requestId)
    for (let i = 0; i < out.length; i += 2) lines.push(out[i] + ': ' + out[i + 1])
    lines.push('', '')
    client.write(lines.join('\r\n'))
    ex.status = 101
    ex.headersSent = true
    // Registered before the exchange ends: shutdown waits for requests, then for tunnels (gateway.ts).
    new Tunnel(ex.state.tunnels, ex.route!.id, client, socket).start(ex.upgradeHead!, head, ex.route!.idleTimeoutMs)
    ex.complete()
  }

  #onResponse(res: IncomingMessage): void {
    const ex = this.#ex
    const status = res.statusCode ?? 502
    this.#settle(status, status >= 500)
    if (ex.finished) {
      res.destroy()
      return
    }
    ex.status = status
    ex.headersSent = true
    const raw = res.rawHeaders.map((v) => Buffer.from(v, 'latin1'))
    ex.res.writeHead(status, buildResponseHeaders(raw, ex.requestId, true, ex))
    res.on('data', (chunk: Buffer) => { ex.bytesOut += chunk.length })
    res.on('error', () => {
      ex.failure = FailureKind.Reset
      ex.res.destroy()
      ex.complete()
    })
    ex.res.once('finish', () => ex.complete())
    res.pipe(ex.res)
  }

  #onError(err: Error): void {
    const ex = this.#ex
    const failure = classifyError(err)
    // A failure the client caused (it left) is not the target's. After the answer, the response's own
    // 'error' (above) handles what goes wrong.
    if (!this.#settle(0, failure === FailureKind.ClientCaused ? null : true) || ex.finished) return
    ex.failure = failure
    if (failure === FailureKind.ClientCaused) ex.causedByClient = true
    ex.refuse(failure === FailureKind.Timeout || isConnectTimeout(err) ? UPSTREAM_TIMEOUT : UPSTREAM_UNAVAILABLE, true)
  }
}

/**
 * The upstream's 101 headers for the client: hop-by-hop ones and those its Connection lists are dropped,
 * as for any response; then the upgrade's own Connection and Upgrade, and X-Request-Id.
 */
export function upgradeResponseHeaders(raw: readonly string[], requestId: string): string[] {
  const out: string[] = []
  let upgrade = 'websocket'
  const listed: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) listed.push(t.trim().toLowerCase())
    }
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (lower === 'upgrade') {
      upgrade = raw[i + 1]!
      continue
    }
    if (lower === 'connection' || lower === 'x-request-id' || lower === 'content-length' || HOP_BY_HOP.has(lower) || listed.includes(lower)) continue
    out.push(name, raw[i + 1]!)
  }
  out.push('Upgrade', upgrade, 'Connection', 'Upgrade', 'x-request-id', requestId)
  return out
}
