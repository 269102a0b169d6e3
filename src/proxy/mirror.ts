// Mirroring (README "Mirroring"): a share of a route's forwarded requests is copied to the mirror upstream,
// fire-and-forget. The copy has the method, path, query and headers the real upstream got (Host as the
// mirror upstream's hostHeader says), plus `x-tollgate-mirror: 1`, and the same body.
//
// The real request never waits for the copy: a request without a body is copied when it is forwarded; a
// body is copied while it streams to the real upstream (teeBody) and the copy leaves once the body is whole.
// The mirror's answer is read and thrown away. What a copy can cost is bounded: a body over
// mirror.maxBodySize is not copied (by Content-Length before anything is read, or as soon as the stream
// passes it), and at most mirror.maxConcurrent copies of a route are buffering or in flight; past either,
// the copy is dropped. Every copy decided on ends as one of tollgate_mirror_requests_total's results:
// sent (the mirror answered, whatever the status), failed (no answer: refused, reset, timed out, no healthy
// target) or dropped (never sent: too big, too many, the body never completed).
//
// States of a MirrorCall:  buffering -> dispatched -> sent | failed;   buffering -> dropped
import type { Dispatcher } from 'undici'
import type { CompiledMirror } from '../table/compiled-mirror.js'
import type { Target } from '../upstream/target.js'
import type { Exchange } from './exchange.js'

const NO_TARGETS: Target[] = []
/** A mirror upstream without timeouts.response still gets an answer deadline: a copy must end. */
const DEFAULT_MIRROR_TIMEOUT_MS = 30_000

const enum State { Buffering, Dispatched, Done }

/** One copy: the undici dispatch handler of the mirror request (no closure per copy). */
export class MirrorCall implements Dispatcher.DispatchHandler {
  readonly #mirror: CompiledMirror
  readonly #method: string
  readonly #path: string
  readonly #headers: string[]
  #state = State.Buffering
  #chunks: Buffer[] | null
  #bytes = 0
  #target: Target | null = null
  #answered = false

  constructor(mirror: CompiledMirror, method: string, path: string, headers: string[], hasBody: boolean) {
    this.#mirror = mirror
    this.#method = method
    this.#path = path
    this.#headers = headers
    this.#chunks = hasBody ? [] : null
  }

  /** A chunk of the request body, as it goes to the real upstream. */
  add(chunk: Buffer): void {
    if (this.#state !== State.Buffering || this.#chunks === null) return
    this.#bytes += chunk.length
    if (this.#bytes > this.#mirror.maxBodyBytes) return this.drop()
    this.#chunks.push(chunk)
  }

  /** The request body is whole (or there is none): send the copy. */
  send(): void {
    if (this.#state !== State.Buffering) return
    this.#state = State.Dispatched
    const mirror = this.#mirror
    const upstream = mirror.upstream
    const target = upstream.pool.pick(NO_TARGETS, 0, null)
    if (target === null || target.dispatcher === null) return this.finish(false)
    this.#target = target
    target.inflight++
    const headers = this.#headers
    if (upstream.hostHeader !== null) headers[1] = upstream.hostHeader
    else if (upstream.hostFromTarget) headers[1] = target.origin.slice(target.origin.indexOf('//') + 2)
    const chunks = this.#chunks
    this.#chunks = null
    const timeoutMs = upstream.responseTimeoutMs > 0 ? upstream.responseTimeoutMs : DEFAULT_MIRROR_TIMEOUT_MS
    target.dispatcher.dispatch({
      origin: target.origin,
      path: this.#path,
      method: this.#method as Dispatcher.HttpMethod,
      headers,
      body: chunks === null ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#bytes),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      upgrade: null,
    }, this)
  }

  /** The real request ended: a copy whose body never completed is dropped. */
  abandon(): void {
    if (this.#state === State.Buffering) this.drop()
  }

  drop(): void {
    if (this.#state !== State.Buffering) return
    this.#state = State.Done
    this.#chunks = null
    this.#mirror.dropped.inc()
    release(this.#mirror)
  }

  // ---- undici DispatchHandler ----
  onConnect(): void {}

  onHeaders(statusCode: number): boolean {
    if (!this.#answered) {
      this.#answered = true
      this.#mirror.upstream.metrics.countResponse(this.#target!.hostPort, statusCode)
    }
    return true
  }

  onData(): boolean {
    return true // the mirror's answer is thrown away
  }

  onComplete(): void {
    this.finish(true)
  }

  onError(): void {
    if (!this.#answered && this.#target !== null) this.#mirror.upstream.metrics.countResponse(this.#target.hostPort, 0)
    this.finish(this.#answered)
  }

  private finish(answered: boolean): void {
    if (this.#state === State.Done) return
    this.#state = State.Done
    if (this.#target !== null) this.#target.inflight--
    if (answered) this.#mirror.sent.inc()
    else this.#mirror.failed.inc()
    release(this.#mirror)
  }
}

function release(mirror: CompiledMirror): void {
  mirror.inflight.value--
  mirror.upstream.pool.release()
}

/**
 * Called by forward() once the upstream headers are built: decides whether this request is copied. Returns
 * the call that waits for the body (the caller tees the body into it), or null.
 */
export function startMirror(ex: Exchange, mirror: CompiledMirror): MirrorCall | null {
  if (mirror.ratio < 1 && Math.random() >= mirror.ratio) return null
  const hasBody = ex.hasBody()
  if (hasBody && !ex.hasChunkedBody && ex.contentLength > mirror.maxBodyBytes) {
    mirror.dropped.inc()
    return null
  }
  // The route's bound, then the mirror upstream's own maxConcurrent (its bulkhead).
  if (mirror.inflight.value >= mirror.maxConcurrent || !mirror.upstream.pool.tryAcquire()) {
    mirror.dropped.inc()
    return null
  }
  mirror.inflight.value++
  const headers = ex.upstreamHeaders!.slice()
  headers.push('x-tollgate-mirror', '1')
  const call = new MirrorCall(mirror, ex.req.method ?? 'GET', ex.upstreamPath, headers, hasBody)
  if (!hasBody) {
    call.send()
    return null
  }
  return call
}

/** The request body on its way to the real upstream, copied into `call` as it passes. */
export async function* teeBody(call: MirrorCall, body: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    call.add(chunk)
    yield chunk
  }
  call.send()
}
