// tracing.exporter: otlp — OTLP/HTTP protobuf export of finished spans (README "Tracing", "Export"), loaded
// with the SDK only when tracing is on. The SDK's serializer makes the body (ProtobufTraceSerializer, the one
// OpenTelemetry's own OTLP proto exporter uses); undici, the client the gateway sends every request with,
// sends it.
//
// Why not OpenTelemetry's OTLPTraceExporter: it sends through node:http's client, whose ClientRequest,
// client-side parser and sockets reach the same node:net and stream functions as the proxy's own traffic.
// At tracing.sampleRatio 0.01 one export a second was enough to throw the gateway's hottest optimized
// functions (onStreamRead, writeOrBuffer, Socket._read, Writable.cork, ...) back to the interpreter with
// "wrong map": 27 deoptimizations in 10 s of load, against 1 with sampleRatio 0 (node --trace-deopt, bench
// scenario tracing's config, wrk -t1 -c32, gateway alone on its core). In runs alternating the two gateways
// (core config against sampleRatio 0.01, the idle one stopped), the gateway with spans cost 10.7 µs more
// CPU per request (median of 8 pairs), although its tracing code took about 1% of its profile. Through
// undici the export takes the paths the upstream requests keep hot.
//
// And through undici's dispatch() with a handler of its own (ExportTry), as the proxy forwards, not its
// request() API: request() hands the response over as a stream.Readable (undici's BodyReadable) and takes an
// AbortSignal, and the Readable functions that every client request's IncomingMessage runs through (push,
// read, flow, emitReadable_, endReadableNT) then met a second kind of object once a second. With request():
// 12 deoptimizations ("wrong map", those functions and onStreamRead) in 20 s of load after 10 s of warm-up,
// against 4 without tracing (node --trace-deopt, sampleRatio 0.01, wrk -t1 -c32), and the gateway with spans
// cost a median 5.1 us more CPU per request than the core config in 16 alternating pairs.
import { performance } from 'node:perf_hooks'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { createRequire } from 'node:module'
import type { Dispatcher, Pool as UndiciPool } from 'undici'

// undici's Pool alone, as src/upstream/undici-pool.ts loads it (the same module, so the same classes the
// proxy's pools are made of): the package index would also load fetch, WebSocket and the cache, about 5 MiB
// more of idle RSS measured with tracing on.
const require = createRequire(import.meta.url)
const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool

const HEADERS = ['content-type', 'application/x-protobuf']
const RETRY_AFTER = 'retry-after'

/** Statuses worth another try (as the OTLP specification lists them); anything else is final. */
const RETRYABLE = new Set([429, 502, 503, 504])
const FIRST_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 5000

export class OtlpHttpExporter implements SpanExporter {
  readonly #pool: UndiciPool
  readonly #path: string
  readonly #timeoutMs: number
  readonly #pending = new Set<Promise<void>>()
  #isShutdown = false

  /** `timeoutMs`: the most one export may take, its retries included. */
  constructor(endpoint: string, timeoutMs: number) {
    const url = new URL(endpoint)
    this.#path = url.pathname + url.search
    this.#timeoutMs = timeoutMs
    this.#pool = new Pool(url.origin, { connections: 2, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.#isShutdown) return done({ code: ExportResultCode.FAILED, error: new Error('the OTLP exporter is shut down') })
    const sent = serializeInSlices(spans).then((body) => this.#send(body)).then(
      () => done({ code: ExportResultCode.SUCCESS }),
      (error: unknown) => done({ code: ExportResultCode.FAILED, error: error instanceof Error ? error : new Error(String(error)) }),
    )
    this.#pending.add(sent)
    void sent.finally(() => this.#pending.delete(sent))
  }

  /** One POST, tried again after a network error or a retryable status while the export's time lasts. */
  async #send(body: Uint8Array): Promise<void> {
    const deadline = performance.now() + this.#timeoutMs
    let backoffMs = FIRST_BACKOFF_MS
    for (;;) {
      const retry = await this.#post(body, deadline)
      if (retry === null) return
      // Jitter of ±20% keeps a fleet of gateways from retrying in step.
      const waitMs = retry.afterMs >= 0 ? retry.afterMs : backoffMs * (0.8 + 0.4 * Math.random())
      if (performance.now() + waitMs >= deadline) throw retry.failure
      await new Promise((resolve) => setTimeout(resolve, waitMs).unref())
      backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 1.5)
    }
  }

  /**
   * One try: null when the collector took the spans; what to retry after (its Retry-After, else -1) for a
   * network error or a retryable status; throws for any other status.
   */
  async #post(body: Uint8Array, deadline: number): Promise<{ readonly failure: Error; readonly afterMs: number } | null> {
    const answer = await new Promise<ExportTry>((resolve) => {
      const attempt = new ExportTry(resolve, Math.max(1, Math.ceil(deadline - performance.now())))
      this.#pool.dispatch({ path: this.#path, method: 'POST', body, headers: HEADERS }, attempt)
    })
    if (answer.error !== null) {
      if (this.#isShutdown) throw answer.error
      return { failure: answer.error, afterMs: -1 }
    }
    if (answer.status >= 200 && answer.status < 300) return null
    const failure = new Error(`the OTLP endpoint answered ${answer.status}`)
    if (!RETRYABLE.has(answer.status)) throw failure
    return { failure, afterMs: retryAfterOf(answer.retryAfter) }
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.#pending])
  }

  async shutdown(): Promise<void> {
    await this.forceFlush()
    this.#isShutdown = true
    await this.#pool.close()
  }
}

