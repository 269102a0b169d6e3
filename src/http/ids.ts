// Request, trace and span ids.
import { randomFillSync, randomUUID } from 'node:crypto'

// Trace, span and request ids come from one pooled random buffer, read as ONE hex string per request:
// `randomIds()` returns 80 hex digits — [0, 32) trace id, [32, 48) span id, [48, 80) request id.
// Measured on the small bench scenario: randomUUID() plus two smaller pooled reads cost ~0.8 us per request
// (randomFillSync, hexSlice, randomUUID in the CPU profile); one 40-byte read from a 64 KiB pool refilled
// every ~1,600 requests costs a third of that. Substrings of it are V8 slices, not copies.
const RANDOM_POOL = Buffer.alloc(65536)
const IDS_BYTES = 40
let randomOffset = RANDOM_POOL.length

export function randomIds(): string {
  if (randomOffset + IDS_BYTES > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL)
    randomOffset = 0
  }
  const s = RANDOM_POOL.toString('hex', randomOffset, randomOffset + IDS_BYTES)
  randomOffset += IDS_BYTES
  return s
}

const UUID_VARIANT = '89ab'

// The request id and the traceparent go to undici as header values, which it checks with a regular
// expression, and to node:http's response. A string joined from pieces is a V8 rope: the check then leaves
// the regular expression's fast path for the runtime, which flattens the rope first (`perf record -g` of
// the full-chain config: Runtime_RegExpExec under undici's processHeader, 0.34 µs per request, the
// flattening 0.08 µs more). Written as bytes into FLAT and read back as one latin1 string, they are flat
// from the start: in a loop of make-then-check (the same regular expression), 175-198 ns a request id as a
// rope, 122-134 ns this way.
const FLAT = Buffer.allocUnsafe(64)

/** A UUID v4 from hex digits [48, 80) of randomIds(), as a flat string. */
export function requestIdFrom(ids: string): string {
  return FLAT.toString('latin1', 0, putRequestIdFrom(ids, FLAT, 0))
}

/**
 * The traceparent sent upstream (trace-context.ts traceparentValue) as a flat string: `00-`, the 32 hex digits
 * of the trace id, `-`, the 16 of the span id, `-01` or `-00`. Ids of other lengths are joined as strings.
 */
export function flatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  if (traceId.length !== 32 || spanId.length !== 16) return joinedTraceparent(traceId, spanId, sampled)
  const b = FLAT
  b[0] = 0x30
  b[1] = 0x30
  b[2] = 0x2d
  let at = 3
  let any = 0 // every character's bits: past 0x7f, one was not ASCII (never, for ids checked as hex)
  for (let i = 0; i < 32; i++) any |= b[at++] = traceId.charCodeAt(i)
  b[at++] = 0x2d
  for (let i = 0; i < 16; i++) any |= b[at++] = spanId.charCodeAt(i)
  if (any > 0x7f) return joinedTraceparent(traceId, spanId, sampled)
  b[at++] = 0x2d
  b[at++] = 0x30
  b[at++] = sampled ? 0x31 : 0x30
  return b.toString('latin1', 0, at)
}

function joinedTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return '00-' + traceId + '-' + spanId + (sampled ? '-01' : '-00')
}

/**
 * requestIdFrom(ids)'s 36 characters as ASCII bytes into `b` at `at` (the access line, src/proxy/access-log.ts);
 * returns where they end. `ids` is a flat string, read at once; the request id is a rope of its pieces, and
 * reading it character by character cost more than twice as much (bench/micro, see access-log.ts).
 */
export function putRequestIdFrom(ids: string, b: Uint8Array, at: number): number {
  at = putChars(ids, 48, 56, b, at)
  b[at++] = 0x2d
  at = putChars(ids, 56, 60, b, at)
  b[at++] = 0x2d
  b[at++] = 0x34
  at = putChars(ids, 61, 64, b, at)
  b[at++] = 0x2d
  b[at++] = UUID_VARIANT.charCodeAt(ids.charCodeAt(64) & 3)
  at = putChars(ids, 65, 68, b, at)
  b[at++] = 0x2d
  return putChars(ids, 68, 80, b, at)
}

/** ids[from, to) (hex digits) as bytes at `at`. */
export function putChars(ids: string, from: number, to: number, b: Uint8Array, at: number): number {
  for (let i = from; i < to; i++) b[at++] = ids.charCodeAt(i)
  return at
}

/** A fresh request id (UUID v4), off the hot path (errors Node reports before a request exists). */
export function newRequestId(): string {
  return randomUUID()
}
