// Forwarding a routed request: the upstream headers, the attempt on a target's undici pool, the response
// streamed back with backpressure, retries on another target, and timeouts.response. Hot path.
//
// The exchange is undici's dispatch handler; its on* methods call the functions below with itself, so no
// object or closure is made per attempt. A retry happens only before any response byte reached the client.
import { performance } from 'node:perf_hooks'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { NO_HEALTHY_UPSTREAM, PAYLOAD_TOO_LARGE, PLUGIN_FAILED, UPSTREAM_TIMEOUT, UPSTREAM_UNAVAILABLE } from '../errors.js'
import { socketPeer } from '../http/client-ip.js'
import { Next } from '../http/request-step.js'
import { FailureKind, classifyError, isConnectTimeout } from '../upstream/outcome.js'
import type { Target } from '../upstream/target.js'
import { grpcStatusOfHeaders, grpcStatusOfTrailers, httpStatusOfGrpc, trailerPairs, type UndiciTrailers } from '../upstream/grpc-status.js'
import { RetrySkip } from '../telemetry/metrics.js'
import type { ServerResponse } from 'node:http'
import type { Exchange } from './exchange.js'
import { kExchange } from './exchange-key.js'
import { buildResponseHeaders, pushQuotaHeaders } from './response-headers.js'
import { endAttemptSpan, errorTypeOf, startAttemptSpan, upstreamTraceparent } from './trace-spans.js'
import { HOP_BY_HOP_NAMES } from './header-names.js'
import { buildUpstreamHeaders, setClientCertHeader } from './upstream-headers.js'
import { stripQueryParam } from '../policy/auth/key-auth-step.js'
import { clientCertSubject } from '../http/client-cert.js'
import { forwardWebSocket } from './websocket-forward.js'
import { startMirror, teeBody } from './mirror.js'

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])
const EMPTY_TRIED: Target[] = []

const RESPONSE_TIMEOUT = Object.assign(new Error('no response within timeouts.response'), { code: 'TOLLGATE_RESPONSE_TIMEOUT' })
const BODY_TOO_LARGE = Object.assign(new Error('request body over maxBodySize'), { code: 'TOLLGATE_BODY_TOO_LARGE' })
const H2_UNSENDABLE = Object.assign(new Error('the upstream response cannot be sent over HTTP/2'), { code: 'TOLLGATE_H2_UNSENDABLE' })
const PLUGIN_DROPPED = Object.assign(new Error('an onResponse plugin failed; the upstream response is dropped'), { code: 'TOLLGATE_PLUGIN_FAILED' })
export const CLIENT_GONE = Object.assign(new Error('client closed the connection'), { code: 'TOLLGATE_CLIENT_GONE' })

/** The last step of the pipeline: headers for the upstream, then the first attempt. */
export function forward(ex: Exchange): void {
  const { req, table } = ex
  const route = ex.route!
  const upstream = ex.upstream! // the route's, or its breaker's fallback upstream
  // Auth: the credential never goes upstream (README "Authentication"): the key header or Authorization, and the key's query parameter.
  const strip = route.auth === null ? null : route.auth.strip
  const query = strip === null || strip.queryParam === null ? ex.query : stripQueryParam(ex.query, strip.queryParam)
  ex.upstreamPath = route.rewritePath(ex.canonicalPath, ex.params!) + query
  const peer = socketPeer(req.socket)
  const trusted = table.trustedProxies.isTrusted(peer)
  const clientHost = ex.host ?? ''
  ex.upstreamHeaders = buildUpstreamHeaders(req.rawHeaders, ex, trusted, peer,
    upstream.hostHeader === null ? clientHost : upstream.hostHeader, clientHost, ex.requestId,
    upstreamTraceparent(ex), ex.upgradeHead !== null, ex.state.scheme, strip, ex.consumer)
  if (route.forwardClientCert !== null) setClientCertHeader(ex.upstreamHeaders, route.forwardClientCert, clientCertSubject(req.socket))
  // gRPC servers require `te: trailers` (it says the client reads trailers); it is hop-by-hop, so the
  // client's was dropped above and the gateway, which relays trailers, sends its own.
  if (upstream.grpc) ex.upstreamHeaders.push('te', 'trailers')
  if (ex.plugins !== null) ex.plugins.applyUpstreamHeaders(ex.upstreamHeaders)
  if (upstream.hashKey !== null) {
    ex.hashValue = upstream.hashKey.valueOf(req, ex.canonicalPath, upstream.hashKey.needsClientIp ? ex.clientIp() : '', route.id)
  }
  if (ex.upgradeHead !== null) return forwardWebSocket(ex)
  if (ex.hasBody() && !ex.hasChunkedBody) ex.bytesIn = ex.contentLength
  // README "Mirroring": decided once, before the first attempt; a request with a body is copied as it streams.
  if (route.mirror !== null) ex.mirrorCall = startMirror(ex, route.mirror)
  if (ex.sendContinue) ex.res.writeContinue()
  ex.state.watch.add(ex)
  attempt(ex, null)
}

