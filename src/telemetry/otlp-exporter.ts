// tracing.exporter: otlp — OTLP/HTTP protobuf export of finished spans (README "Tracing", "Export"), loaded
// with the SDK only when tracing is on. The SDK's serializer makes the body (ProtobufTraceSerializer, the one
// OpenTelemetry's own OTLP proto exporter uses), here; a worker thread of the exporter's own sends it
// (otlp-send-thread.ts, otlp-sender.ts), started at the first export.
//
// Why a thread: an export sent from the proxy's own thread goes through the same undici and node:net
// functions as the proxied requests, and V8 keeps one set of type feedback per function for both. In CPU
// profiles of the gateway under load (wrk -t1 -c32, 12-15 s, tracing.sampleRatio 0.01, gateway alone on its
// core), Socket._writeGeneric took 1.0-1.3% of the busy time and undici's dispatch 0.7-0.9% while exports were
// sent from that thread, against 0.2-0.3% each with nothing exported; sent from a worker, 0.4-0.5% and
// 0.25-0.3%. (Before, OpenTelemetry's OTLPTraceExporter, through node:http's client, cost more: 27
// deoptimizations of the proxy's hottest stream functions in 10 s, and 10.7 us of CPU per request.) A worker
// has its own V8 isolate, so nothing it runs reaches the proxy's type feedback. It costs about 4 MiB of RSS
// (a bare worker thread: 3.5 MiB; node 20), held to a small heap by resourceLimits.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { existsSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import type { SendAnswer, SendRequest, SendThreadData } from './otlp-send-thread.js'

/**
 * The worker's module: beside this one once built. Under vitest this module runs from its TypeScript source,
 * which a worker cannot load, so the build's copy is used (npm test builds first).
 */
function sendThreadUrl(): URL {
  const sibling = new URL('./otlp-send-thread.js', import.meta.url)
  return existsSync(sibling) ? sibling : new URL('../../dist/src/telemetry/otlp-send-thread.js', import.meta.url)
}

export class OtlpHttpExporter implements SpanExporter {
  readonly #data: SendThreadData
  /** Exports handed to the thread and not answered yet, by id. */
  readonly #waiting = new Map<number, (error: string | null) => void>()
  readonly #pending = new Set<Promise<void>>()
  #thread: Worker | null = null
  #lastId = 0
  #isShutdown = false

  /** `timeoutMs`: the most one export may take, its retries included. */
  constructor(endpoint: string, timeoutMs: number) {
    new URL(endpoint) // an invalid endpoint throws here, where the exporter is made, not later in the thread
    this.#data = { endpoint, timeoutMs }
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.#isShutdown) return done({ code: ExportResultCode.FAILED, error: new Error('the OTLP exporter is shut down') })
    const body = ProtobufTraceSerializer.serializeRequest(spans)
    if (body === undefined) return done({ code: ExportResultCode.FAILED, error: new Error('the spans could not be serialized') })
    const sent = new Promise<string | null>((resolve) => {
      const id = ++this.#lastId
      this.#waiting.set(id, resolve)
      const thread = this.#thread ?? this.#start()
      // Held open only while an export is on its way: an idle exporter keeps no process alive.
      if (this.#waiting.size === 1) thread.ref()
      // Handed over, not copied, when the body has its buffer to itself.
      const whole = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : body.slice()
      thread.postMessage({ id, body: whole } satisfies SendRequest, [whole.buffer as ArrayBuffer])
    }).then((error) => done(error === null
      ? { code: ExportResultCode.SUCCESS }
      : { code: ExportResultCode.FAILED, error: new Error(error) }))
    this.#pending.add(sent)
    void sent.finally(() => this.#pending.delete(sent))
  }

  #start(): Worker {
    const thread = new Worker(sendThreadUrl(), {
      workerData: this.#data,
      // A small heap: the thread holds an export or two at a time (at most 512 spans each).
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 },
    })
    thread.on('message', ({ id, error }: SendAnswer) => {
      const resolve = this.#waiting.get(id)
      this.#waiting.delete(id)
      resolve?.(error)
      if (this.#waiting.size === 0) thread.unref()
    })
    // An exception or an exit of the thread fails what it held; the next export starts a new one.
    thread.on('error', (error) => this.#failWaiting(`the OTLP sender thread failed: ${error.message}`))
    thread.on('exit', () => {
      if (this.#thread === thread) this.#thread = null
      this.#failWaiting('the OTLP sender thread stopped')
    })
    this.#thread = thread
    return thread
  }

  #failWaiting(error: string): void {
    const waiting = [...this.#waiting.values()]
    this.#waiting.clear()
    for (const resolve of waiting) resolve(error)
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.#pending])
  }

  async shutdown(): Promise<void> {
    await this.forceFlush()
    this.#isShutdown = true
    const thread = this.#thread
    this.#thread = null
    if (thread !== null) await thread.terminate()
  }
}
