// The request's trace: the sampling decision, the traceparent sent upstream, a CLIENT span per upstream
// attempt and the SERVER span at the end (README "Tracing"). Hot path.
//
// An unsampled request costs what propagation alone costs: the incoming traceparent read once, one
// comparison of Math.random() with the ratio, one traceparent string; the upstream sees the gateway's
// SERVER span id (digits [32, 48) of the request's random ids) as its parent and the sampled flag 00. No
// span object, attribute map or exporter work. A sampled request makes SDK spans with the ids that went on
// the wire: the SERVER span's id is that same [32, 48), and each attempt gets a CLIENT span with a fresh
// id, written into that attempt's traceparent so the upstream's work hangs under it.
//
// Without a tracer (tracing.exporter: none) the gateway records nothing and passes the caller's sampled
// flag on: a valid incoming context is still continued with the gateway's span id as the new parent.
import { performance } from 'node:perf_hooks'
import { randomIds } from '../http/ids.js'
import { decideSampled, readTraceContext, traceparentValue } from '../http/trace-context.js'
import type { CompiledRoute } from '../table/compiled-route.js'
import type { Outcome } from '../upstream/outcome.js'
import type { Target } from '../upstream/target.js'
import type { Exchange } from './exchange.js'
import type { ProxyState } from './proxy-state.js'
import type { OutcomeSink } from './record.js'

/** Reads the incoming context and decides the request's sampling, once. */
function decide(ex: Exchange, route: CompiledRoute | null): void {
  const incoming = readTraceContext(ex, ex.ids)
  if (ex.state.tracer === null) {
    ex.sampled = incoming === 1 ? 1 : 0
    return
  }
  if (route !== null) {
    const t = route.tracing
    ex.sampled = decideSampled(incoming, t.parentBased, t.sampleRatio)
  } else {
    const t = ex.table.config.tracing
    ex.sampled = decideSampled(incoming, t.parentBased, t.sampleRatio)
  }
}

/** The traceparent of the upstream request (forward.ts, before the first attempt); decides the trace. */
export function upstreamTraceparent(ex: Exchange): string {
  decide(ex, ex.route)
  return traceparentValue(ex.traceId, ex.ids.slice(32, 48), ex.sampled)
}

/**
 * A sampled request's attempt begins: a CLIENT span, child of the SERVER span, whose id replaces the
 * parent id of the traceparent in `headers` (undici's flat list, sent as is by this attempt).
 */
export function startAttemptSpan(ex: Exchange, target: Target, headers: string[]): void {
  const tracer = ex.state.tracer
  if (tracer === null) return // tracing was turned off by a reload while the request was in flight
  const spanId = randomIds().slice(32, 48)
  const at = headers.lastIndexOf('traceparent') // the gateway's own: the client's was not copied
  headers[at + 1] = traceparentValue(ex.traceId, spanId, 1)
  const q = ex.upstreamPath.indexOf('?')
  ex.attemptSpan = tracer.startAttempt({
    traceId: ex.traceId,
    spanId,
    parentSpanId: ex.ids.slice(32, 48),
    parentIsRemote: false,
    tracestate: ex.tracestate,
    method: ex.req.method ?? 'GET',
    upstream: ex.upstream!.name,
    target: target.hostPort,
    origin: target.origin,
    path: q < 0 ? ex.upstreamPath : ex.upstreamPath.slice(0, q),
    resendCount: ex.attempts - 1,
    startMs: ex.attemptStartMs,
  })
}

/** The attempt in flight is over (forward.ts): its CLIENT span ends. `errorType`: why it failed, else null. */
export function endAttemptSpan(ex: Exchange, errorType: string | null): void {
  const span = ex.attemptSpan
  if (span === null) return
  ex.attemptSpan = null
  span.end(performance.now(), errorType)
}

/** A failure's code for error.type: undici's or the gateway's error code, else `_OTHER` (semconv). */
export function errorTypeOf(err: Error): string {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? code : '_OTHER'
}

/**
 * The SERVER span, from the end-of-request record (record.ts). A request answered before forwarding
 * (404, 429, ...) is decided here. Unsampled: one field read.
 */
export class TraceSink implements OutcomeSink {
  readonly #state: ProxyState

  constructor(state: ProxyState) {
    this.#state = state
  }

  record(route: CompiledRoute | null, method: string, outcome: Outcome): void {
    const tracer = this.#state.tracer
    if (tracer === null) return
    const ex = outcome as Exchange // the exchange is the outcome (exchange.ts)
    if (ex.sampled === -1) {
      if (ex.ids === '') return
      decide(ex, route)
    }
    if (ex.sampled !== 1) return
    const status = ex.status
    const failed = status >= 500 || status === 0
    tracer.recordServer({
      traceId: ex.traceId,
      spanId: ex.ids.slice(32, 48),
      parentSpanId: ex.parentSpanId,
      parentIsRemote: true,
      tracestate: ex.tracestate,
      method,
      routeTemplate: route === null ? null : route.tracing.template,
      routeId: route === null ? null : route.id,
      path: ex.canonicalPath,
      host: ex.host ?? null,
      scheme: ex.state.scheme,
      // node:http detaches the socket from a request whose client went away: no address to tell then.
      clientAddress: ex.req.socket === null ? '' : ex.clientIp(),
      status,
      errorType: failed ? ex.refusal?.code ?? String(status) : null,
      requestId: ex.requestId,
      startMs: ex.startMs,
      endMs: ex.startMs + ex.durationMs,
    })
  }
}
