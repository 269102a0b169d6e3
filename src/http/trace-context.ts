// W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1): reading the incoming traceparent and
// tracestate, the sampling decision, and the traceparent sent upstream. Hot path: runs once per forwarded
// request, one charCode scan per header, no regex, no allocation beyond the id slices.
//
// Continue or restart (SPEC.md §6, W3C §3.2 and "Versioning of traceparent"):
// - exactly one traceparent whose value (OWS trimmed) parses: version 2 lowercase hex digits, not ff; for 00
//   exactly 55 characters; for a higher version at least 55, and a '-' after them if longer; trace id 32 and
//   parent id 16 lowercase hex digits, neither all zeros; flags 2 lowercase hex digits. Then the trace id is
//   kept, the caller's span becomes the parent, and a valid tracestate travels on unchanged.
// - anything else (missing, duplicated, malformed): a new trace from the request's random ids; tracestate
//   is dropped with it (W3C "Restart trace": vendors SHOULD clean up tracestate).
// The gateway always sends version 00, with only the sampled flag (bit 0) of its own decision.
import { flatTraceparent } from './ids.js'

/** The trace fields of one request (the exchange has them; request-facts.ts fills the raw headers). */
export interface TraceFields {
  /** The last traceparent header seen, and how many there were (two or more: restart). */
  traceparent: string | null
  traceparentCount: number
  /** Every tracestate header, joined with ',' (W3C §3.3.1.1: they combine like that). */
  tracestate: string | null
  /** 32 hex digits: the incoming trace id when continued, else digits [0, 32) of the request's ids. */
  traceId: string
  /** The caller's span id when the trace was continued, else null (the gateway's span is the root). */
  parentSpanId: string | null
  /** -1 not decided yet, 0 not sampled, 1 sampled. */
  sampled: number
}

// 1 for '0'-'9' and 'a'-'f': W3C HEXDIGLC (upper case is invalid).
const HEX_LC = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) HEX_LC[c] = 1
for (let c = 0x61; c <= 0x66; c++) HEX_LC[c] = 1

/** True when value[from, to) are all lowercase hex digits and not all '0'. */
function isHexId(value: string, from: number, to: number): boolean {
  let nonZero = false
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i)
    if (c >= 128 || HEX_LC[c] !== 1) return false
    if (c !== 0x30) nonZero = true
  }
  return nonZero
}

function isHexPair(value: string, at: number): boolean {
  const a = value.charCodeAt(at)
  const b = value.charCodeAt(at + 1)
  return a < 128 && b < 128 && HEX_LC[a] === 1 && HEX_LC[b] === 1
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09
}

/** The start of a traceparent value without its OWS, or -1 when what is left cannot be one. */
function traceparentStart(value: string): number {
  let s = 0
  let e = value.length
  while (s < e && isOws(value.charCodeAt(s))) s++
  while (e > s && isOws(value.charCodeAt(e - 1))) e--
  const len = e - s
  if (len < 55) return -1
  // version: 2 lowercase hex digits, ff forbidden; 00 is exactly 55 characters; a higher version may be
  // longer, its next field starting with '-'.
  if (!isHexPair(value, s) || (value.charCodeAt(s) === 0x66 && value.charCodeAt(s + 1) === 0x66)) return -1
  const v00 = value.charCodeAt(s) === 0x30 && value.charCodeAt(s + 1) === 0x30
  if (v00 ? len !== 55 : len > 55 && value.charCodeAt(s + 55) !== 0x2d) return -1
  if (value.charCodeAt(s + 2) !== 0x2d || value.charCodeAt(s + 35) !== 0x2d || value.charCodeAt(s + 52) !== 0x2d) return -1
  if (!isHexId(value, s + 3, s + 35) || !isHexId(value, s + 36, s + 52) || !isHexPair(value, s + 53)) return -1
  return s
}

/**
 * Reads the incoming context once: continues a valid traceparent or restarts from `ids` (80 hex digits,
 * src/http/ids.ts). Returns the caller's sampled flag (0 or 1), or -1 when the trace starts here.
 */
