// How an upstream attempt failed: one taxonomy for `retry.on` today and, next, the circuit breaker's
// `failOn` and passive health checks. `classifyError` maps what undici and the socket layer report to it.
//
// A failure is the upstream's only when the upstream (or the path to it) caused it: a client that went away
// (TOLLGATE_CLIENT_GONE) or sent too large a body (TOLLGATE_BODY_TOO_LARGE) is `ClientCaused`, which no
// policy counts against a target.

import type { Refusal } from '../errors.js'

/** Failure kinds, as named in `retry.on` / `failOn` (`connect-failure`, `reset`, `timeout`). */
export const FailureKind = { None: 0, ConnectFailure: 1, Reset: 2, Timeout: 3, ClientCaused: 4, Other: 5 } as const
export type FailureKind = (typeof FailureKind)[keyof typeof FailureKind]

/** The `retry.on` / `failOn` word for each kind that config can name. */
export const FAILURE_NAMES: Readonly<Record<string, FailureKind>> = Object.freeze({
  'connect-failure': FailureKind.ConnectFailure,
  reset: FailureKind.Reset,
  timeout: FailureKind.Timeout,
})

/** The kind of an error from undici's dispatch (onError) or the gateway's own abort reasons. */
export function classifyError(err: Error): FailureKind {
  switch ((err as { code?: string }).code) {
    case 'ECONNREFUSED': case 'ENOTFOUND': case 'EHOSTUNREACH': case 'ENETUNREACH': case 'EAI_AGAIN':
    case 'UND_ERR_CONNECT_TIMEOUT': case 'EADDRNOTAVAIL':
      return FailureKind.ConnectFailure
    case 'TOLLGATE_RESPONSE_TIMEOUT': case 'UND_ERR_HEADERS_TIMEOUT': case 'UND_ERR_BODY_TIMEOUT':
      return FailureKind.Timeout
    case 'ECONNRESET': case 'EPIPE': case 'UND_ERR_SOCKET': case 'UND_ERR_CLOSED':
      return FailureKind.Reset
    case 'TOLLGATE_CLIENT_GONE': case 'TOLLGATE_BODY_TOO_LARGE': case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return FailureKind.ClientCaused
    default:
      return isTlsFailure(err) ? FailureKind.ConnectFailure : FailureKind.Other
  }
}

// The target's certificate did not verify, or the handshake failed (an https:// target, README "Upstreams
// over HTTPS"): no connection was made, as Envoy counts a TLS handshake failure as a connect failure.
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_HANDSHAKE_TIMEOUT', 'EPROTO',
])

function isTlsFailure(err: Error): boolean {
  const code = (err as { code?: string }).code
  return code !== undefined && (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_'))
}

/** True for a connect timeout: answered 504 UPSTREAM_TIMEOUT although its kind is ConnectFailure. */
export function isConnectTimeout(err: Error): boolean {
  return (err as { code?: string }).code === 'UND_ERR_CONNECT_TIMEOUT'
}

/**
 * What one request came to, read once when it ends (src/proxy/record.ts fans it out: metrics today; the
 * breaker, passive health, the span and the access log). The exchange implements it, so no
 * object is made per request.
 */
export interface Outcome {
  /** Status sent to the client (499 when the client left first, 0 if none could be sent). */
  readonly status: number
  /** Why the last attempt failed; None when the upstream answered (whatever the status). */
  readonly failure: FailureKind
  /** The client ended the exchange early or sent what could not be forwarded: not the upstream's fault. */
  readonly causedByClient: boolean
  /** Upstream attempts made (0: answered by the gateway). */
  readonly attempts: number
  /** `host:port` of the last target tried, null when none was. */
  readonly lastTarget: string | null
  /** Request body bytes forwarded upstream. */
  readonly bytesIn: number
  /** Response body bytes written to the client (also those of a response the gateway made). */
  readonly bytesOut: number
  /** From the first byte of the request head being handled to the end of the response, in ms. */
  readonly durationMs: number
  /** What the route's circuit breaker admitted it as: 0 closed or none, > 0 a half-open trial, -1 refused. */
  readonly breakerAdmission: number
  /** The X-Request-Id of the request. */
  readonly requestId: string
  /** The W3C trace id (32 hex digits) the request belongs to: the incoming traceparent's, else the gateway's. */
  readonly traceId: string
  /** The request's 80 random hex digits (src/http/ids.ts) its own ids were taken from; '' when none were made. */
  readonly ids: string
  /** The client's X-Request-Id when requestId is that, else null (requestId was made from ids). */
  readonly incomingRequestId: string | null
  /** The caller's span id when the trace was continued; null when it started here (traceId is ids[0, 32)). */
  readonly parentSpanId: string | null
  /** The path as matched and logged (src/http/canonical-path.ts), without the query; '' when it was refused before. */
  readonly canonicalPath: string
  /** The upstream it was sent to (a breaker's fallback upstream included), null when none. */
  readonly upstreamName: string | null
  /** The gateway-made response it got (src/errors.ts), null when the upstream's response was relayed. */
  readonly refusal: Refusal | null
  /** protocol: grpc upstreams: the grpc-status the response ended with (trailers, or headers of a trailers-only response); -1 none. */
  readonly grpcStatus: number
  /** The consumer the route's auth identified (README "Authentication"), null when none. */
  readonly consumer: string | null
  /** The client's HTTP version as node:http gives it: "1.1", "1.0" or "2.0". */
  readonly httpVersion: string
}