// The body is serialized SLICE spans at a time, one slice per turn of the event loop, so that the requests in
// flight wait for one slice, not for the batch. Each slice is a whole ExportTraceServiceRequest; protobuf
// parses concatenated messages as one, their repeated fields appended, so the body is one request whose
// resourceSpans are the slices'. Serializing a batch of 128 spans took 0.5 ms warm and up to 17 ms in the
// first exports after start (the serializer runs a few times a second, so it warms slowly), timed around
// ProtobufTraceSerializer.serializeRequest in the gateway under load (bench scenario tracing's config).
const SLICE = 32

function serializeInSlices(spans: ReadableSpan[]): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = []
    let at = 0
    const next = (): void => {
      let part: Uint8Array | undefined
      try {
        part = ProtobufTraceSerializer.serializeRequest(spans.slice(at, at + SLICE))
      } catch (err) {
        return reject(err) // from a setImmediate callback, a throw would be uncaught
      }
      if (part === undefined) return reject(new Error('the spans could not be serialized'))
      parts.push(part)
      at += SLICE
      if (at < spans.length) setImmediate(next)
      else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts))
    }
    // The first slice too: export() is called from the span processor's onEnd when its queue holds a batch,
    // that is inside the tracer's flush, which would otherwise stall for the flush and a slice at once.
    setImmediate(next)
  })
}

/**
 * One POST of an export, as undici's handler: the status and Retry-After kept, the body read and dropped, the
 * answer (or the error) handed over once. Its own timer aborts it at the export's deadline.
 */
class ExportTry implements Dispatcher.DispatchHandler {
  status = 0
  retryAfter: string | null = null
  error: Error | null = null
  readonly #resolve: (attempt: ExportTry) => void
  readonly #timer: NodeJS.Timeout
  #abort: ((err?: Error) => void) | null = null
  #isDone = false

  constructor(resolve: (attempt: ExportTry) => void, timeoutMs: number) {
    this.#resolve = resolve
    this.#timer = setTimeout(() => this.#timedOut(), timeoutMs).unref()
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort
    if (this.#isDone) abort(this.error ?? undefined) // timed out while waiting for a connection
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null): boolean {
    this.status = statusCode
    if (rawHeaders !== null) {
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        if (rawHeaders[i]!.toString().toLowerCase() === RETRY_AFTER) this.retryAfter = rawHeaders[i + 1]!.toString()
      }
    }
    return true
  }

  onData(): boolean {
    return true
  }

  onComplete(): void {
    this.#done()
  }

  onError(err: Error): void {
    this.error = err
    this.#done()
  }

  #timedOut(): void {
    this.error = new Error('the OTLP export took longer than its timeout')
    this.#done()
    this.#abort?.(this.error)
  }

  #done(): void {
    if (this.#isDone) return
    this.#isDone = true
    clearTimeout(this.#timer)
    this.#resolve(this)
  }
}

/** Retry-After in ms (seconds, or an HTTP date), -1 when absent or unreadable. */
function retryAfterOf(value: string | null): number {
  if (value === null) return -1
  const seconds = Number(value)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? -1 : Math.max(0, at - Date.now())
}
