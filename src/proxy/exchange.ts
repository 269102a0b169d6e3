// One client request and its upstream attempts. Hot path.
//
// The Exchange is itself the undici dispatch handler, so a request costs one object of a fixed shape (plus
// the header arrays), not a closure per callback. States:
//   start -> refused                                     (gateway-made response)
//   start -> attempt -> responding -> done               (upstream response streamed to the client)
//   attempt -> (error | retryable status, no bytes sent) -> backoff -> attempt (another target)
//   responding -> error -> client connection destroyed    (bytes already sent: never retried)
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import {
  BAD_REQUEST, METHOD_NOT_ALLOWED, NO_HEALTHY_UPSTREAM, OVERLOADED, PAYLOAD_TOO_LARGE, ROUTE_NOT_FOUND,
  SHUTTING_DOWN, UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE, type Refusal,
} from '../errors.js'
import type { CompiledRoute, CompiledUpstream, RouteTable } from '../table/route-table.js'
import type { Target } from '../upstream/target.js'
import { FailureKind as Failure } from '../upstream/retry-policy.js'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { canonicalizeTarget } from '../http/canonical-path.js'
import {
  RequestHeaderFacts, buildResponseHeaders, buildUpstreamHeaders, nextTraceparent, peerAddress, randomIds, requestIdFrom,
  scanRequestHeaders,
} from './headers.js'
import { sendRefusal } from './refusal.js'
import type { ProxyState } from './proxy-state.js'
import type { Watched } from './response-watch.js'

const kExchange = Symbol('tollgate.exchange')
type WithExchange = ServerResponse & { [kExchange]?: Exchange }

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])


/** Module-level listeners: `this` is the response, the exchange hangs on it. No closure per request. */
function onResponseClose(this: WithExchange): void {
  this[kExchange]?.onClientClose()
}
function onResponseDrain(this: WithExchange): void {
  this[kExchange]?.onClientDrain()
}

/**
 * One request. It extends RequestHeaderFacts (what the header scan learns) rather than holding one, and is
 * undici's dispatch handler too: a request costs this one object of a fixed shape.
 */
export class Exchange extends RequestHeaderFacts implements Dispatcher.DispatchHandler, Watched {
  readonly state: ProxyState
  readonly table: RouteTable
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly startMs: number
  requestId: string
  route: CompiledRoute | null = null
  upstream: CompiledUpstream | null = null
  target: Target | null = null
  upstreamPath = ''
  upstreamHeaders: string[] | null = null
  hashValue: string | null = null
  tried: Target[] | null = null
  attempts = 0
  attemptStartMs = 0
  abortUpstream: ((err?: Error) => void) | null = null
  resumeUpstream: (() => void) | null = null
  nextTarget: Target | null = null
  discarding = false
  headersSent = false
  finished = false
  acquired = false
  bodyBytes = 0
  /** Response body bytes still to come when the upstream sent Content-Length, else -1. */
  bytesLeft = -1
  /** The whole response is handed to node:http (res.end() called); completion waits for undici. */
  responseEnded = false
  status = 0
  // timeouts.response, checked by state.watch's sweep (response-watch.ts says why not undici's timers).
  watchPrev: Watched | null = null
  watchNext: Watched | null = null
  /** performance.now() when the upstream last showed progress (the attempt began, a sweep saw activity). */
  activityMs = 0
  /** Upstream progress since the last sweep: response headers or a body chunk. */
  active = false
  /** Reading from the upstream is paused until the client drains: the wait is the client's, not the upstream's. */
  paused = false

  constructor(state: ProxyState, req: IncomingMessage, res: ServerResponse) {
    super()
    this.state = state
    this.table = state.table
    this.req = req
    this.res = res
    this.startMs = performance.now()
    this.requestId = ''
  }