export function readTraceContext(t: TraceFields, ids: string): number {
  const incoming = t.traceparentCount === 1 ? t.traceparent : null
  if (incoming !== null) {
    const s = traceparentStart(incoming)
    if (s >= 0) {
      t.traceId = incoming.slice(s + 3, s + 35)
      t.parentSpanId = incoming.slice(s + 36, s + 52)
      if (t.tracestate !== null && !isValidTracestate(t.tracestate)) t.tracestate = null
      const flags = incoming.charCodeAt(s + 54)
      return (flags <= 0x39 ? flags - 0x30 : flags - 0x57) & 1
    }
  }
  t.traceId = ids.slice(0, 32)
  t.parentSpanId = null
  t.tracestate = null
  return -1
}

/**
 * The sampling decision, made once per request: `parentBased` follows the caller's flag (`incoming` 0 or
 * 1); a trace that starts here (incoming -1), or any trace when parentBased is off, is sampled with
 * probability `ratio`. Returns 0 or 1.
 */
export function decideSampled(incoming: number, parentBased: boolean, ratio: number): number {
  if (incoming >= 0 && parentBased) return incoming
  if (ratio >= 1) return 1
  return ratio > 0 && Math.random() < ratio ? 1 : 0
}

/** The traceparent sent upstream: version 00, the trace, the span the upstream's work is a child of, the decision. */
export function traceparentValue(traceId: string, spanId: string, sampled: number): string {
  return flatTraceparent(traceId, spanId, sampled === 1)
}

// W3C §3.3.1.3: key = ( lcalpha / DIGIT ) 0*255 ( keychar ); keychar = lcalpha / DIGIT / _ - * / @
const KEY_FIRST = new Uint8Array(128)
const KEY_CHAR = new Uint8Array(128)
for (let c = 0x61; c <= 0x7a; c++) KEY_FIRST[c] = KEY_CHAR[c] = 1
for (let c = 0x30; c <= 0x39; c++) KEY_FIRST[c] = KEY_CHAR[c] = 1
for (const ch of '_-*/@') KEY_CHAR[ch.charCodeAt(0)] = 1

/** The most list members a tracestate may have (W3C §3.3.1.1); more, and the whole header is dropped. */
export const TRACESTATE_MAX_MEMBERS = 32

/**
 * W3C §3.3.1: a list of at most 32 `key=value` members separated by ',' with OWS around them; empty
 * members are allowed. value = 0*255 chr nblk-chr, chr being 0x20-0x7E except ',' and '='. A tracestate
 * that fails is dropped whole (it is opaque: the gateway cannot repair it). A valid one is sent on as
 * received, whatever its length: the request header limit bounds it, which is above the 512 characters
 * the spec asks vendors to propagate.
 */
export function isValidTracestate(value: string): boolean {
  const len = value.length
  let members = 0
  let i = 0
  while (i <= len) {
    let end = value.indexOf(',', i)
    if (end < 0) end = len
    let s = i
    let e = end
    while (s < e && isOws(value.charCodeAt(s))) s++
    while (e > s && isOws(value.charCodeAt(e - 1))) e--
    if (s < e) {
      if (++members > TRACESTATE_MAX_MEMBERS || !isValidMember(value, s, e)) return false
    }
    i = end + 1
  }
  return true
}

function isValidMember(value: string, s: number, e: number): boolean {
  const first = value.charCodeAt(s)
  if (first >= 128 || KEY_FIRST[first] !== 1) return false
  let i = s + 1
  for (; i < e; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x3d) break // '='
    if (c >= 128 || KEY_CHAR[c] !== 1) return false
  }
  if (i === e || i - s > 256) return false
  const valueLen = e - i - 1
  if (valueLen < 1 || valueLen > 256) return false
  for (let j = i + 1; j < e; j++) {
    const c = value.charCodeAt(j)
    if (c < 0x20 || c > 0x7e || c === 0x2c || c === 0x3d) return false
  }
  return true // e was trimmed of OWS, so the last character is not a space
}
