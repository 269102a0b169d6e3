// The upstream's response headers on their way to the client: the same hop-by-hop list as the request side
// (src/proxy/header-names.ts) and whatever the upstream's Connection header lists are removed.
import type { QuotaSource } from '../http/request-step.js'
import { NameKind, knownName } from './header-names.js'

const KEEP_ALIVE = Buffer.from('keep-alive')
const CLOSE = Buffer.from('close')

/** `keep-alive` or `close` alone, in any case: a Connection value that lists no header. */
function isBareConnectionOption(value: Buffer): boolean {
  const word = value.length === 10 ? KEEP_ALIVE : value.length === 5 ? CLOSE : null
  if (word === null) return false
  for (let i = 0; i < word.length; i++) if ((value[i]! | 0x20) !== word[i]) return false
  return true
}

/** What buildResponseHeaders learns about the response body: its Content-Length, -1 when it has none. */
export interface ResponseBody {
  bytesLeft: number
}

/**
 * Upstream response headers (undici's raw [name, value, ...] buffers) -> the flat list written to the
 * client. Names and values are read as latin1, which is how Node writes them back: bytes pass unchanged.
 * `dropQuota`: the route's limiters write their own RateLimit-* headers (pushQuotaHeaders), so the
 * upstream's go.
 */
export function buildResponseHeaders(raw: readonly Buffer[], requestId: string, close: boolean, body: ResponseBody, dropQuota = false): string[] {
  const out: string[] = []
  body.bytesLeft = -1
  let listed: string[] | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const rawName = raw[i]!
    // Common names come from the table as lower-case constants (header-names.ts says why); others as strings.
    // Every name the gateway drops or reads is in the table, in any letter case, so the others are kept.
    const known = knownName(rawName)
    const lower = known !== null ? known.name : rawName.toString('latin1').toLowerCase()
    const kind = known !== null ? known.kind : NameKind.Keep
    if (kind === NameKind.Connection) {
      // Nearly every upstream says just `keep-alive` or `close`, which name no header to drop: measured at
      // ~0.3 us per request (CPU profile, bench scenario small) when every response took the split below
      // and the removal pass after the loop.
      const value = raw[i + 1]!
      if (isBareConnectionOption(value)) continue
      for (const token of value.toString('latin1').split(',')) {
        const t = token.trim().toLowerCase()
        if (t !== '' && t !== 'close' && t !== 'keep-alive') (listed ??= []).push(t)
      }
      continue
    }
    if (kind === NameKind.Drop || (kind === NameKind.Quota && dropQuota)) continue
    const value = raw[i + 1]!.toString('latin1')
    // undici has checked the value (one number) and holds the body to it (strictContentLength).
    if (kind === NameKind.ContentLength) body.bytesLeft = Number(value)
    out.push(lower, value)
  }
  if (listed !== null) {
    // Rare: drop the headers the upstream's Connection lists (RFC 9110 §7.6.1).
    for (let i = out.length - 2; i >= 0; i -= 2) if (listed.includes(out[i]!)) out.splice(i, 2)
  }
  out.push('x-request-id', requestId)
  if (close) out.push('connection', 'close')
  return out
}

/**
 * RateLimit-Limit/Remaining/Reset/Policy of the limiter with the lowest remaining quota (README "Rate
 * limiting"), replacing any the upstream sent: two sets would contradict each other. Reset is whole
 * seconds until the quota is full again.
 */
export function appendQuotaHeaders(out: string[], source: QuotaSource, remaining: number, resetMs: number): void {
  for (let i = out.length - 2; i >= 0; i -= 2) if (out[i]!.startsWith('ratelimit-')) out.splice(i, 2)
  pushQuotaHeaders(out, source, remaining, resetMs)
}

/**
 * appendQuotaHeaders on a list that has none (buildResponseHeaders with dropQuota): the proxied response's
 * path, without the scan. It saves little (scenario limits, --cpu-prof: 0.255 us of a request in
 * appendQuotaHeaders, 0.226 us here); the four headers cost more in node:http's writeHead (~0.6 us).
 */
export function pushQuotaHeaders(out: string[], source: QuotaSource, remaining: number, resetMs: number): void {
  out.push(
    'ratelimit-limit', source.limitHeader,
    'ratelimit-remaining', remaining > 0 ? countString(remaining) : '0',
    'ratelimit-reset', resetMs > 0 ? resetText(Math.ceil(resetMs / 1000)) : '0',
    'ratelimit-policy', source.policyHeader,
  )
}

/**
 * RateLimit-Reset's text, the last one kept: it changes once a second for a route's busy key (a window's end
 * comes nearer), where Remaining changes with every request.
 */
let lastResetSeconds = -1
let lastResetText = ''

function resetText(seconds: number): string {
  if (seconds !== lastResetSeconds) {
    lastResetText = countString(seconds)
    lastResetSeconds = seconds
  }
  return lastResetText
}

// RateLimit-Remaining and RateLimit-Reset as text, without String(). String() of a number is a call into V8's
// runtime (Builtins_ToString: 0.15 us per request in `perf record -g` of the limits config, for Reset alone).
// It also puts every number it converts into V8's number-string cache, a table in the old generation, so a
// string made for a new number outlives the scavenges until another number takes its slot and is copied into
// the old generation. Remaining counts down by one per request, a new
// number each time. Measured with one sliding-window limit on the core config (gateway alone on core 1, wrk
// -t1 -c50, node --trace-gc-nvp over 8 s): 42 KB promoted per scavenge against 22 KB without the limit, scavenges
// 1.29-1.33 ms against 1.03-1.07 ms; a token bucket that stays full (the same number each time) added nothing.
// Builds alternating on one core (whole-process CPU, 12 pairs of 3 s), String() before against this: the
// full-chain config 1.059x req/s and 4.2 us less CPU per request (11 of 12 pairs faster).
// The digits are worked out and made into one flat string by String.fromCharCode: no table. An earlier version
// joined strings from tables of "0"-"999" and "000"-"999", and in `perf record` of the limits config (RateLimit-
// Remaining near 100,000,000) 55 of countString's 103 samples sat on the load of a table string's map: the
// tables' 2,000 strings are spread over the old generation and were out of cache on every request (0.23 us a
// request in countString, against 25 ns in a loop of its own).
const fromCharCode = String.fromCharCode
const ZERO = 48

/** A whole number from 0 as String() writes it. */
export function countString(n: number): string {
  if (!(n >= 0 && n < 1e9 && Math.floor(n) === n)) return String(n)
  let rest = n | 0
  if (rest < 10) return fromCharCode(ZERO + rest)
  let q = (rest / 10) | 0
  const d0 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d0)
  rest = q; q = (rest / 10) | 0
  const d1 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d2 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d2, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d3 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d3, d2, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d4 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d4, d3, d2, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d5 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d5, d4, d3, d2, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d6 = ZERO + rest - q * 10
  if (q < 10) return fromCharCode(ZERO + q, d6, d5, d4, d3, d2, d1, d0)
  rest = q; q = (rest / 10) | 0
  const d7 = ZERO + rest - q * 10
  return fromCharCode(ZERO + q, d7, d6, d5, d4, d3, d2, d1, d0)
}
