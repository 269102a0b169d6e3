// Header hygiene in both directions (SPEC §6, PITFALLS A2/A3).
//
// Request side, two passes over req.rawHeaders (already in memory; no req.headers object is built):
//   1. scan: validate framing (one Host, Transfer-Encoding exactly "chunked" on one line, Expect), collect the
//      client's Connection tokens and the headers we interpret (X-Forwarded-For, X-Request-Id, traceparent).
//   2. copy: everything except hop-by-hop headers (RFC 9110 §7.6.1: Connection and every header it lists,
//      plus the fixed list), framing headers (we re-frame) and untrusted forwarding headers; THEN append the
//      gateway's own headers, so a client's `Connection: x-forwarded-for` can never remove them
//      (GHSA-gwhp-pf74-vj37).
// Response side: the same hop-by-hop list is removed from the upstream response before it reaches the client.
import { BlockList, isIPv6 } from 'node:net'
import { randomFillSync, randomUUID } from 'node:crypto'
import { BAD_REQUEST, EXPECTATION_FAILED, type Refusal } from '../errors.js'
import { HOP_BY_HOP_NAMES, NameKind, knownName } from './header-names.js'

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

  /** The request has a body (chunked, or a Content-Length above 0). */
  hasBody(): boolean {
    return this.hasChunkedBody || this.contentLength > 0
  }
}

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
        // SPEC §6: anything but exactly one `chunked` is ambiguous framing. Node joins split TE headers,
        // so `gzip` + `chunked` on two lines would otherwise pass as "gzip, chunked".
        if (value.length !== 7 || value.toLowerCase() !== 'chunked') return BAD_REQUEST
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
  if (hostCount > 1 || teCount > 1) return BAD_REQUEST
  return null
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

/** A fresh request id (UUID v4), off the hot path (errors Node reports before a request exists). */
export function newRequestId(): string {
  return randomUUID()
}

const HOP_BY_HOP = new Set(HOP_BY_HOP_NAMES)

/** RFC 9110 §7.6.1 and SPEC §6: never forwarded in either direction (Upgrade handled by the caller). */
function isHopByHop(lower: string): boolean {
  return HOP_BY_HOP.has(lower)
}

/** Which peers may set forwarding headers: SPEC `clientIp.trustedProxies`, built once per config. */
export class TrustedProxies {
  readonly #list: BlockList | null

  constructor(cidrs: readonly string[]) {
    if (cidrs.length === 0) {
      this.#list = null
      return
    }
    const list = new BlockList()
    for (const cidr of cidrs) {
      const [address = '', bits] = cidr.split('/')
      const family = isIPv6(address) ? 'ipv6' : 'ipv4'
      if (bits === undefined) list.addAddress(address, family)
      else list.addSubnet(address, Number(bits), family)
    }
    this.#list = list
  }

  isTrusted(peer: string): boolean {
    if (this.#list === null) return false
    return isIPv6(peer) ? this.#list.check(peer, 'ipv6') : this.#list.check(peer, 'ipv4')
  }

  /** Client address: X-Forwarded-For read right to left, skipping trusted proxies (PITFALLS A3). */
  clientIp(peer: string, forwardedFor: string | null): string {
    if (forwardedFor === null || !this.isTrusted(peer)) return peer
    const parts = forwardedFor.split(',')
    for (let i = parts.length - 1; i >= 0; i--) {
      const ip = parts[i]!.trim()
      if (ip !== '' && !this.isTrusted(ip)) return ip
    }
    return parts[0]!.trim() || peer
  }
}

/** `::ffff:127.0.0.1` -> `127.0.0.1`, so IPv4 CIDRs and logs see the address people expect. */
export function peerAddress(remote: string | undefined): string {
  if (remote === undefined) return ''
  return remote.startsWith('::ffff:') && remote.indexOf('.') > 0 ? remote.slice(7) : remote
}

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const ZERO_TRACE = '00000000000000000000000000000000'
const ZERO_SPAN = '0000000000000000'

/**
 * W3C Trace Context: keep a valid incoming trace id and make the gateway the parent; an invalid or
 * duplicated traceparent starts a new trace (and its tracestate is dropped).
 */
export function nextTraceparent(facts: RequestHeaderFacts, ids: string): string {
  const incoming = facts.traceparentCount === 1 ? facts.traceparent : null
  if (incoming !== null) {
    const m = TRACEPARENT_RE.exec(incoming.trim())
    if (m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN) return '00-' + m[1] + '-' + ids.slice(32, 48) + '-' + m[3]
  }
  facts.tracestate = null
  return '00-' + ids.slice(0, 32) + '-' + ids.slice(32, 48) + '-00'
}

/**
 * Pass 2: the header list sent upstream, as undici's flat [name, value, ...] array.
 * Client hop-by-hop processing happens first; the gateway's own headers are appended last.
 */
export function buildUpstreamHeaders(
  raw: readonly string[], facts: RequestHeaderFacts, trusted: boolean, peer: string, hostHeader: string,
  forwardedHost: string, requestId: string, traceparent: string, keepUpgrade: boolean,
): string[] {
  // Host first, at a fixed index: hostHeader 'target' patches out[1] per attempt.
  const out: string[] = ['host', hostHeader]
  const listed = facts.connectionTokens
  let hasProto = false
  let hasFwdHost = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    const lower = name.toLowerCase()
    if (isHopByHop(lower)) continue
    if (listed !== null && listed.includes(lower)) continue
    switch (lower) {
      case 'host': case 'content-length': case 'expect': case 'x-request-id': case 'traceparent': case 'tracestate':
      case 'x-forwarded-for':
        continue // re-added below from validated values
      case 'upgrade':
        if (!keepUpgrade) continue
        break
      case 'forwarded': case 'x-real-ip':
        if (!trusted) continue
        break
      default:
        if (lower.startsWith('x-forwarded-')) {
          if (!trusted) continue
          if (lower === 'x-forwarded-proto') hasProto = true
          else if (lower === 'x-forwarded-host') hasFwdHost = true
        } else if (!keepUpgrade && lower.startsWith('sec-websocket-')) {
          continue
        }
    }
    out.push(name, raw[i + 1]!)
  }
  if (facts.contentLength >= 0 && !facts.hasChunkedBody) out.push('content-length', String(facts.contentLength))
  if (keepUpgrade && facts.upgrade) out.push('connection', 'upgrade')
  out.push('x-forwarded-for', trusted && facts.forwardedFor !== null ? facts.forwardedFor + ', ' + peer : peer)
  if (!hasProto) out.push('x-forwarded-proto', 'http')
  if (!hasFwdHost) out.push('x-forwarded-host', forwardedHost)
  out.push('x-request-id', requestId)
  out.push('traceparent', traceparent)
  if (facts.tracestate !== null) out.push('tracestate', facts.tracestate)
  return out
}

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
 */
export function buildResponseHeaders(raw: readonly Buffer[], requestId: string, close: boolean, body: ResponseBody): string[] {
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
    if (kind === NameKind.Drop) continue
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
