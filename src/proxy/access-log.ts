// The access log (README "Observability", "Access log"): one line per request through the process's logger,
// at info, msg "access", written when the request ends (record.ts). Nothing is done while it is off.
//
// Hot path: the line is encoded as bytes of a fixed shape straight into the logger's batch (log.ts: gathered,
// then written by sonic-boom asynchronously; encodeAccessLine below), rather than an object serialized by
// pino. Profiled in bench scenario full-chain (--cpu-prof, µs of the gateway's main thread per request,
// loaded 2-core VM), the line through pino took 5.1 µs per request (pino's serialization 4.3 of them); one
// string concatenation of the same shape 3.2 µs, its time stamp included. A line with a string that needs
// an escape or is not ASCII (from the client: X-Request-Id, the path) is that string instead, through
// jsonString, which escapes as JSON.stringify does. A logger not made by createLogger (a test's) gets the same
// fields through pino.
import type { LogSettings } from '../config/schema.js'
import type { CompiledRoute } from '../table/compiled-route.js'
import { putChars, putRequestIdFrom } from '../http/ids.js'
import { infoLineWriter, type InfoLineWriter, type Logger } from '../telemetry/log.js'
import type { Outcome } from '../upstream/outcome.js'
import type { OutcomeSink } from './record.js'

// The lines of the requests that end in one turn of the event loop are encoded together, in a setImmediate
// after the turn's I/O callbacks, rather than each when its request ends: then the encoder's code and
// constants are in cache for every line but the first. `perf record -g` of the full-chain config (wrk -t1
// -c32, 12 s, gateway alone on core 1), the share of the process's samples under access-log.js, four runs of
// each build alternating: 2.35, 2.14, 2.29, 2.32 % encoded as each request ended (1.80-1.90 us a request on
// the runs at normal speed), 1.66, 1.73, 1.84, 1.82 % encoded per turn (1.20-1.40 us). The
// line's `time` is still when its request ended: it is read then. Until the setImmediate, a sink holds
// the ended exchanges (released as they are encoded). Any other line of the logger (an error line, a
// reload's), and the process's exit, has what a sink holds encoded first (InfoLineWriter.holdsLines), so
// the lines are in the order they were logged, as before.
export class AccessLogSink implements OutcomeSink {
  readonly #log: Logger
  readonly #writer: InfoLineWriter | null
  #isOn = false
  /** Ended requests whose lines wait for encodePending: [0, #pending) of the four lists below. */
  #pending = 0
  readonly #routes: Array<CompiledRoute | null> = []
  readonly #methods: string[] = []
  readonly #outcomes: Array<Outcome | null> = []
  /** When each ended (InfoLineWriter.now), the line's `time`. */
  readonly #times: number[] = []

  constructor(log: Logger) {
    this.#log = log
    const writer = infoLineWriter(log)
    this.#writer = writer
    if (writer !== null) writer.holdsLines(() => this.encodePending())
  }

  /**
   * log.access and log.level, once the level is in force (applyLogSettings first): at start and after every
   * reload. The lines are info lines, so a level above info turns them off as well.
   */
  configure(settings: LogSettings): void {
    this.#isOn = settings.access && this.#log.isLevelEnabled('info')
  }

  get isOn(): boolean {
    return this.#isOn
  }