/** Send to a target (the pre-picked one after a retry decision, else the balancer's choice). */
function attempt(ex: Exchange, preferred: Target | null): void {
  const upstream = ex.upstream!
  const target = preferred ?? upstream.pool.pick(ex.tried ?? EMPTY_TRIED, ex.attempts, ex.hashValue)
  if (target === null) return ex.refuse(NO_HEALTHY_UPSTREAM, false)
  ex.target = target
  ex.lastTarget = target.hostPort
  target.inflight++
  ex.attempts++
  ex.attemptStartMs = ex.attempts === 1 ? ex.startMs : performance.now()
  ex.discarding = false
  ex.nextTarget = null
  ex.failure = FailureKind.None
  ex.activityMs = ex.attemptStartMs
  ex.active = false
  ex.paused = false
  const req = ex.req
  const headers = ex.upstreamHeaders!
  if (upstream.hostFromTarget) headers[1] = target.origin.slice(target.origin.indexOf('//') + 2)
  if (ex.sampled === 1) startAttemptSpan(ex, target, headers)
  target.dispatcher!.dispatch({
    origin: target.origin,
    path: ex.upstreamPath,
    method: req.method as Dispatcher.HttpMethod,
    headers,
    body: ex.hasBody() ? requestBody(ex) : null,
    headersTimeout: 0, // timeouts.response: see sweepExchange()
    bodyTimeout: 0,
    upgrade: null,
  }, ex)
}

export function onUpstreamConnect(ex: Exchange, abort: (err?: Error) => void): void {
  ex.abortUpstream = abort
  if (ex.finished) abort(CLIENT_GONE)
}

export function onUpstreamHeaders(ex: Exchange, statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
  const upstream = ex.upstream!
  const target = ex.target!
  ex.resumeRead = resume
  ex.active = true
  ex.attemptSpan?.responded(statusCode)
  upstream.metrics.duration.observe((performance.now() - ex.attemptStartMs) / 1000)
  upstream.metrics.countResponse(target.hostPort, statusCode)
  // Passive health: the status decides the attempt, also when it is retried elsewhere (README "Health checks").
  // A gRPC response (200) is judged by its grpc-status when it ends (onUpstreamComplete).
  if (upstream.grpc) {
    ex.grpcStatus = grpcStatusOfHeaders(rawHeaders, -1) // a trailers-only response carries it here
    if (statusCode !== 200) upstream.passive?.record(target, statusCode >= 500)
  } else {
    upstream.passive?.record(target, statusCode >= 500)
  }
  if (statusCode >= 500 && upstream.retry.onStatus(statusCode) && mayRetry(ex)) {
    const next = upstream.pool.pick(rememberTried(ex, target), ex.attempts, ex.hashValue)
    if (next !== null) {
      // Drain and drop this response, keep the connection, then try `next` (README "Retries and timeouts").
      holdRetry(ex)
      ex.discarding = true
      ex.nextTarget = next
      return true
    }
  }
  if (ex.finished) return true
  ex.status = statusCode
  const quotaSource = ex.quotaSource
  const headers = buildResponseHeaders(rawHeaders, ex.requestId, ex.state.draining && !ex.isH2, ex, quotaSource !== null)
  if (quotaSource !== null) pushQuotaHeaders(headers, quotaSource, ex.quotaRemaining, ex.quotaResetMs)
  if (upstream.grpc) {
    // The response ends in onUpstreamComplete, after its trailers are added; over HTTP/1.1 the `trailer`
    // header makes node:http frame it chunked, the only framing that carries trailers.
    ex.bytesLeft = -1
    if (ex.grpcStatus !== -1) ex.grpcTrailers = takeStatusHeaders(headers)
    headers.push('trailer', 'grpc-status, grpc-message')
  }
  const plugins = ex.plugins
  if (plugins !== null && plugins.hasOnResponse) {
    // README "Plugins": onResponse may set headers before they go; the body waits (undici pauses on false).
    const next = plugins.runResponse(statusCode, headers, ex)
    if (next !== Next.Continue) {
      ex.paused = true // the plugin's timeout bounds the wait, not timeouts.response
      if (next === Next.Suspend) ex.pendingHead = headers
      else setImmediate(failResponseHead, ex) // not from inside undici's parser callback
      return false
    }
  }
  ex.headersSent = true
  if (ex.isH2) return writeH2Head(ex, statusCode, headers)
  ex.res.writeHead(statusCode, headers)
  return true
}