  start(expectContinue: boolean): void {
    const { req, res, state } = this
    const facts: RequestHeaderFacts = this
    state.requestStarted()
    ;(res as WithExchange)[kExchange] = this
    res.on('close', onResponseClose) // `on`, not `once`: once() wraps the listener in a new closure

    const framing = scanRequestHeaders(req.rawHeaders, facts)
    const ids = randomIds()
    this.requestId = facts.incomingRequestId ?? requestIdFrom(ids)
    if (framing !== null) return this.refuse(framing, true)
    if (state.draining) return this.refuse(SHUTTING_DOWN, true)

    const table = this.table
    const target = canonicalizeTarget(req.url ?? '', req.method ?? 'GET', facts.host, table.pathPolicy)
    if ('rejected' in target) return this.refuse(BAD_REQUEST, facts.hasBody())
    if (target.path === '*') return this.answerOptionsStar()

    const match = table.router.match(req.method ?? 'GET', facts.host, target.path, table.matchesHeaders ? req.headers : NO_HEADERS)
    if (match === null) return this.refuse(ROUTE_NOT_FOUND, false)
    if (match.value === null) return this.refuse(METHOD_NOT_ALLOWED, false, match.allow)
    const route = match.value
    this.route = route
    if (target.hasEncodedSlash && !route.allowEncodedSlash) return this.refuse(BAD_REQUEST, true)
    // SPEC §5: 413 from Content-Length before reading the body.
    if (facts.contentLength > route.maxBodyBytes) return this.refuse(PAYLOAD_TOO_LARGE, true)

    const upstream = route.upstream
    this.upstream = upstream
    if (!upstream.pool.tryAcquire()) return this.refuse(OVERLOADED, false)
    this.acquired = true

    this.upstreamPath = route.rewritePath(target.path, match.params) + target.query
    const peer = socketPeer(req.socket)
    const trusted = table.trustedProxies.isTrusted(peer)
    const clientHost = facts.host ?? ''
    this.upstreamHeaders = buildUpstreamHeaders(req.rawHeaders, facts, trusted, peer,
      upstream.hostHeader === null ? clientHost : upstream.hostHeader, clientHost, this.requestId,
      nextTraceparent(facts, ids), false)
    if (upstream.hashKey !== null) this.hashValue = upstream.hashKey.valueOf(req, target.path, table.trustedProxies.clientIp(peer, facts.forwardedFor))
    if (expectContinue) res.writeContinue()
    state.watch.add(this)
    this.attempt(null)
  }

  /** Send to a target (the pre-picked one after a retry decision, else the balancer's choice). */
  attempt(preferred: Target | null): void {
    const upstream = this.upstream!
    const target = preferred ?? upstream.pool.pick(this.tried ?? EMPTY_TRIED, this.attempts, this.hashValue)
    if (target === null) return this.refuse(NO_HEALTHY_UPSTREAM, false)
    this.target = target
    target.inflight++
    this.attempts++
    this.attemptStartMs = this.attempts === 1 ? this.startMs : performance.now()
    this.discarding = false
    this.nextTarget = null
    this.activityMs = this.attemptStartMs
    this.active = false
    this.paused = false
    const req = this.req
    const hasBody = this.hasBody()
    const dispatcher = target.dispatcher as Dispatcher
    const headers = this.upstreamHeaders!
    if (upstream.hostFromTarget) headers[1] = target.origin.slice(target.origin.indexOf('//') + 2)
    dispatcher.dispatch({
      origin: target.origin,
      path: this.upstreamPath,
      method: req.method as Dispatcher.HttpMethod,
      headers,
      // undici accepts async iterables at run time; its types only list streams.
      body: hasBody ? (this.hasChunkedBody ? countingBody(this) as unknown as Readable : req) : null,
      headersTimeout: 0, // timeouts.response: see sweep()
      bodyTimeout: 0,
      upgrade: null,
    }, this)
  }

