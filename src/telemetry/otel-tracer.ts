// The span exporter behind SpanTracer (tracer.ts): OpenTelemetry's sdk-trace-base with the OTLP/HTTP
// (protobuf) exporter, or the console exporter. Imported lazily by the gateway (src/lifecycle/gateway.ts)
// only when tracing.exporter is not `none`, like etcd3 only with an etcd: section.
//
// Why sdk-trace-base and not sdk-node: sdk-node is sdk-trace-base plus metrics, logs, auto-instrumentation
// hooks, resource detectors and every OTLP transport; the gateway makes its spans itself (no
// instrumentation library patches node:http or undici, which would add a span object per request). README
// "Tracing" gives the RSS figures.
//
// The spans are made here, not by the SDK's tracer, with the ids that went on the wire (the request path
// decides and writes them, src/proxy/trace-spans.ts), and handed to the SDK's BatchSpanProcessor, which
// queues them and gives them to the SDK's OTLP (or console) exporter, as it does the SDK's own ended spans.
// The request path hands over facts, not spans: a sampled request's SERVER facts and its ended attempts
// wait in a short list, and a flush (every flushMs, or at once when the list holds a batch) makes their
// spans in one loop. Why, measured on bench scenario `tracing` (sampleRatio 0.01; --cpu-prof of the
// gateway, wrk -t1 -c32, share of the gateway's CPU under these frames): made one at a time on the request
// path by the SDK's tracer (startSpan, its context and Span objects, span.end), 1 request in 100 ran that
// code cold: 2.0% of the CPU, about 80 µs per sampled request, plus 0.7% exporting. The SDK's spans made in
// the flush instead: 0.65% in the flush. These plain spans made in the flush: 0.2%, and about 1.1% in all
// with the export, which is now the largest part (the OTLP transformer's protobuf writer).
//
// The queue is the SDK's BatchSpanProcessor: bounded (maxQueueSize), it drops a span when full instead of
// blocking or growing. It reports each span it gave up on (queue full, or an export that failed) through
// its self-observability meter (otel.sdk.processor.span.processed with error.type): that is where
// tollgate_trace_spans_dropped_total is counted.
import { performance } from 'node:perf_hooks'
import {
  SpanKind, SpanStatusCode, TraceFlags, createNoopMeter,
  type Attributes, type Counter, type HrTime, type Meter, type MeterProvider, type MetricOptions, type SpanContext, type SpanStatus,
} from '@opentelemetry/api'
import { TraceState, hrTimeDuration, millisToHrTime, type InstrumentationScope } from '@opentelemetry/core'
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import {
  BatchSpanProcessor, ConsoleSpanExporter,
  type BufferConfig, type ReadableSpan, type SpanExporter, type SpanProcessor, type TimedEvent,
} from '@opentelemetry/sdk-trace-base'
import {
  ATTR_CLIENT_ADDRESS, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_REQUEST_RESEND_COUNT, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_HTTP_ROUTE, ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT, ATTR_SERVICE_NAME, ATTR_URL_FULL, ATTR_URL_PATH, ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions'
import type { Config } from '../config/schema.js'
import { OtlpHttpExporter } from './otlp-exporter.js'
import type { AttemptFacts, AttemptSpan, ServerSpanFacts, SpanIds, SpanTracer } from './tracer.js'

export interface OtelTracerOptions {
  /** Spans given up on (queue full, export failed): tollgate_trace_spans_dropped_total. */
  readonly onDropped: (count: number) => void
  /** Spans held for export at most; beyond, new spans are dropped. Default 2048 (the SDK's default). */
  readonly maxQueueSize?: number
  /** How long a span may wait before its batch is sent. Default 1000 ms. */
  readonly scheduledDelayMs?: number
  /** How long finished spans' facts may wait before their SDK spans are made. Default scheduledDelayMs / 2. */
  readonly flushMs?: number
  /** Timeout of one export request. Default 10 s. */
  readonly exportTimeoutMs?: number
  /** Where the console exporter writes (tests). Default: the SDK's console.dir. */
  readonly consoleExporter?: SpanExporter
}

const STANDARD_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'])
// The SDK processor's own counter, in its self-observability (semantic conventions "otel.sdk.*" metrics).
const SPANS_PROCESSED = 'otel.sdk.processor.span.processed'

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

/** A CLIENT span in flight: its facts until it ends, when it joins the tracer's list. */
class AttemptHandle implements AttemptSpan {
  status = 0
  endMs = 0
  errorType: string | null = null
  constructor(readonly facts: AttemptFacts, readonly tracer: OtelTracer) {}

  responded(status: number): void {
    this.status = status
  }

  end(endMs: number, errorType: string | null): void {
    this.endMs = endMs
    this.errorType = errorType
    this.tracer.hold(this)
  }
}

const SCOPE: InstrumentationScope = { name: 'tollgate' }
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET })
const ERROR: SpanStatus = Object.freeze({ code: SpanStatusCode.ERROR })
const NO_LINKS: never[] = []
const NO_EVENTS: TimedEvent[] = []