/**
 * HTTP/2: node:http2 throws on what an HTTP/1.1 upstream may send and HTTP/2 forbids (a repeated header that
 * must be single, such as two Content-Type lines; connection-specific ones are already dropped). Such a
 * response is broken framing for this client: 502, its connection discarded (README "HTTP/2").
 */
function writeH2Head(ex: Exchange, statusCode: number, headers: string[]): boolean {
  try {
    ex.res.writeHead(statusCode, headers)
    return true
  } catch {
    // Nothing was sent: the 502 goes out on this stream without what the upstream's head left behind.
    for (const name of ex.res.getHeaderNames()) ex.res.removeHeader(name)
    ex.headersSent = false
    ex.status = 0
    ex.abortUpstream?.(H2_UNSENDABLE)
    return false
  }
}

/** ResponseHeadSink (via the exchange): async onResponse plugins are done; write the head and read on, or fail. */
export function onPluginResponseDone(ex: Exchange, failed: boolean): void {
  if (failed) return failResponseHead(ex)
  const headers = ex.pendingHead
  ex.pendingHead = null
  if (ex.finished || headers === null) return
  ex.headersSent = true
  if (ex.isH2) {
    if (!writeH2Head(ex, ex.status, headers)) return
  } else {
    ex.res.writeHead(ex.status, headers)
  }
  ex.paused = false
  ex.active = true
  ex.resumeRead?.()
}

/** An onResponse plugin failed before the head went out: 500 PLUGIN_FAILED, and the upstream response is dropped. */
function failResponseHead(ex: Exchange): void {
  ex.pendingHead = null
  const abort = ex.abortUpstream
  ex.refuse(PLUGIN_FAILED, false)
  if (abort !== null) abort(PLUGIN_DROPPED)
}

export function onUpstreamData(ex: Exchange, chunk: Buffer): boolean {
  ex.active = true
  if (ex.discarding || ex.finished) return true
  ex.bytesOut += chunk.length
  const left = ex.bytesLeft
  if (left === chunk.length) {
    // The last bytes of a Content-Length body: res.end(chunk) writes them and finishes in one pass,
    // where write() + end() corks the socket and queues a tick to uncork it. Most responses arrive in
    // one chunk, so this is the common path (measured: CPU profile of bench scenario small).
    ex.bytesLeft = 0
    ex.responseEnded = true
    ex.res.end(chunk)
    return true
  }
  if (left > 0) ex.bytesLeft = left - chunk.length
  if (ex.res.write(chunk)) return true
  // Backpressure: a slow client pauses the upstream read instead of buffering in the gateway.
  ex.paused = true
  ex.res.once('drain', onResponseDrain)
  return false
}

/** 'drain' of the client response (`this`): read from the upstream again. No closure per request. */
function onResponseDrain(this: ServerResponse & { [kExchange]?: Exchange }): void {
  const ex = this[kExchange]
  if (ex === undefined) return
  ex.paused = false
  ex.active = true
  ex.resumeRead?.()
}

