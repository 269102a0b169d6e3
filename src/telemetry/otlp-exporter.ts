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
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { createRequire } from 'node:module'
import type { Dispatcher, Pool as UndiciPool } from 'undici'

// undici's Pool alone, as src/upstream/undici-pool.ts loads it (the same module, so the same classes the
// proxy's pools are made of): the package index would also load fetch, WebSocket and the cache, about 5 MiB
// more of idle RSS measured with tracing on.
// The index also gives every dispatcher its request() method; without it, undici's request() is called on
// the pool.
const require = createRequire(import.meta.url)
const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool
const request = require('undici/lib/api/api-request.js') as (this: UndiciPool, options: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>

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
    const body = ProtobufTraceSerializer.serializeRequest(spans)
    if (body === undefined) return done({ code: ExportResultCode.FAILED, error: new Error('the spans could not be serialized') })
    const sent = this.#send(body).then(
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
    let res: Dispatcher.ResponseData
    try {
      res = await request.call(this.#pool, {
        path: this.#path, method: 'POST', body,
        headers: { 'content-type': 'application/x-protobuf' },
        signal: AbortSignal.timeout(Math.max(1, Math.ceil(deadline - performance.now()))),
      })
      await res.body.dump()
    } catch (err) {
      if (this.#isShutdown) throw err
      return { failure: err as Error, afterMs: -1 }
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return null
    const failure = new Error(`the OTLP endpoint answered ${res.statusCode}`)
    if (!RETRYABLE.has(res.statusCode)) throw failure
    return { failure, afterMs: retryAfterOf(res.headers['retry-after']) }
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

/** Retry-After in ms (seconds, or an HTTP date), -1 when absent or unreadable. */
function retryAfterOf(value: string | string[] | undefined): number {
  if (typeof value !== 'string') return -1
  const seconds = Number(value)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? -1 : Math.max(0, at - Date.now())
}