  // ---- undici DispatchHandler ----
  // undici's core speaks these callbacks natively. A handler with the newer onRequestStart/onResponse*
  // methods is wrapped per request in an UnwrapHandler and an UnwrapController, and its response headers
  // and trailers are parsed into objects: measured at ~1.8 us more undici CPU per request than the
  // thinnest forwarder (bench scenario small, CPU profile), so we take the raw callbacks.

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort
    if (this.finished) abort(CLIENT_GONE)
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const upstream = this.upstream!
    const target = this.target!
    this.resumeUpstream = resume
    this.active = true
    upstream.metrics.duration.observe((performance.now() - this.attemptStartMs) / 1000)
    upstream.metrics.countResponse(target.hostPort, statusCode)
    if (statusCode >= 500 && upstream.retry.onStatus(statusCode) && this.canRetry()) {
      const next = upstream.pool.pick(this.rememberTried(target), this.attempts, this.hashValue)
      if (next !== null) {
        // Drain and drop this response, keep the connection, then try `next` (SPEC retry).
        this.discarding = true
        this.nextTarget = next
        return true
      }
    }
    if (this.finished) return true
    this.status = statusCode
    this.headersSent = true
    this.res.writeHead(statusCode, buildResponseHeaders(rawHeaders, this.requestId, this.state.draining, this))
    return true
  }

  onData(chunk: Buffer): boolean {
    this.active = true
    if (this.discarding || this.finished) return true
    const left = this.bytesLeft
    if (left === chunk.length) {
      // The last bytes of a Content-Length body: res.end(chunk) writes them and finishes in one pass,
      // where write() + end() corks the socket and queues a tick to uncork it. Most responses arrive in
      // one chunk, so this is the common path (measured: CPU profile of bench scenario small).
      this.bytesLeft = 0
      this.responseEnded = true
      this.res.end(chunk)
      return true
    }
    if (left > 0) this.bytesLeft = left - chunk.length
    if (this.res.write(chunk)) return true
    // Backpressure: a slow client pauses the upstream read instead of buffering in the gateway.
    this.paused = true
    this.res.once('drain', onResponseDrain)
    return false
  }

  onClientDrain(): void {
    this.paused = false
    this.active = true
    this.resumeUpstream?.()
  }

  /**
   * timeouts.response (SPEC §4): no response headers, or no next body chunk, within it of the last progress
   * is a timeout. Time the client takes (uploading the request body, draining the response) does not
   * count; connecting has timeouts.connect. Called by state.watch every table.sweepMs.
   */
  sweep(now: number): void {
    const abort = this.abortUpstream
    if (abort === null) return // not sent yet (connecting, or between attempts)
    if (this.active || this.paused || (this.status === 0 && !this.discarding && this.isUploading())) {
      this.active = false
      this.activityMs = now
      return
    }
    if (now - this.activityMs < this.upstream!.responseTimeoutMs) return
    this.abortUpstream = null
    abort(RESPONSE_TIMEOUT)
  }

  isUploading(): boolean {
    return this.hasBody() && !this.req.complete
  }

  onComplete(): void {
    this.releaseTarget()
    if (this.discarding) {
      const next = this.nextTarget!
      this.discarding = false
      this.retryAfterBackoff(next)
      return
    }
    if (this.finished) return
    if (!this.responseEnded) this.res.end()
    this.complete()
  }

  onError(err: Error): void {
    const target = this.target
    this.releaseTarget()
    if (this.finished) return
    if (this.headersSent && !this.discarding) {
      // Bytes already went to the client: never retried; the client sees the connection close (unless
      // every byte of a Content-Length body is already written: then the client has its whole response).
      if (!this.responseEnded) this.res.destroy()
      this.complete()
      return
    }
    const failure = classify(err)
    if (target !== null) this.upstream!.metrics.countResponse(target.hostPort, 0)
    if (failure !== Failure.None && this.upstream!.retry.onFailure(failure) && this.canRetry()) {
      const next = this.upstream!.pool.pick(this.rememberTried(target!), this.attempts, this.hashValue)
      if (next !== null) return this.retryAfterBackoff(next)
    }
    if ((err as { code?: string }).code === 'TOLLGATE_BODY_TOO_LARGE') return this.refuse(PAYLOAD_TOO_LARGE, true)
    this.refuse(failure === Failure.Timeout || isConnectTimeout(err) ? UPSTREAM_TIMEOUT : UPSTREAM_UNAVAILABLE, false)
  }

  // ---- helpers ----

  canRetry(): boolean {
    if (this.attempts > this.upstream!.retry.attempts) return false
    if (this.finished || this.headersSent) return false
    // Only idempotent requests without a body: the body stream cannot be replayed (it is not buffered).
    if (!IDEMPOTENT.has(this.req.method ?? '')) return false
    return !this.hasBody()
  }

  rememberTried(target: Target): Target[] {
    const tried = (this.tried ??= [])
    tried.push(target)
    return tried
  }

  retryAfterBackoff(next: Target): void {
    const route = this.route!
    route.metrics.retries.inc()
    const delayMs = this.upstream!.retry.backoffMs(this.attempts)
    if (delayMs <= 0) return this.attempt(next)
    setTimeout(retryTimer, delayMs, this, next)
  }

  releaseTarget(): void {
    const t = this.target
    if (t !== null) {
      t.inflight--
      this.target = null
    }
    this.abortUpstream = null
    this.resumeUpstream = null
  }

  onClientClose(): void {
    // Ended: the response is written whole and undici's onComplete is on its way (same parser run).
    if (this.finished || this.responseEnded) return
    // The client went away before the response ended: stop the upstream work too.
    const abort = this.abortUpstream
    if (abort !== null) abort(CLIENT_GONE)
    if (this.status === 0) this.status = 499
    this.complete()
  }

  answerOptionsStar(): void {
    this.status = 204
    this.res.writeHead(204, ['x-request-id', this.requestId, 'allow', 'GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH'])
    this.res.end()
    this.complete()
  }

  refuse(refusal: Refusal, close: boolean, allow?: string): void {
    if (this.finished) return
    const res = this.res
    this.status = refusal.status
    if (this.headersSent || res.headersSent) {
      res.destroy()
    } else {
      this.headersSent = true
      sendRefusal(res, refusal, this.requestId, close || this.state.draining, allow)
    }
    this.complete()
  }

  complete(): void {
    if (this.finished) return
    this.finished = true
    this.state.watch.remove(this)
    const route = this.route
    if (this.acquired) this.upstream!.pool.release()
    const seconds = (performance.now() - this.startMs) / 1000
    const metrics = route === null ? this.state.unmatchedMetrics : route.metrics
    metrics.countRequest(this.req.method ?? 'GET', this.status)
    metrics.duration.observe(seconds)
    this.state.requestFinished()
  }
}

