// One client request: its state from the first header to the end-of-request record. Hot path.
//
// One object per request, of a fixed shape (every field assigned in the constructor, in order): it holds
// what the header scan learned (it extends RequestHeaderFacts), what the pipeline decided (route, path,
// ids), the forwarding state (forward.ts), and the Outcome that record.ts reads at the end. It is also
// undici's dispatch handler (its on* methods hand over to forward.ts) and the StepContext of the route's
// steps, so a request costs this one object, not a closure per callback.
//
// States (`finished` ends them all; complete() runs exactly once):
//   pipeline -> refused                                  (gateway-made response)
//   pipeline -> suspended -> pipeline                    (a step waits for a store)
//   pipeline -> attempt -> responding -> done            (forward.ts: upstream response streamed)
//   attempt -> head held (async onResponse plugin) -> responding | refused (plugin failed)
//   attempt -> (error | retryable status, no bytes sent) -> backoff -> attempt (another target)
//   responding -> error -> client connection destroyed    (bytes already sent: never retried)
// performance from node:perf_hooks, not the global: Node's global `performance` is an accessor, and every read
// of it on the request path went through V8's LoadGlobalIC and the getter (`perf record -g` of the full-chain
// config: 88 samples in 12 s, 0.27 µs per request, in complete(), onUpstreamHeaders and the request's start;
// 3 after, none of them ours). The request path's modules import it so.
import { performance } from 'node:perf_hooks'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { Refusal } from '../errors.js'
import { socketPeer } from '../http/client-ip.js'
import { RequestHeaderFacts } from '../http/request-facts.js'
import { readTraceContext, type TraceFields } from '../http/trace-context.js'
import type { Admission, QuotaSource, StepContext } from '../http/request-step.js'
import type { CompiledRoute } from '../table/compiled-route.js'
import type { CompiledUpstream } from '../table/compiled-upstream.js'
import type { RouteTable } from '../table/route-table.js'
import type { AttemptSpan } from '../telemetry/tracer.js'
import { FailureKind, type Outcome } from '../upstream/outcome.js'
import type { Target } from '../upstream/target.js'
import type { ClientConnection } from './client-connection.js'
import type { MirrorCall } from './mirror.js'
import type { PluginCall, ResponseHeadSink } from '../policy/plugins/plugin-call.js'
import { kExchange } from './exchange-key.js'
import { CLIENT_GONE, onPluginResponseDone, onUpstreamComplete, onUpstreamConnect, onUpstreamData, onUpstreamError, onUpstreamHeaders, sweepExchange } from './forward.js'
import { runRouteSteps } from './pipeline.js'
import type { ProxyState } from './proxy-state.js'
import { isGrpcRequest, sendGrpcRefusal } from './grpc-refusal.js'
import { sendRefusal } from './refusal.js'
import { grpcStatusOfRefusal, type UndiciTrailers } from '../upstream/grpc-status.js'
import { appendQuotaHeaders } from './response-headers.js'
import type { Watched } from './response-watch.js'

type WithExchange = ServerResponse & { [kExchange]?: Exchange }

/** Module-level listener: `this` is the response, the exchange hangs on it. No closure per request. */
function onResponseClose(this: WithExchange): void {
  this[kExchange]?.onClientClose()
}

export class Exchange extends RequestHeaderFacts implements Dispatcher.DispatchHandler, Watched, StepContext, Outcome, TraceFields, ResponseHeadSink {
  readonly state: ProxyState
  /** The table in force when the request arrived: a reload meanwhile does not change its route. */
  readonly table: RouteTable
  readonly req: IncomingMessage
  readonly res: ServerResponse
  /** Outcome.httpVersion: the client's, as node:http parsed it. */
  get httpVersion(): string {
    return this.req.httpVersion
  }

  readonly startMs: number
  /** The client connection: told when this request completes (client-connection.ts). */
  connection: ClientConnection | null = null
  /** The gateway's answer closes the connection: nothing after this request on it is processed. */
  closesConnection = false
  /** 80 random hex digits: trace id, span id, request id (src/http/ids.ts). */
  ids = ''
  requestId = ''
  // ---- the trace (src/http/trace-context.ts, trace-spans.ts): decided once, before the first attempt ----
  /** The trace id sent upstream: the caller's when continued, else digits [0, 32) of ids. '' until decided. */
  traceId = ''
  /** The caller's span id when the trace was continued, else null. The gateway's SERVER span id is ids [32, 48). */
  parentSpanId: string | null = null
  /** -1 not decided yet, 0 not sampled, 1 sampled (only then are spans made). */
  sampled = -1
  /** Sampled only: the CLIENT span of the upstream attempt in flight. */
  attemptSpan: AttemptSpan | null = null
  route: CompiledRoute | null = null
  upstream: CompiledUpstream | null = null
  canonicalPath = ''
  /** `?...` of the request target, '' when none. */
  query = ''
  params: Readonly<Record<string, string>> | null = null
  /** Node held the body for `Expect: 100-continue` (checkContinue): forward.ts writes the 100. */
  sendContinue = false
  /** Node handed the request over as an upgrade (websocket-upgrade.ts): it is the connection's last. */
  isUpgrade = false
  /** A WebSocket upgrade: the bytes the client sent after its handshake (often none); null otherwise. */
  upgradeHead: Buffer | null = null
  /** Index of the route step to run next (pipeline.ts). */
  stepIndex = 0
  /** StepContext.consumer: set by the route's auth step (src/policy/auth/). */
  consumer: string | null = null
  /** StepContext.pending: where a suspended step is. */
  pending = 0
  /** The RateLimit-* headers to send: the limiter with the lowest remaining quota (null: none reported). */
  quotaSource: QuotaSource | null = null
  quotaRemaining = 0
  quotaResetMs = 0
  /** StepContext.breakerAdmission, read by record.ts (Outcome). */
  breakerAdmission = 0
  /** StepContext.plugins: the request's run through its route's plugins (null: the route has none). */
  plugins: PluginCall | null = null
  #clientIp: string | null = null
  #admission: Admission | null = null