/** What a span says beyond its ids and times: its name, attributes and status. */
interface SpanDetail {
  readonly name: string
  readonly attributes: Attributes
  readonly status: SpanStatus
}

/**
 * A finished span as the SDK's processors and exporters read it (the SDK's own Span, once ended, is one too),
 * made of the request's facts when it is read, not when it is handed over. A span waits up to about a second
 * before it is exported (the held list, then the processor's queue), longer than two scavenges, so whatever
 * it holds is promoted to the old generation. Made at export, in the exporter's serialization slices
 * (otlp-exporter.ts), its attribute map, times and contexts die young; only this small object and the facts
 * wait. The processor reads spanContext() once (its sampled flag); the OTLP transformer reads each field once,
 * parentSpanContext three times (kept after the first). Bench scenario full-chain's config, gateway alone on
 * core 1, wrk -t1 -c50, timed by a --require wrapper around the processor's onEnd and the serializer: a flush
 * of 64 spans p50 0.26 -> 0.08 ms, p90 0.54 -> 0.17 ms (with the first serialization slice no longer run inside
 * it, otlp-exporter.ts); a 32-span slice p50 0.16 -> 0.23 ms, as the attributes are made there now; promoted
 * per scavenge 34-35 -> 33 KB (--trace-gc-nvp); CPU per request unchanged (+0.5 µs, 12 alternating pairs).
 */
class FinishedSpan implements ReadableSpan {
  readonly #source: ServerSpanFacts | AttemptHandle
  #detail: SpanDetail | null = null
  #parent: SpanContext | undefined | null = null

  constructor(source: ServerSpanFacts | AttemptHandle, readonly kind: SpanKind, readonly resource: Resource) {
    this.#source = source
  }

  get name(): string {
    return this.#made().name
  }

  get attributes(): Attributes {
    return this.#made().attributes
  }

  get status(): SpanStatus {
    return this.#made().status
  }