const kPeer = Symbol('tollgate.peer')

/**
 * The client address of a connection, worked out on its first request and kept on the socket: the
 * remoteAddress getter goes through Socket._getpeername on every call (~0.1 us per request in the CPU
 * profile of bench scenario small), and a keep-alive connection carries many requests.
 */
function socketPeer(socket: Socket & { [kPeer]?: string }): string {
  return socket[kPeer] ??= peerAddress(socket.remoteAddress)
}

const EMPTY_TRIED: Target[] = []
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

const CLIENT_GONE = Object.assign(new Error('client closed the connection'), { code: 'TOLLGATE_CLIENT_GONE' })
const RESPONSE_TIMEOUT = Object.assign(new Error('no response within timeouts.response'), { code: 'TOLLGATE_RESPONSE_TIMEOUT' })
const BODY_TOO_LARGE = Object.assign(new Error('request body over maxBodySize'), { code: 'TOLLGATE_BODY_TOO_LARGE' })

function retryTimer(ex: Exchange, next: Target): void {
  if (ex.finished) return
  if (!next.healthy || next.closing) return ex.attempt(null)
  ex.attempt(next)
}

function isConnectTimeout(err: Error): boolean {
  return (err as { code?: string }).code === 'UND_ERR_CONNECT_TIMEOUT'
}

function classify(err: Error): Failure {
  switch ((err as { code?: string }).code) {
    case 'ECONNREFUSED': case 'ENOTFOUND': case 'EHOSTUNREACH': case 'ENETUNREACH': case 'EAI_AGAIN':
    case 'UND_ERR_CONNECT_TIMEOUT': case 'EADDRNOTAVAIL':
      return Failure.ConnectFailure
    case 'TOLLGATE_RESPONSE_TIMEOUT': case 'UND_ERR_HEADERS_TIMEOUT': case 'UND_ERR_BODY_TIMEOUT':
      return Failure.Timeout
    case 'ECONNRESET': case 'EPIPE': case 'UND_ERR_SOCKET': case 'UND_ERR_CLOSED':
      return Failure.Reset
    default:
      return Failure.None
  }
}


/** A chunked request body, counted while it streams: over maxBodySize the upstream request is aborted. */
async function* countingBody(ex: Exchange): AsyncGenerator<Buffer> {
  const max = ex.route!.maxBodyBytes
  for await (const chunk of ex.req as AsyncIterable<Buffer>) {
    ex.bodyBytes += chunk.length
    if (ex.bodyBytes > max) throw BODY_TOO_LARGE
    yield chunk
  }
}

/**
 * Node gave up on a request whose response is `res` (requestTimeout while the body arrives): abort the
 * upstream attempt and answer `refusal` with Connection: close. False when there is nothing left to answer.
 */
export function refuseInProgress(res: ServerResponse, refusal: Refusal): boolean {
  const ex = (res as WithExchange)[kExchange]
  if (ex === undefined || ex.finished || ex.headersSent || res.headersSent) return false
  const abort = ex.abortUpstream
  ex.refuse(refusal, true) // first: once finished, the abort's onError answers nothing more
  if (abort !== null) abort(CLIENT_GONE)
  return true
}