  record(route: CompiledRoute | null, method: string, outcome: Outcome): void {
    if (!this.#isOn) return
    const writer = this.#writer
    if (writer !== null) {
      const n = this.#pending
      this.#routes[n] = route
      this.#methods[n] = method
      this.#outcomes[n] = outcome
      this.#times[n] = writer.now()
      this.#pending = n + 1
      if (n === 0) setImmediate(encodePending, this)
      return
    }
    const path = outcome.canonicalPath
    this.#log.info({
      requestId: outcome.requestId,
      traceId: outcome.traceId,
      route: route === null ? null : route.id,
      method,
      httpVersion: outcome.httpVersion,
      path: path === '' ? null : path,
      status: outcome.status,
      code: outcome.refusal === null ? null : outcome.refusal.code,
      upstream: outcome.upstreamName,
      target: outcome.lastTarget,
      consumer: outcome.consumer,
      attempts: outcome.attempts,
      bytesIn: outcome.bytesIn,
      bytesOut: outcome.bytesOut,
      durationMs: Math.round(outcome.durationMs * 1000) / 1000,
      ...(outcome.grpcStatus >= 0 ? { grpcStatus: outcome.grpcStatus } : {}),
    }, 'access')
  }

  /** The lines of the ended requests it holds, in the order they ended, into the logger's batch. */
  encodePending(): void {
    const writer = this.#writer
    const n = this.#pending
    if (writer === null || n === 0) return
    this.#pending = 0
    const routes = this.#routes
    const methods = this.#methods
    const outcomes = this.#outcomes
    const times = this.#times
    for (let i = 0; i < n; i++) {
      const route = routes[i]!
      const method = methods[i]!
      const outcome = outcomes[i]!
      routes[i] = null
      outcomes[i] = null
      const head = writer.headBytesAt(times[i]!)
      const batch = writer.room(lineBound(head, route, method, outcome))
      if (batch !== null) {
        const end = encodeAccessLine(batch, writer.at(), head, route, method, outcome)
        if (end >= 0) {
          writer.commit(end)
          continue
        }
      }
      // A string that is not printable ASCII or needs an escape: the line as a string, with the same head.
      writer.write(Buffer.from(head.buffer, head.byteOffset, head.length).toString('latin1') + accessFields(route, method, outcome) + ',"msg":"access"}\n')
    }
  }
}

function encodePending(sink: AccessLogSink): void {
  sink.encodePending()
}

/** The fields of an access line, each preceded by a comma: `,"requestId":"…",…,"durationMs":1.234`. */
export function accessFields(route: CompiledRoute | null, method: string, outcome: Outcome): string {
  const path = outcome.canonicalPath
  const code = outcome.refusal === null ? null : outcome.refusal.code
  return ',"requestId":' + jsonString(outcome.requestId) +
    ',"traceId":' + jsonString(outcome.traceId) +
    ',"route":' + (route === null ? 'null' : jsonString(route.id)) +
    ',"method":' + jsonString(method) +
    ',"httpVersion":"' + outcome.httpVersion + '"' +
    ',"path":' + (path === '' ? 'null' : jsonString(path)) +
    ',"status":' + outcome.status +
    ',"code":' + (code === null ? 'null' : jsonString(code)) +
    ',"upstream":' + (outcome.upstreamName === null ? 'null' : jsonString(outcome.upstreamName)) +
    ',"target":' + (outcome.lastTarget === null ? 'null' : jsonString(outcome.lastTarget)) +
    ',"consumer":' + (outcome.consumer === null ? 'null' : jsonString(outcome.consumer)) +
    ',"attempts":' + outcome.attempts +
    ',"bytesIn":' + outcome.bytesIn +
    ',"bytesOut":' + outcome.bytesOut +
    ',"durationMs":' + Math.round(outcome.durationMs * 1000) / 1000 +
    (outcome.grpcStatus >= 0 ? ',"grpcStatus":' + outcome.grpcStatus : '')
}

/**
 * A string as a JSON string literal, as JSON.stringify writes it: quoted as it is when it holds no '"', '\\',
 * control character or surrogate (the usual case, one charCode scan), else through JSON.stringify (which also
 * writes a lone surrogate as \\uXXXX, keeping the line valid UTF-8).
 */
export function jsonString(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(value)
  }
  return '"' + value + '"'
}

// The line straight into the log's batch (log.ts InfoLineWriter.room), byte by byte: no string is made for
// it. Built as one string (accessFields), a line was some thirty concatenations, about 1.1 KiB of V8 heap
// per request in the heap profile of bench scenario full-chain (the largest allocation of the request
// path after node:http's own), and was then flattened and encoded again into the batch. Every string
// of the line is printable ASCII in practice (ids, methods, canonical paths, ids and names from the config,
// host:port); one that is not, or needs an escape, sends the whole line back to the string path, so the
// bytes are always what JSON.stringify would write.

