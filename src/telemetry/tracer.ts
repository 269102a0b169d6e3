// What the request path hands the span exporter, for sampled requests only. The OpenTelemetry SDK behind it
// (otel-tracer.ts) is loaded only when tracing.exporter is not `none`: the request path imports the types
// of this file and nothing else, so a gateway without tracing never loads the SDK.

/** The ids of a span as they went on the wire (hex, as in traceparent). */
export interface SpanIds {
  readonly traceId: string
  readonly spanId: string
  /** The parent span (null: a root span), and whether it lives in another process (the caller). */
  readonly parentSpanId: string | null
  readonly parentIsRemote: boolean
  /** The incoming tracestate, when valid (src/http/trace-context.ts). */
  readonly tracestate: string | null
}

/** The SERVER span of one request: what the gateway did for the client. Times are performance.now() ms. */
export interface ServerSpanFacts extends SpanIds {
  readonly method: string
  /** The matched route's path template (`/api/users/:id`); null when no route matched. */
  readonly routeTemplate: string | null
  readonly routeId: string | null
  /** The canonical path, without the query string (never recorded). */
  readonly path: string
  readonly host: string | null
  /** The proxy listener's scheme (url.scheme); http when absent. */
  readonly scheme?: 'http' | 'https'
  /** '' when the client's connection was gone before the address was read. */
  readonly clientAddress: string
  readonly status: number
  /** A low-cardinality reason when the request failed (`UPSTREAM_TIMEOUT`, `500`...), else null. */
  readonly errorType: string | null
  readonly requestId: string
  readonly startMs: number
  readonly endMs: number
}

/** The CLIENT span of one upstream attempt, as it starts. */
export interface AttemptFacts extends SpanIds {
  readonly method: string
  readonly upstream: string
  /** `host:port` of the target. */
  readonly target: string
  /** The target's origin (`http://10.0.0.1:8080`) and the path sent, without the query string. */
  readonly origin: string
  readonly path: string
  /** Attempts before this one (semconv http.request.resend_count). */
  readonly resendCount: number
  readonly startMs: number
}

/** A CLIENT span in flight. */
export interface AttemptSpan {
  /** The response headers came with `status` (a retried attempt's too). */
  responded(status: number): void
  /** The attempt is over: its response read, discarded, or failed (`errorType`: the failure's code). */
  end(endMs: number, errorType: string | null): void
}

export interface SpanTracer {
  /** Starts the CLIENT span of an upstream attempt. */
  startAttempt(facts: AttemptFacts): AttemptSpan
  /** Records a request's SERVER span, started and ended at the times given. */
  recordServer(facts: ServerSpanFacts): void
  /** Exports what is queued (bounded by a timeout), then stops. */
  close(): Promise<void>
}
