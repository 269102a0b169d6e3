// The request headers sent upstream (pass 2 over req.rawHeaders; pass 1 is src/http/request-facts.ts).
// Everything except hop-by-hop headers (RFC 9110 §7.6.1: Connection and every header it lists, plus the
// fixed list), framing headers (we re-frame) and untrusted forwarding headers; THEN the gateway's own
// headers are appended, so a client's `Connection: x-forwarded-for` can never remove them
// (GHSA-gwhp-pf74-vj37). On an authenticated route the credential header (the key header, or Authorization) and any client-sent consumer header are dropped
// and the authenticated consumer is appended.
import type { RequestHeaderFacts } from '../http/request-facts.js'
import type { CredentialStrip } from '../policy/auth/auth-step.js'
import { HOP_BY_HOP_NAMES } from './header-names.js'

const HOP_BY_HOP = new Set(HOP_BY_HOP_NAMES)

/** RFC 9110 §7.6.1: never forwarded in either direction (Upgrade is handled by the caller). */
function isHopByHop(lower: string): boolean {
  return HOP_BY_HOP.has(lower)
}

/**
 * Pass 2: the header list sent upstream, as undici's flat [name, value, ...] array.
 * Client hop-by-hop processing happens first; the gateway's own headers are appended last.
 */
export function buildUpstreamHeaders(
  raw: readonly string[], facts: RequestHeaderFacts, trusted: boolean, peer: string, hostHeader: string,
  forwardedHost: string, requestId: string, traceparent: string, keepUpgrade: boolean, scheme: 'http' | 'https' = 'http',
  credential: CredentialStrip | null = null, consumer: string | null = null,
): string[] {
  // Host first, at a fixed index: hostHeader 'target' patches out[1] per attempt.
  const out: string[] = ['host', hostHeader]
  const listed = facts.connectionTokens
  let hasProto = false
  let hasFwdHost = false
  const dropUnderscores = facts.dropUnderscoreNames
  const isH2 = facts.isH2
  let cookies: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (isH2) {
      // HTTP/2 pseudo-headers (:method, :path, :scheme, :authority) become the request line and Host.
      if (name.charCodeAt(0) === 0x3a) continue
      // RFC 9113 §8.2.3: a client may split Cookie into one field per pair; towards HTTP/1.1 they are one
      // field joined with "; ".
      if (name === 'cookie') {
        cookies = cookies === null ? raw[i + 1]! : cookies + '; ' + raw[i + 1]!
        continue
      }
    }
    // `X_Forwarded_For`, `Content_Length`...: Rack, WSGI and CGI servers read `_` as `-` (README "Headers").
    if (dropUnderscores && name.indexOf('_') !== -1) continue
    const lower = name.toLowerCase()
    if (isHopByHop(lower)) continue
    // A WebSocket handshake lists Upgrade in Connection; on a websocket route it is the one listed header kept.
    if (listed !== null && listed.includes(lower) && !(keepUpgrade && lower === 'upgrade')) continue
    // An authenticated route: the key header is the credential, and the consumer header is the gateway's to set.
    if (credential !== null && (lower === credential.keyHeader || lower === credential.forwardConsumer)) continue
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
  if (cookies !== null) out.push('cookie', cookies)
  if (facts.contentLength >= 0 && !facts.hasChunkedBody) out.push('content-length', String(facts.contentLength))
  if (keepUpgrade && facts.upgrade) out.push('connection', 'upgrade')
  out.push('x-forwarded-for', trusted && facts.forwardedFor !== null ? facts.forwardedFor + ', ' + peer : peer)
  if (!hasProto) out.push('x-forwarded-proto', scheme)
  if (!hasFwdHost) out.push('x-forwarded-host', forwardedHost)
  out.push('x-request-id', requestId)
  out.push('traceparent', traceparent)
  if (facts.tracestate !== null) out.push('tracestate', facts.tracestate)
  if (credential !== null && consumer !== null) out.push(credential.forwardConsumer, consumer)
  return out
}

/**
 * route.forwardClientCert: `name` (lower case) carries the verified client certificate's subject, and only
 * that: whatever the client sent under that name is removed first, so it cannot claim an identity. Runs
 * only on routes that set it.
 */
export function setClientCertHeader(out: string[], name: string, subject: string | null): void {
  for (let i = out.length - 2; i >= 2; i -= 2) {
    if (out[i]!.toLowerCase() === name) out.splice(i, 2)
  }
  if (subject !== null) out.push(name, subject)
}