export function onUpstreamComplete(ex: Exchange, trailers: UndiciTrailers): void {
  const target = ex.target
  releaseTarget(ex)
  endAttemptSpan(ex, null)
  if (ex.discarding) {
    const next = ex.nextTarget!
    ex.discarding = false
    retryAfterBackoff(ex, next)
    return
  }
  if (ex.upstream!.grpc) completeGrpc(ex, target, trailers)
  if (ex.finished) return
  if (!ex.responseEnded) {
    // Trailers of a chunked upstream response reach an HTTP/2 client (HTTP/1.1 clients get none: they would
    // need the Trailer header announced before the body).
    if (ex.isH2 && trailers !== null && trailers.length > 0) addH2Trailers(ex, trailers)
    ex.res.end()
  }
  ex.complete()
}

/**
 * A gRPC call ended: its grpc-status (from the trailers, or the headers of a trailers-only response) is
 * the outcome that failOn and passive health judge (grpc-status.ts maps it to the HTTP status it stands
 * for), and the trailers go on to the client.
 */
function completeGrpc(ex: Exchange, target: Target | null, trailers: UndiciTrailers): void {
  ex.grpcStatus = grpcStatusOfTrailers(trailers, ex.grpcStatus)
  if (target !== null && ex.status === 200) ex.upstream!.passive?.record(target, ex.grpcStatus !== -1 && httpStatusOfGrpc(ex.grpcStatus) >= 500)
  if (ex.finished || ex.responseEnded) return
  const out: Record<string, string> = ex.grpcTrailers ?? {}
  for (const [name, value] of trailerPairs(trailers)) out[name] = name in out ? out[name] + ', ' + value : value
  ex.res.addTrailers(out)
}

const STATUS_HEADERS = new Set(['grpc-status', 'grpc-message', 'grpc-status-details-bin'])

/**
 * A trailers-only gRPC response (the status in the response headers, no message, no trailers): its status
 * fields move from the headers to the trailers. Relayed as they came, the client would get them in headers
 * that do not end the stream (node:http2's compatibility response never ends it on HEADERS; HTTP/1.1 has no
 * such frame), which gRPC clients read as metadata, and then a stream without a status.
 */
function takeStatusHeaders(headers: string[]): Record<string, string> {
  const taken: Record<string, string> = {}
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (!STATUS_HEADERS.has(headers[i]!)) continue
    taken[headers[i]!] = headers[i + 1]!
    headers.splice(i, 2)
  }
  return taken
}

function addH2Trailers(ex: Exchange, raw: ReadonlyArray<Buffer | string>): void {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = latin1(raw[i]!).toLowerCase()
    // RFC 9110 §6.5.1: no framing, routing or connection fields in trailers.
    if (HOP_BY_HOP_NAMES.includes(name) || name === 'content-length' || name === 'host' || name === 'upgrade') continue
    const value = latin1(raw[i + 1]!)
    out[name] = out[name] === undefined ? value : out[name] + ', ' + value
  }
  try {
    ex.res.addTrailers(out)
  } catch {
    // A trailer node:http2 refuses is dropped; the response itself is whole.
  }
}

export function onUpstreamError(ex: Exchange, err: Error): void {
  const target = ex.target
  releaseTarget(ex)
  endAttemptSpan(ex, errorTypeOf(err))
  const failure = classifyError(err)
  // Passive health: an attempt that failed before its response headers; never one the client caused.
  if (target !== null && failure !== FailureKind.ClientCaused && !ex.headersSent && !ex.discarding) ex.upstream!.passive?.record(target, true)
  if (ex.finished) return
  ex.failure = failure
  if (failure === FailureKind.ClientCaused) ex.causedByClient = true
  if (ex.headersSent && !ex.discarding) {
    // Bytes already went to the client: never retried; the client sees the connection close (unless
    // every byte of a Content-Length body is already written: then the client has its whole response).
    if (ex.upstream!.retry.onFailure(failure) && ex.attempts <= ex.upstream!.retry.attempts) ex.route!.metrics.skipRetry(RetrySkip.BodySent)
    if (!ex.responseEnded) ex.res.destroy()
    ex.complete()
    return
  }
  const upstream = ex.upstream!
  if (target !== null) upstream.metrics.countResponse(target.hostPort, 0)
  if (upstream.retry.onFailure(failure) && mayRetry(ex)) {
    const next = upstream.pool.pick(rememberTried(ex, target!), ex.attempts, ex.hashValue)
    if (next !== null) {
      holdRetry(ex)
      return retryAfterBackoff(ex, next)
    }
  }
  if ((err as { code?: string }).code === 'TOLLGATE_BODY_TOO_LARGE') return ex.refuse(PAYLOAD_TOO_LARGE, true)
  ex.refuse(failure === FailureKind.Timeout || isConnectTimeout(err) ? UPSTREAM_TIMEOUT : UPSTREAM_UNAVAILABLE, false)
}

