// The span exporter behind SpanTracer (tracer.ts): OpenTelemetry's sdk-trace-base with the OTLP/HTTP
// (protobuf) exporter, or the console exporter. Imported lazily by the gateway (src/lifecycle/gateway.ts)
// only when tracing.exporter is not `none`, like etcd3 only with an etcd: section.
//
// Why sdk-trace-base and not sdk-node: sdk-node is sdk-trace-base plus metrics, logs, auto-instrumentation
// hooks, resource detectors and every OTLP transport; the gateway makes its spans itself (no
// instrumentation library patches node:http or undici, which would add a span object per request). README
// "Tracing" gives the RSS figures.
//
// The SDK makes the spans, with the ids that went on the wire: the request path decides and writes the
// ids (src/proxy/trace-spans.ts), and WireIds hands exactly those to the SDK's tracer, which asks its
// IdGenerator for a span id (and a trace id for a root span) on every startSpan. The sampler is always-on
// because startSpan is called only for requests already sampled.
//
// The queue is the SDK's BatchSpanProcessor: bounded (maxQueueSize), it drops a span when full instead of
// blocking or growing. It reports each span it gave up on (queue full, or an export that failed) through
// its self-observability meter (otel.sdk.processor.span.processed with error.type): that is where
// tollgate_trace_spans_dropped_total is counted.
import {
  ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createNoopMeter, trace,
  type Attributes, type Context, type Counter, type Meter, type MeterProvider, type MetricOptions, type Span,
} from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ConsoleSpanExporter,
  type BufferConfig, type IdGenerator, type SpanExporter,
} from '@opentelemetry/sdk-trace-base'
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_REQUEST_RESEND_COUNT, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions'
import type { Config } from '../config/schema.js'
import type { AttemptFacts, AttemptSpan, ServerSpanFacts, SpanIds, SpanTracer } from './tracer.js'

export interface OtelTracerOptions {
  /** Spans given up on (queue full, export failed): tollgate_trace_spans_dropped_total. */
  readonly onDropped: (count: number) => void
  /** Spans held for export at most; beyond, new spans are dropped. Default 2048 (the SDK's default). */
  readonly maxQueueSize?: number
  /** How long a span may wait before its batch is sent. Default 1000 ms. */
  readonly scheduledDelayMs?: number
  /** Timeout of one export request. Default 10 s. */
  readonly exportTimeoutMs?: number
  /** Where the console exporter writes (tests). Default: the SDK's console.dir. */
  readonly consoleExporter?: SpanExporter
}

const STANDARD_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'])
// The SDK processor's own counter, in its self-observability (semantic conventions "otel.sdk.*" metrics).
const SPANS_PROCESSED = 'otel.sdk.processor.span.processed'

/** The ids the next startSpan takes: set right before it (single-threaded, nothing runs in between). */
class WireIds implements IdGenerator {
  traceId = ''
  spanId = ''
  generateTraceId(): string {
    return this.traceId
  }
  generateSpanId(): string {
    return this.spanId
  }
}

/** A meter that turns the processor's "span processed with error.type" reports into a drop count. */
function dropCountingMeterProvider(onDropped: (count: number) => void): MeterProvider {
  const noop = createNoopMeter()
  const dropped: Counter = {
    add(value: number, attributes?: Attributes): void {
      if (attributes?.[ATTR_ERROR_TYPE] !== undefined) onDropped(value)
    },
  }
  const meter: Meter = Object.assign(Object.create(noop) as Meter, {
    createCounter(name: string, options?: MetricOptions): Counter {
      return name === SPANS_PROCESSED ? dropped : noop.createCounter(name, options)
    },
  })
  return { getMeter: () => meter }
}

class AttemptHandle implements AttemptSpan {
  #status = 0
  constructor(readonly span: Span) {}

  responded(status: number): void {
    this.#status = status
    this.span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
  }

  end(endMs: number, errorType: string | null): void {
    // semconv: a CLIENT span is an error for any status >= 400, or when no response came.
    const error = errorType ?? (this.#status >= 400 ? String(this.#status) : null)
    if (error !== null) {
      this.span.setAttribute(ATTR_ERROR_TYPE, error)
      this.span.setStatus({ code: SpanStatusCode.ERROR })
    }
    this.span.end(epochMs(endMs))
  }
}

export class OtelTracer implements SpanTracer {
  readonly #provider: BasicTracerProvider
  readonly #tracer: ReturnType<BasicTracerProvider['getTracer']>
  readonly #ids = new WireIds()