/** ASCII text as bytes, made once at load: copying them is cheaper than reading a string's characters. */
function ascii(text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

const K_REQUEST_ID = ascii(',"requestId":')
const K_TRACE_ID = ascii(',"traceId":')
/** Fixed bytes of the usual line, joined: the keys of the gateway's own ids with their opening quote; code and consumer null. */
const K_REQUEST_ID_QUOTE = ascii(',"requestId":"')
const K_TRACE_ID_QUOTE = ascii(',"traceId":"')
const K_CODE_NULL = ascii(',"code":null')
const K_CONSUMER_NULL = ascii(',"consumer":null')
const K_ROUTE = ascii(',"route":')
const K_METHOD = ascii(',"method":')
const K_HTTP_VERSION = ascii(',"httpVersion":')
const K_PATH = ascii(',"path":')
const K_STATUS = ascii(',"status":')
const K_CODE = ascii(',"code":')
const K_UPSTREAM = ascii(',"upstream":')
const K_TARGET = ascii(',"target":')
const K_CONSUMER = ascii(',"consumer":')
const K_ATTEMPTS = ascii(',"attempts":')
const K_BYTES_IN = ascii(',"bytesIn":')
const K_BYTES_OUT = ascii(',"bytesOut":')
const K_DURATION = ascii(',"durationMs":')
const K_GRPC_STATUS = ascii(',"grpcStatus":')
const NULL = ascii('null')
const ACCESS_TAIL = ascii(',"msg":"access"}\n')
/** The fixed part of a line: field names, punctuation, the numbers (at most 16 digits each). */
const FIXED_BYTES = 400

/** Bytes the line can take at most, when every string is ASCII (else encodeAccessLine gives up). */
function lineBound(head: Uint8Array, route: CompiledRoute | null, method: string, o: Outcome): number {
  return FIXED_BYTES + head.length + o.requestId.length + o.traceId.length + (route === null ? 0 : route.id.length) +
    method.length + o.canonicalPath.length + (o.refusal === null ? 0 : o.refusal.code.length) +
    (o.upstreamName === null ? 0 : o.upstreamName.length) + (o.lastTarget === null ? 0 : o.lastTarget.length) +
    o.httpVersion.length + (o.consumer === null ? 0 : o.consumer.length)
}

/**
 * The access line's bytes at `at`; returns where it ends, or -1 when a string needs the string path.
 *
 * The request and trace ids the gateway made are copied from the request's flat `ids` string (src/http/ids.ts)
 * rather than read from requestId, a rope of seven pieces, and traceId, a slice: in bench/micro (fresh ids per
 * line, as in a request) reading those two cost 250 ns per line, copying them from ids 85 ns. The field names
 * and the head are bytes made once (the head once per millisecond, log.ts headBytesAt). Profiled in bench
 * scenario full-chain (--cpu-prof, wrk -t1 -c32 for 15 s, gateway on its own core; self time of every frame of
 * this file, log.ts and ids.ts, µs per request): 3.67 before (putString 1.06, encodeAccessLine 1.06, the
 * field names read from strings 0.50, the head made per line 0.44), 2.48 after, on a slower spell of the VM.
 */
export function encodeAccessLine(b: Buffer, at: number, head: Uint8Array, route: CompiledRoute | null, method: string, o: Outcome): number {
  const path = o.canonicalPath
  const ids = o.ids
  at = putBytes(b, at, head)
  if (o.incomingRequestId === null && ids.length === 80) {
    at = putRequestIdFrom(ids, b, putBytes(b, at, K_REQUEST_ID_QUOTE))
    b[at++] = 0x22
  } else if ((at = putString(b, putBytes(b, at, K_REQUEST_ID), o.requestId)) < 0) return -1
  if (o.parentSpanId === null && o.traceId.length === 32 && ids.length === 80) {
    at = putChars(ids, 0, 32, b, putBytes(b, at, K_TRACE_ID_QUOTE))
    b[at++] = 0x22
  } else if ((at = putString(b, putBytes(b, at, K_TRACE_ID), o.traceId)) < 0) return -1
  at = putBytes(b, at, K_ROUTE)
  if ((at = route === null ? putBytes(b, at, NULL) : putString(b, at, route.id)) < 0) return -1
  at = putBytes(b, at, K_METHOD)
  if ((at = putString(b, at, method)) < 0) return -1
  at = putBytes(b, at, K_HTTP_VERSION)
  if ((at = putString(b, at, o.httpVersion)) < 0) return -1
  at = putBytes(b, at, K_PATH)
  if ((at = path === '' ? putBytes(b, at, NULL) : putString(b, at, path)) < 0) return -1
  at = putBytes(b, at, K_STATUS)
  if ((at = putCount(b, at, o.status)) < 0) return -1
  if ((at = o.refusal === null ? putBytes(b, at, K_CODE_NULL) : putString(b, putBytes(b, at, K_CODE), o.refusal.code)) < 0) return -1
  at = putBytes(b, at, K_UPSTREAM)
  if ((at = o.upstreamName === null ? putBytes(b, at, NULL) : putString(b, at, o.upstreamName)) < 0) return -1
  at = putBytes(b, at, K_TARGET)
  if ((at = o.lastTarget === null ? putBytes(b, at, NULL) : putString(b, at, o.lastTarget)) < 0) return -1
  if ((at = o.consumer === null ? putBytes(b, at, K_CONSUMER_NULL) : putString(b, putBytes(b, at, K_CONSUMER), o.consumer)) < 0) return -1
  at = putBytes(b, at, K_ATTEMPTS)
  if ((at = putCount(b, at, o.attempts)) < 0) return -1
  at = putBytes(b, at, K_BYTES_IN)
  if ((at = putCount(b, at, o.bytesIn)) < 0) return -1
  at = putBytes(b, at, K_BYTES_OUT)
  if ((at = putCount(b, at, o.bytesOut)) < 0) return -1
  at = putBytes(b, at, K_DURATION)
  if ((at = putMillis(b, at, o.durationMs)) < 0) return -1
  if (o.grpcStatus >= 0) {
    at = putBytes(b, at, K_GRPC_STATUS)
    if ((at = putCount(b, at, o.grpcStatus)) < 0) return -1
  }
  return putBytes(b, at, ACCESS_TAIL)
}

/**
 * Bytes made by ascii() or the head's. Copied by TypedArray set(), not a loop: in bench/micro-style runs of
 * encodeAccessLine (4,096 outcomes with fresh ids, one core), a line took 530 ns with the loop, 465 ns with
 * set(), and 437 ns with the joined runs above (K_REQUEST_ID_QUOTE etc.).
 */
function putBytes(b: Buffer, at: number, bytes: Uint8Array): number {
  b.set(bytes, at)
  return at + bytes.length
}

/** A JSON string of printable ASCII without '"' or '\\', quoted; -1 for anything else (JSON.stringify's escapes, UTF-8). */
function putString(b: Buffer, at: number, value: string): number {
  b[at++] = 0x22
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1
    b[at++] = c
  }
  b[at++] = 0x22
  return at
}

/** A whole number from 0 to 2^53, as String() writes it; -1 otherwise. */
function putCount(b: Buffer, at: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER) || Math.floor(n) !== n) return -1
  let digits = 1
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++
  let i = at + digits
  do {
    b[--i] = 0x30 + (n % 10)
    n = Math.floor(n / 10)
  } while (n > 0)
  return at + digits
}

/**
 * Milliseconds rounded to the microsecond, as String(Math.round(ms * 1000) / 1000) writes them: the whole
 * part, then up to three decimals without trailing zeros (k / 1000 is the double nearest to that decimal, so
 * that decimal is its shortest form). -1 past 2^53 microseconds or for NaN.
 */
function putMillis(b: Buffer, at: number, ms: number): number {
  const k = Math.round(ms * 1000)
  if (!(k >= 0 && k <= Number.MAX_SAFE_INTEGER)) return -1
  at = putCount(b, at, Math.floor(k / 1000))
  let frac = k % 1000
  if (frac === 0) return at
  b[at++] = 0x2e
  let div = 100
  while (frac > 0) {
    const d = Math.floor(frac / div)
    b[at++] = 0x30 + d
    frac -= d * div
    div /= 10
  }
  return at
}
