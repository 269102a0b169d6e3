// The sending half of the OTLP exporter (README "Tracing", "Export"): one POST of a serialized export to
// tracing.endpoint, tried again after a network error or a retryable status while the export's time lasts.
// It runs in the exporter's own worker thread (otlp-send-thread.ts; otlp-exporter.ts says why), never on the
// thread that proxies.
//
// Through undici's dispatch() with a handler of its own (ExportTry) rather than its request(), which hands the
// answer over as a stream.Readable and takes an AbortSignal: nothing here needs either. The export's own timer
// aborts it at its deadline.
import { createRequire } from 'node:module'
import type { Dispatcher, Pool as UndiciPool } from 'undici'

// undici's Pool alone, as src/upstream/undici-pool.ts loads it: the package index would also load fetch,
// WebSocket and the cache, about 5 MiB more of RSS.
const require = createRequire(import.meta.url)
const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool

const HEADERS = ['content-type', 'application/x-protobuf']
const RETRY_AFTER = 'retry-after'

/** Statuses worth another try (as the OTLP specification lists them); anything else is final. */
const RETRYABLE = new Set([429, 502, 503, 504])
const FIRST_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 5000

export class OtlpSender {
  readonly #pool: UndiciPool
  readonly #path: string
  readonly #timeoutMs: number

  /** `timeoutMs`: the most one export may take, its retries included. */
  constructor(endpoint: string, timeoutMs: number) {
    const url = new URL(endpoint)
    this.#path = url.pathname + url.search
    this.#timeoutMs = timeoutMs
    this.#pool = new Pool(url.origin, { connections: 2, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  /** Resolves once the collector took the body; rejects with why it did not, within the export's time. */
  send(body: Uint8Array): Promise<void> {
    return this.#send(body)
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
    if (answer.error !== null) return { failure: answer.error, afterMs: -1 }
    if (answer.status >= 200 && answer.status < 300) return null
    const failure = new Error(`the OTLP endpoint answered ${answer.status}`)
    if (!RETRYABLE.has(answer.status)) throw failure
    return { failure, afterMs: retryAfterOf(answer.retryAfter) }
  }
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