  constructor(settings: Config['tracing'], options: OtelTracerOptions) {
    const exporter: SpanExporter = settings.exporter === 'console'
      ? options.consoleExporter ?? new ConsoleSpanExporter()
      : new OTLPTraceExporter({ url: settings.endpoint, timeoutMillis: options.exportTimeoutMs ?? 10_000 })
    const buffer: BufferConfig & { selfObsMeterProvider: MeterProvider } = {
      maxQueueSize: options.maxQueueSize ?? 2048,
      maxExportBatchSize: Math.min(512, options.maxQueueSize ?? 2048),
      scheduledDelayMillis: options.scheduledDelayMs ?? 1000,
      exportTimeoutMillis: options.exportTimeoutMs ?? 10_000,
      selfObsMeterProvider: dropCountingMeterProvider(options.onDropped),
    }
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.serviceName }),
      sampler: new AlwaysOnSampler(),
      idGenerator: this.#ids,
      spanProcessors: [new BatchSpanProcessor(exporter, buffer)],
    })
    this.#tracer = this.#provider.getTracer('tollgate')
  }

  startAttempt(f: AttemptFacts): AttemptSpan {
    const attributes: Attributes = {
      [ATTR_SERVER_ADDRESS]: hostOf(f.target),
      [ATTR_SERVER_PORT]: portOf(f.target),
      [ATTR_URL_FULL]: f.origin + f.path,
      [ATTR_HTTP_REQUEST_RESEND_COUNT]: f.resendCount,
      'tollgate.upstream': f.upstream,
      'tollgate.target': f.target,
    }
    const name = setMethod(attributes, f.method)
    const span = this.#start(f, name, SpanKind.CLIENT, f.startMs, attributes)
    return new AttemptHandle(span)
  }

  recordServer(f: ServerSpanFacts): void {
    const attributes: Attributes = {
      [ATTR_URL_SCHEME]: f.scheme ?? 'http',
      [ATTR_URL_PATH]: f.path,
      'tollgate.request_id': f.requestId,
    }
    if (f.clientAddress !== '') attributes[ATTR_CLIENT_ADDRESS] = f.clientAddress
    if (f.status > 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = f.status
    if (f.host !== null) {
      attributes[ATTR_SERVER_ADDRESS] = hostOf(f.host)
      const port = portOf(f.host)
      if (port > 0) attributes[ATTR_SERVER_PORT] = port
    }
    if (f.routeTemplate !== null) attributes[ATTR_HTTP_ROUTE] = f.routeTemplate
    if (f.routeId !== null) attributes['tollgate.route'] = f.routeId
    const method = setMethod(attributes, f.method)
    // semconv: `{method} {http.route}`, or the method alone when no route matched.
    const name = f.routeTemplate === null ? method : method + ' ' + f.routeTemplate
    const span = this.#start(f, name, SpanKind.SERVER, f.startMs, attributes)
    // semconv: a SERVER span is an error for 5xx only (4xx is the client's).
    const error = f.errorType ?? (f.status >= 500 ? String(f.status) : null)
    if (error !== null) {
      span.setAttribute(ATTR_ERROR_TYPE, error)
      if (f.status >= 500 || f.status === 0) span.setStatus({ code: SpanStatusCode.ERROR })
    }
    span.end(epochMs(f.endMs))
  }

  #start(ids: SpanIds, name: string, kind: SpanKind, startMs: number, attributes: Attributes): Span {
    this.#ids.traceId = ids.traceId
    this.#ids.spanId = ids.spanId
    return this.#tracer.startSpan(name, { kind, startTime: epochMs(startMs), attributes }, parentContext(ids))
  }

  close(): Promise<void> {
    return this.#provider.shutdown()
  }
}

/**
 * performance.now() ms -> epoch ms, one timeOrigin for every span. Given performance.now() values, the SDK
 * would correct each span by its own Date.now() reading, and spans made apart could disagree by a
 * millisecond: a CLIENT span could seem to start before its SERVER span.
 */
function epochMs(ms: number): number {
  return TIME_ORIGIN + ms
}
const TIME_ORIGIN = performance.timeOrigin

/** The parent as an OpenTelemetry context: the caller's span (remote) or the gateway's SERVER span. */
function parentContext(ids: SpanIds): Context {
  if (ids.parentSpanId === null) return ROOT_CONTEXT
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: ids.traceId,
    spanId: ids.parentSpanId,
    traceFlags: TraceFlags.SAMPLED,
    isRemote: ids.parentIsRemote,
    traceState: ids.tracestate === null ? undefined : new TraceState(ids.tracestate),
  })
}

/** semconv http.request.method: one of the standard methods, else `_OTHER` with the original kept. Returns the span name's method. */
function setMethod(attributes: Attributes, method: string): string {
  if (STANDARD_METHODS.has(method)) {
    attributes[ATTR_HTTP_REQUEST_METHOD] = method
    return method
  }
  attributes[ATTR_HTTP_REQUEST_METHOD] = '_OTHER'
  attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = method
  return 'HTTP'
}

/** `host` of `host:port` or `[v6]:port`. */
function hostOf(hostPort: string): string {
  const colon = hostPort.lastIndexOf(':')
  if (colon < 0 || hostPort.indexOf(']', colon) >= 0) return hostPort
  return hostPort.slice(0, colon)
}

function portOf(hostPort: string): number {
  const colon = hostPort.lastIndexOf(':')
  if (colon < 0 || hostPort.indexOf(']', colon) >= 0) return 0
  const port = Number(hostPort.slice(colon + 1))
  return Number.isInteger(port) ? port : 0
}