  // ---- forwarding (forward.ts) ----
  target: Target | null = null
  upstreamPath = ''
  upstreamHeaders: string[] | null = null
  hashValue: string | null = null
  tried: Target[] | null = null
  attemptStartMs = 0
  abortUpstream: ((err?: Error) => void) | null = null
  resumeRead: (() => void) | null = null
  nextTarget: Target | null = null
  discarding = false
  /** The mirror copy waiting for this request's body (mirror.ts); null when not mirrored or already sent. */
  mirrorCall: MirrorCall | null = null
  /** Holds a slot of the upstream's retry budget (retry-policy.ts) from its first retry to its end. */
  holdsRetry = false
  headersSent = false
  /** Response body bytes still to come when the upstream sent Content-Length, else -1. */
  bytesLeft = -1
  /** The whole response is handed to node:http (res.end() called); completion waits for undici. */
  responseEnded = false
  // timeouts.response, checked by state.watch's sweep (response-watch.ts says why not undici's timers).
  watchPrev: Watched | null = null
  watchNext: Watched | null = null
  /** performance.now() when the upstream last showed progress (the attempt began, a sweep saw activity). */
  activityMs = 0
  /** Upstream progress since the last sweep: response headers or a body chunk. */
  active = false
  /** Reading from the upstream is paused until the client drains: the wait is the client's, not the upstream's. */
  paused = false
  /** The response head held while an async onResponse plugin runs (forward.ts), else null. */
  pendingHead: string[] | null = null

  // ---- the Outcome (upstream/outcome.ts), read by record.ts ----
  status = 0
  /** The gateway-made response, when the gateway answered (refuse()). */
  refusal: Refusal | null = null
  failure: FailureKind = FailureKind.None
  causedByClient = false
  attempts = 0
  lastTarget: string | null = null
  bytesIn = 0
  bytesOut = 0
  durationMs = 0
  finished = false
  /** protocol: grpc upstreams: the grpc-status the response ended with; -1 none (forward.ts). */
  grpcStatus = -1
  /** A trailers-only gRPC response: its status headers, sent as trailers instead (forward.ts). */
  grpcTrailers: Record<string, string> | null = null

  constructor(state: ProxyState, req: IncomingMessage, res: ServerResponse) {
    super()
    this.state = state
    this.table = state.table
    this.req = req
    this.res = res
    this.startMs = performance.now()
  }

  /** Counts the request in flight and follows the client connection; first thing the pipeline does. */
  begin(): void {
    this.state.requestStarted()
    ;(this.res as WithExchange)[kExchange] = this
    this.res.on('close', onResponseClose) // `on`, not `once`: once() wraps the listener in a new closure
  }

  // An Outcome field computed when read: only the access log and the error log read it.
  get upstreamName(): string | null {
    return this.upstream === null ? null : this.upstream.name
  }

  // ---- StepContext ----

  clientIp(): string {
    return this.#clientIp ??= this.table.trustedProxies.clientIp(socketPeer(this.req.socket), this.forwardedFor)
  }

  hold(admission: Admission): void {
    this.#admission = admission
  }

  resume(): void {
    if (!this.finished) runRouteSteps(this)
  }

  reportQuota(source: QuotaSource, remaining: number, resetMs: number): void {
    if (this.quotaSource !== null && remaining >= this.quotaRemaining) return
    this.quotaSource = source
    this.quotaRemaining = remaining
    this.quotaResetMs = resetMs
  }