/**
 * timeouts.response (README "Retries and timeouts"): no response headers, or no next body chunk, within it of the last progress
 * is a timeout. Time the client takes (uploading the request body, draining the response) does not
 * count; connecting has timeouts.connect. Called by state.watch's sweep.
 */
export function sweepExchange(ex: Exchange, now: number): void {
  const abort = ex.abortUpstream
  if (abort === null) return // not sent yet (connecting, or between attempts)
  if (ex.active || ex.paused || (ex.status === 0 && !ex.discarding && isUploading(ex))) {
    ex.active = false
    ex.activityMs = now
    return
  }
  if (now - ex.activityMs < ex.upstream!.responseTimeoutMs) return
  ex.abortUpstream = null
  abort(RESPONSE_TIMEOUT)
}

function isUploading(ex: Exchange): boolean {
  return ex.hasBody() && !ex.req.complete
}

/**
 * A failure that `retry.on` names: whether the request may be retried. A retry that attempts are left for
 * but that is not made counts in tollgate_retries_skipped_total with its reason.
 */
function mayRetry(ex: Exchange): boolean {
  const upstream = ex.upstream!
  const retry = upstream.retry
  if (ex.attempts > retry.attempts || ex.finished) return false
  if (ex.headersSent) return skipRetry(ex, RetrySkip.BodySent)
  // Only idempotent requests without a body: the body stream cannot be replayed (it is not buffered).
  if (!IDEMPOTENT.has(ex.req.method ?? '')) return skipRetry(ex, RetrySkip.NotIdempotent)
  if (ex.hasBody()) return skipRetry(ex, RetrySkip.BodySent)
  // The retry budget (retry-policy.ts): a request already retrying keeps its slot.
  if (!ex.holdsRetry && !retry.withinBudget(upstream.pool.inflight)) return skipRetry(ex, RetrySkip.Budget)
  return true
}

function skipRetry(ex: Exchange, reason: RetrySkip): false {
  ex.route!.metrics.skipRetry(reason)
  return false
}

/** The request retries: it holds one slot of its upstream's retry budget until it ends (Exchange.complete). */
function holdRetry(ex: Exchange): void {
  if (ex.holdsRetry) return
  ex.holdsRetry = true
  ex.upstream!.retry.acquireRetry()
}

function rememberTried(ex: Exchange, target: Target): Target[] {
  const tried = (ex.tried ??= [])
  tried.push(target)
  return tried
}

function retryAfterBackoff(ex: Exchange, next: Target): void {
  ex.route!.metrics.retries.inc()
  const delayMs = ex.upstream!.retry.backoffMs(ex.attempts)
  if (delayMs <= 0) return attempt(ex, next)
  setTimeout(retryTimer, delayMs, ex, next)
}

function retryTimer(ex: Exchange, next: Target): void {
  if (ex.finished) return
  attempt(ex, !next.healthy || next.closing ? null : next)
}

function releaseTarget(ex: Exchange): void {
  const t = ex.target
  if (t !== null) {
    t.inflight--
    ex.target = null
  }
  ex.abortUpstream = null
  ex.resumeRead = null
}

function latin1(x: Buffer | string): string {
  return typeof x === 'string' ? x : x.toString('latin1')
}

/** The body sent upstream: the request itself, counted when chunked, copied for the mirror when mirrored. */
function requestBody(ex: Exchange): Readable {
  const body = ex.hasChunkedBody ? countingBody(ex) : ex.req
  // undici accepts async iterables at run time; its types only list streams.
  return (ex.mirrorCall === null ? body : teeBody(ex.mirrorCall, body)) as unknown as Readable
}

/** A chunked request body, counted while it streams: over maxBodySize the upstream request is aborted. */
async function* countingBody(ex: Exchange): AsyncGenerator<Buffer> {
  const max = ex.route!.maxBodyBytes
  for await (const chunk of ex.req as AsyncIterable<Buffer>) {
    ex.bytesIn += chunk.length
    if (ex.bytesIn > max) throw BODY_TOO_LARGE
    yield chunk
  }
}