  get parentSpanContext(): SpanContext | undefined {
    if (this.#parent === null) this.#parent = parentSpanContext(this.#ids())
    return this.#parent
  }

  get startTime(): HrTime {
    return millisToHrTime(epochMs(this.#ids().startMs))
  }

  get endTime(): HrTime {
    return millisToHrTime(epochMs(Math.max(this.#ids().startMs, this.#source.endMs)))
  }

  get duration(): HrTime {
    return hrTimeDuration(this.startTime, this.endTime)
  }

  get links(): never[] { return NO_LINKS }
  get events(): TimedEvent[] { return NO_EVENTS }
  get ended(): boolean { return true }
  get droppedAttributesCount(): number { return 0 }
  get droppedEventsCount(): number { return 0 }
  get droppedLinksCount(): number { return 0 }
  get instrumentationScope(): InstrumentationScope { return SCOPE }

  spanContext(): SpanContext {
    const ids = this.#ids()
    // As the SDK's tracer does: a child span carries its parent's tracestate; a root span has none.
    const traceState = this.#parent != null ? this.#parent.traceState : ids.parentSpanId === null || ids.tracestate === null ? undefined : new TraceState(ids.tracestate)
    return { traceId: ids.traceId, spanId: ids.spanId, traceFlags: TraceFlags.SAMPLED, traceState }
  }

  #ids(): SpanIds & { readonly startMs: number } {
    const s = this.#source
    return s instanceof AttemptHandle ? s.facts : s
  }

  #made(): SpanDetail {
    if (this.#detail === null) {
      const s = this.#source
      this.#detail = s instanceof AttemptHandle ? attemptDetail(s) : serverDetail(s)
    }
    return this.#detail
  }
}

function attemptDetail(h: AttemptHandle): SpanDetail {
  const f = h.facts
  const attributes: Attributes = {
    [ATTR_SERVER_ADDRESS]: hostOf(f.target),
    [ATTR_SERVER_PORT]: portOf(f.target),
    [ATTR_URL_FULL]: f.origin + f.path,
    [ATTR_HTTP_REQUEST_RESEND_COUNT]: f.resendCount,
    'tollgate.upstream': f.upstream,
    'tollgate.target': f.target,
  }
  if (h.status > 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = h.status
  const name = setMethod(attributes, f.method)
  // semconv: a CLIENT span is an error for any status >= 400, or when no response came.
  const error = h.errorType ?? (h.status >= 400 ? String(h.status) : null)
  if (error !== null) attributes[ATTR_ERROR_TYPE] = error
  return { name, attributes, status: error === null ? UNSET : ERROR }
}

function serverDetail(f: ServerSpanFacts): SpanDetail {
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
  // semconv: a SERVER span is an error for 5xx only (4xx is the client's).
  const error = f.errorType ?? (f.status >= 500 ? String(f.status) : null)
  if (error !== null) attributes[ATTR_ERROR_TYPE] = error
  const failed = error !== null && (f.status >= 500 || f.status === 0)
  return { name, attributes, status: failed ? ERROR : UNSET }
}

export class OtelTracer implements SpanTracer {
  readonly #processor: SpanProcessor
  readonly #resource: Resource
  /** Finished spans not handed to the processor yet: SERVER facts and ended attempts. */
  #held: (ServerSpanFacts | AttemptHandle)[] = []
  readonly #batch: number
  readonly #flushMs: number
  #timer: NodeJS.Timeout | null = null

  constructor(settings: Config['tracing'], options: OtelTracerOptions) {
    const exporter: SpanExporter = settings.exporter === 'console'
      ? options.consoleExporter ?? new ConsoleSpanExporter()
      : new OtlpHttpExporter(settings.endpoint, options.exportTimeoutMs ?? 10_000)
    const scheduledDelayMillis = options.scheduledDelayMs ?? 1000
    // Small slices of work: spans are made 64 at a time and exported 128 at a time (the SDK's default is
    // 512). Both run on the gateway's thread between requests, and each batch is one stall of every request
    // in flight: at 1% sampling a batch is about all of a second's spans, serialized by code that runs once a
    // second and so is never warm. Bench scenario full-chain's config (gateway alone on core 1, wrk -t1 -c50
    // for 5 s, 12 alternating pairs against 512/512): p99 lower in 9 of 12 pairs, by 1.2 ms at the median of
    // the differences (medians 11.4 -> 9.4 ms), req/s unchanged within the VM's noise; 32/64 did no better.
    // The price is more export requests when much is sampled (about 4 per 512 spans instead of 1). The OTLP
    // exporter also serializes an export 32 spans per turn of the event loop (otlp-exporter.ts).
    const queueSize = options.maxQueueSize ?? 2048
    this.#batch = Math.min(64, queueSize)
    this.#flushMs = options.flushMs ?? Math.max(1, Math.floor(scheduledDelayMillis / 2))
    const buffer: BufferConfig & { selfObsMeterProvider: MeterProvider } = {
      maxQueueSize: queueSize,
      maxExportBatchSize: Math.min(128, queueSize),
      scheduledDelayMillis,
      exportTimeoutMillis: options.exportTimeoutMs ?? 10_000,
      selfObsMeterProvider: dropCountingMeterProvider(options.onDropped),
    }
    this.#processor = new BatchSpanProcessor(exporter, buffer)
    this.#resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.serviceName })
  }

  startAttempt(f: AttemptFacts): AttemptSpan {
    return new AttemptHandle(f, this)
  }

  recordServer(f: ServerSpanFacts): void {
    this.hold(f)
  }

  /**
   * A finished span joins the list. The list never holds more than a batch: the span that fills it hands
   * every span to the processor at once, whose bounded queue takes them or drops and counts them.
   */
  hold(span: ServerSpanFacts | AttemptHandle): void {
    this.#held.push(span)
    if (this.#held.length >= this.#batch) this.#flush()
    else if (this.#timer === null) {
      this.#timer = setTimeout(this.#onTimer, this.#flushMs)
      this.#timer.unref()
    }
  }

  readonly #onTimer = (): void => {
    this.#timer = null
    this.#flush()
  }

  #flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
    const held = this.#held
    this.#held = []
    for (const span of held) this.#processor.onEnd(new FinishedSpan(span, span instanceof AttemptHandle ? SpanKind.CLIENT : SpanKind.SERVER, this.#resource))
  }

  /** Hands the held spans over, exports what is queued (bounded by a timeout), then stops. */
  close(): Promise<void> {
    this.#flush()
    return this.#processor.shutdown()
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

/** The parent: the caller's span (remote) or the gateway's SERVER span; undefined for a root span. */
function parentSpanContext(ids: SpanIds): SpanContext | undefined {
  if (ids.parentSpanId === null) return undefined
  return {
    traceId: ids.traceId,
    spanId: ids.parentSpanId,
    traceFlags: TraceFlags.SAMPLED,
    isRemote: ids.parentIsRemote,
    traceState: ids.tracestate === null ? undefined : new TraceState(ids.tracestate),
  }
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
