// The request path, in order. Hot path.
//
//   fixed, for every request:   framing scan -> draining -> canonical path -> match -> route checks
//   per route (table-built):    route.steps (access list, key auth, limiters, breaker admission, bulkhead), in order
//   then:                       forward (forward.ts)
//
// A route step returns Next.Continue, Next.Done (it answered) or Next.Suspend (it will call ex.resume()
// when its store answers): the exchange remembers where it stopped (stepIndex), so a suspended request
// needs no closure to go on.
import {
  BAD_ENCODED_SLASH, BAD_HOST, BAD_HTTP_VERSION, BAD_SCHEME, CONFLICTING_AUTHORITY, METHOD_NOT_ALLOWED, MISSING_AUTHORITY, MISSING_HOST, badRequest,
  PAYLOAD_TOO_LARGE, type Refusal, ROUTE_NOT_FOUND, SHUTTING_DOWN, BAD_UPGRADE_BODY, WEBSOCKET_NOT_ENABLED,
} from '../errors.js'
import { canonicalizeTarget } from '../http/canonical-path.js'
import { randomIds, requestIdFrom } from '../http/ids.js'
import { isValidHost, scanRequestHeaders } from '../http/request-facts.js'
import { Next } from '../http/request-step.js'
import type { Exchange } from './exchange.js'
import { forward } from './forward.js'

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})
const OPTIONS_STAR_ALLOW = 'GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH'

/**
 * Runs a new request through the fixed steps, then its route's. `refusal`: the connection already knows the
 * request is refused (client-connection.ts: its body framing broke while it waited).
 */
export function startExchange(ex: Exchange, sendContinue: boolean, refusal: Refusal | null): void {
  const req = ex.req
  ex.begin()
  ex.sendContinue = sendContinue
  ex.isH2 = req.httpVersionMajor === 2

  // 1. Framing: HTTP/1.x, one valid Host (required by HTTP/1.1), one Transfer-Encoding: chunked, a known
  // Expect (src/http/request-facts.ts). Every refusal here closes the connection (client-connection.ts).
  const table = ex.table
  ex.dropUnderscoreNames = !table.config.headers.allowUnderscores
  const framing = refusal ?? scanRequestHeaders(req.rawHeaders, ex)
  ex.ids = randomIds()
  ex.requestId = ex.incomingRequestId ?? requestIdFrom(ex.ids)
  if (framing !== null) return ex.refuse(framing, true)
  if (ex.isH2) {
    const h2 = checkH2Request(ex)
    if (h2 !== null) return ex.refuse(h2, false)
  } else {
    if (req.httpVersionMajor !== 1) return ex.refuse(BAD_HTTP_VERSION, true)
    if (ex.host === undefined && req.httpVersionMinor === 1) return ex.refuse(MISSING_HOST, true)
  }
  // An upgrade's body bytes are never parsed (Node detached its parser): refused, not guessed at.
  if (ex.isUpgrade && ex.hasBody()) return ex.refuse(BAD_UPGRADE_BODY, true)

  // 2. Draining: new requests are refused with Connection: close once shutdown began.
  if (ex.state.draining) return ex.refuse(SHUTTING_DOWN, true)

  // 3. The one canonical path: what is matched is what is forwarded (src/http/canonical-path.ts).
  const method = req.method ?? 'GET'
  const target = canonicalizeTarget(req.url ?? '', method, ex.host, table.pathPolicy)
  if ('rejected' in target) return ex.refuse(badRequest(target.reason), ex.hasBody())
  if (target.path === '*') return answerOptionsStar(ex)
  ex.canonicalPath = target.path
  ex.query = target.query

  // 4. Match.
  const match = table.router.match(method, ex.host, target.path, table.matchesHeaders ? req.headers : NO_HEADERS)
  if (match === null) return ex.refuse(ROUTE_NOT_FOUND, false)
  if (match.value === null) return ex.refuse(METHOD_NOT_ALLOWED, false, undefined, match.allow)
  const route = match.value
  ex.route = route
  // A split route's upstream is chosen by its split step, after the limiters: until then it has none.
  ex.upstream = route.split === null ? route.upstream : null
  ex.params = match.params

  // 5. Route checks: an encoded slash where the route does not allow one; 413 from Content-Length before
  // reading the body.
  if (target.hasEncodedSlash && !route.allowEncodedSlash) return ex.refuse(BAD_ENCODED_SLASH, true)
  if (ex.contentLength > route.maxBodyBytes) return ex.refuse(PAYLOAD_TOO_LARGE, true)
  // A WebSocket upgrade goes on only where the route allows it (README "WebSocket"); never forwarded otherwise.
  if (ex.upgradeHead !== null && !route.websocket) return ex.refuse(WEBSOCKET_NOT_ENABLED, true)

  runRouteSteps(ex)
}

/** The route's own steps from ex.stepIndex on, then forward. Also how a suspended request goes on. */
export function runRouteSteps(ex: Exchange): void {
  const steps = ex.route!.steps
  for (let i = ex.stepIndex; i < steps.length; i++) {
    // Set before run(): a store that answers at once resumes from the right step.
    ex.stepIndex = i + 1
    if (steps[i]!.run(ex) !== Next.Continue) return
  }
  ex.stepIndex = steps.length
  forward(ex)
}

/**
 * An HTTP/2 stream (README "HTTP/2"). node:http2 (nghttp2) already refused, with RST_STREAM, what RFC 9113
 * §8.2-8.3 calls malformed: missing, repeated, unknown or late pseudo-headers, upper-case names,
 * connection-specific headers (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), a TE
 * other than "trailers", and a body longer or shorter than its Content-Length. Left here: the host.
 * RFC 9113 §8.3.1: `:authority` is the host; a Host header that names another one makes the request malformed
 * (400), and one without `:authority` is the host; neither is 400. A :scheme other than http or https is 400. The body: a stream whose HEADERS did not
 * end it has one, of unknown length without Content-Length, counted against maxBodySize as it streams.
 */
function checkH2Request(ex: Exchange): Refusal | null {
  const h2 = ex.req as unknown as { authority?: string; scheme?: string; stream: { endAfterHeaders: boolean } }
  // RFC 9113 §8.3.1 does not restrict :scheme; a gateway in front of HTTP services serves only these two.
  if (h2.scheme !== 'https' && h2.scheme !== 'http') return BAD_SCHEME
  const authority = h2.authority
  if (authority !== undefined && authority !== '') {
    if (ex.host !== undefined && ex.host.toLowerCase() !== authority.toLowerCase()) return CONFLICTING_AUTHORITY
    if (!isValidHost(authority)) return BAD_HOST
    ex.host = authority
  } else if (ex.host === undefined) {
    return MISSING_AUTHORITY
  }
  if (ex.contentLength < 0 && !h2.stream.endAfterHeaders) ex.hasChunkedBody = true
  return null
}

function answerOptionsStar(ex: Exchange): void {
  ex.status = 204
  ex.res.writeHead(204, ['x-request-id', ex.requestId, 'allow', OPTIONS_STAR_ALLOW])
  ex.res.end()
  ex.complete()
}
