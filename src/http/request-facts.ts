// What the gateway learns from a request's headers in one pass over req.rawHeaders (no req.headers object
// is built): framing (one Host, Transfer-Encoding exactly "chunked" on one line, Expect), the client's
// Connection tokens, and the headers it interprets (X-Forwarded-For, X-Request-Id, traceparent, tracestate).
// Shared by the router's caller, the policies and the proxy; the copy pass is src/proxy/upstream-headers.ts.
import { isIPv6 } from 'node:net'
import { BAD_HOST, BAD_HOST_COUNT, BAD_TRANSFER_ENCODING, EXPECTATION_FAILED, type Refusal } from '../errors.js'

/** What pass 1 learned about a request. One instance per request, every field assigned in order. */
export class RequestHeaderFacts {
  host: string | undefined = undefined
  connectionTokens: string[] | null = null
  forwardedFor: string | null = null
  incomingRequestId: string | null = null
  traceparent: string | null = null
  traceparentCount = 0
  tracestate: string | null = null
  hasChunkedBody = false
  contentLength = -1
  expectContinue = false
  upgrade = false
  /** headers.allowUnderscores is off: names with `_` are not sent upstream (src/proxy/upstream-headers.ts). */
  dropUnderscoreNames = false
  /** An HTTP/2 stream (README "HTTP/2"): pseudo-headers in the raw list, cookies split, no connection headers. */
  isH2 = false

  /** The request has a body (chunked, or a Content-Length above 0). */
  hasBody(): boolean {
    return this.hasChunkedBody || this.contentLength > 0
  }
}

/** Pass 1. Returns a refusal for framing the gateway will not forward, else null. */
export function scanRequestHeaders(raw: readonly string[], facts: RequestHeaderFacts): Refusal | null {
  let hostCount = 0
  let teCount = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    // Cheap first-character filter: most headers are none of the ones we interpret.
    const c = name.charCodeAt(0) | 0x20
    if (c !== 0x68 && c !== 0x74 && c !== 0x63 && c !== 0x78 && c !== 0x65 && c !== 0x75) continue // h t c x e u
    const lower = name.toLowerCase()
    const value = raw[i + 1]!
    switch (lower) {
      case 'host':
        hostCount++
        if (hostCount === 1) facts.host = value
        break
      case 'transfer-encoding':
        teCount++
        // RFC 9112 §6.3 and README "Headers": anything but exactly one `chunked` is ambiguous framing. Node joins split TE headers,
        // so `gzip` + `chunked` on two lines would otherwise pass as "gzip, chunked".
        if (value.length !== 7 || value.toLowerCase() !== 'chunked') return BAD_TRANSFER_ENCODING
        facts.hasChunkedBody = true
        break
      case 'content-length':
        // llhttp already rejected duplicates, CL+TE and junk values.
        facts.contentLength = Number(value)
        break
      case 'connection':
        addConnectionTokens(facts, value)
        break
      case 'expect':
        if (value.toLowerCase() !== '100-continue') return EXPECTATION_FAILED
        facts.expectContinue = true
        break
      case 'x-forwarded-for':
        facts.forwardedFor = facts.forwardedFor === null ? value : facts.forwardedFor + ', ' + value
        break
      case 'x-request-id':
        if (facts.incomingRequestId === null && isUsableRequestId(value)) facts.incomingRequestId = value
        break
      case 'traceparent':
        facts.traceparentCount++
        facts.traceparent = value
        break
      case 'tracestate':
        facts.tracestate = facts.tracestate === null ? value : facts.tracestate + ',' + value
        break
      case 'upgrade':
        facts.upgrade = true
        break
    }
  }
  if (teCount > 1) return BAD_TRANSFER_ENCODING
  if (hostCount > 1) return BAD_HOST_COUNT
  if (hostCount === 1 && !isValidHost(facts.host!)) return BAD_HOST
  return null
}

// reg-name characters accepted in Host: ALPHA DIGIT - . _ ~ (RFC 3986 unreserved). Sub-delims and
// percent-encoding are valid reg-name too, but no DNS name needs them, and `,` `@` `;` only serve tricks.
const HOST_CHAR = new Uint8Array(128)
for (let c = 0x30; c <= 0x39; c++) HOST_CHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) HOST_CHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) HOST_CHAR[c] = 1
for (const ch of '-._~') HOST_CHAR[ch.charCodeAt(0)] = 1

/**
 * RFC 9110 §7.2 `Host = uri-host [ ":" port ]`: a reg-name (letters, digits, `- . _ ~`; IPv4 is one) or
 * `[IPv6]`, then optionally `:` and 1 to 5 digits up to 65535. `api.example.com:80@evil.example`, `a, b`,
 * `a b`, `a:` and `a:99999` are not. One charCode scan; only an IPv6 literal is sliced.
 */
export function isValidHost(value: string): boolean {
  const len = value.length
  let i = 0
  if (value.charCodeAt(0) === 0x5b) { // '[' IPv6 ']'
    i = value.indexOf(']')
    if (i < 0 || !isIPv6(value.slice(1, i))) return false
    i++
  } else {
    for (; i < len; i++) {
      const c = value.charCodeAt(i)
      if (c === 0x3a) break // ':'
      if (c >= 0x80 || HOST_CHAR[c] !== 1) return false
    }
    if (i === 0) return false
  }
  if (i === len) return true
  if (value.charCodeAt(i) !== 0x3a) return false
  const digits = len - i - 1
  if (digits < 1 || digits > 5) return false
  let port = 0
  for (let j = i + 1; j < len; j++) {
    const c = value.charCodeAt(j)
    if (c < 0x30 || c > 0x39) return false
    port = port * 10 + c - 0x30
  }
  return port <= 65535
}

function addConnectionTokens(facts: RequestHeaderFacts, value: string): void {
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase()
    if (t === '' || t === 'close' || t === 'keep-alive') continue
    ;(facts.connectionTokens ??= []).push(t)
  }
}

function isUsableRequestId(value: string): boolean {
  if (value.length === 0 || value.length > 200) return false
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

