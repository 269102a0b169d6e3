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

/** A UUID v4 from hex digits [48, 80) of randomIds(). */
export function requestIdFrom(ids: string): string {
  return ids.slice(48, 56) + '-' + ids.slice(56, 60) + '-4' + ids.slice(61, 64) + '-' +
    UUID_VARIANT[ids.charCodeAt(64) & 3]! + ids.slice(65, 68) + '-' + ids.slice(68, 80)
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