  refuse(refusal: Refusal, close: boolean, headers?: readonly string[], allow?: string): void {
    if (this.finished) return
    const res = this.res
    this.status = refusal.status
    this.refusal = refusal
    if (this.headersSent || res.headersSent) {
      this.closesConnection = true
      res.destroy()
    } else {
      // HTTP/2 has no Connection header (RFC 9113 §8.2.2: node:http2 throws on one); its framing leaves nothing
      // ambiguous to close the connection over, and draining sends GOAWAY instead (proxy-server.ts).
      const closing = (close || this.state.draining) && !this.isH2
      if (closing) this.closesConnection = true
      this.headersSent = true
      let extra = headers
      if (this.quotaSource !== null) {
        const out = headers === undefined ? [] : [...headers]
        appendQuotaHeaders(out, this.quotaSource, this.quotaRemaining, this.quotaResetMs)
        extra = out
      }
      if (this.wantsGrpcAnswer()) {
        // What the client got: HTTP 200 and the gRPC status (the log's `code` still names the refusal).
        this.status = 200
        this.grpcStatus = grpcStatusOfRefusal(refusal.status)
        this.bytesOut = sendGrpcRefusal(res, refusal, this.requestId, closing, extra)
      } else {
        this.bytesOut = sendRefusal(res, refusal, this.requestId, closing, allow, extra)
      }
    }
    this.complete()
  }

  respond(status: number, headers: readonly string[], body: Buffer): void {
    if (this.finished) return
    this.status = status
    this.headersSent = true
    const out = [...headers, 'x-request-id', this.requestId]
    if (this.quotaSource !== null) appendQuotaHeaders(out, this.quotaSource, this.quotaRemaining, this.quotaResetMs)
    if (this.state.draining && !this.isH2) {
      this.closesConnection = true
      out.push('connection', 'close')
    }
    this.res.writeHead(status, out)
    const isHead = this.req.method === 'HEAD'
    this.bytesOut = isHead ? 0 : body.length
    this.res.end(isHead ? undefined : body)
    this.complete()
  }

  /**
   * A gateway-made answer is a gRPC status (README "gRPC") on a route to a protocol: grpc upstream, and to a
   * gRPC client anywhere else (content-type application/grpc: a 404 is UNIMPLEMENTED to it, not JSON).
   */
  wantsGrpcAnswer(): boolean {
    const upstream = this.upstream ?? this.route?.upstream
    return upstream?.grpc === true || isGrpcRequest(this.req.rawHeaders)
  }

  useFallbackUpstream(): void {
    this.upstream = this.route!.breaker!.fallbackUpstream
  }

  useSplitUpstream(choice: number): void {
    this.upstream = this.route!.split!.upstreams[choice]!
  }

  // ---- undici DispatchHandler: forward.ts ----
  // undici's core speaks these callbacks natively. A handler with the newer onRequestStart/onResponse*
  // methods is wrapped per request in an UnwrapHandler and an UnwrapController, and its response headers
  // and trailers are parsed into objects: measured at ~1.8 us more undici CPU per request than the
  // thinnest forwarder (bench scenario small, CPU profile), so we take the raw callbacks.

  onConnect(abort: (err?: Error) => void): void {
    onUpstreamConnect(this, abort)
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    return onUpstreamHeaders(this, statusCode, rawHeaders, resume)
  }

  onData(chunk: Buffer): boolean {
    return onUpstreamData(this, chunk)
  }

  onComplete(trailers: UndiciTrailers): void {
    onUpstreamComplete(this, trailers)
  }

  onError(err: Error): void {
    onUpstreamError(this, err)
  }

  sweep(now: number): void {
    sweepExchange(this, now)
  }

  /** ResponseHeadSink: the async onResponse plugins are done (src/policy/plugins/plugin-call.ts). */
  pluginResponseDone(failed: boolean): void {
    onPluginResponseDone(this, failed)
  }

  // ---- the end ----

  onClientClose(): void {
    // Ended: the response is written whole and undici's onComplete is on its way (same parser run).
    if (this.finished || this.responseEnded) return
    // The client went away before the response ended: stop the upstream work too.
    const abort = this.abortUpstream
    if (abort !== null) abort(CLIENT_GONE)
    if (this.status === 0) this.status = 499
    this.causedByClient = true
    this.complete()
  }

  /** Ends the request once: releases what it holds and tells record.ts. */
  complete(): void {
    if (this.finished) return
    this.finished = true
    const state = this.state
    state.watch.remove(this)
    const admission = this.#admission
    if (admission !== null) {
      this.#admission = null
      admission.release()
    }
    if (this.mirrorCall !== null) {
      this.mirrorCall.abandon()
      this.mirrorCall = null
    }
    if (this.holdsRetry) {
      this.holdsRetry = false
      this.upstream!.retry.releaseRetry()
    }
    this.durationMs = performance.now() - this.startMs
    // A request answered before any forward has not read its trace context yet; the logs want its trace id.
    if (this.traceId === '' && this.ids !== '') readTraceContext(this, this.ids)
    state.recorder.record(this.route, this.req.method ?? 'GET', this)
    // After the record: a plugin's onLog sees the request as the logs do, and cannot delay them.
    const plugins = this.plugins
    if (plugins !== null && plugins.hasOnLog) plugins.runLog(this.status, this.durationMs)
    state.requestFinished()
    // Last: the next pipelined request of the connection may start from here.
    if (this.connection !== null) this.connection.done(this)
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
  ex.causedByClient = true
  ex.refuse(refusal, true) // first: once finished, the abort's onError answers nothing more
  if (abort !== null) abort(CLIENT_GONE)
  return true
}
