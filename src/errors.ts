// The catalogue of error codes. Few classes, many codes, every code with one meaning.
// README.md's "Error codes" table is kept in sync with GATEWAY_ERRORS by test/errors.test.ts.

export type ErrorCode =
  | 'BAD_REQUEST'
  | 'ROUTE_NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'REQUEST_TIMEOUT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'PAYLOAD_TOO_LARGE'
  | 'EXPECTATION_FAILED'
  | 'RATE_LIMITED'
  | 'PLUGIN_FAILED'
  | 'UPSTREAM_UNAVAILABLE'
  | 'CIRCUIT_OPEN'
  | 'NO_HEALTHY_UPSTREAM'
  | 'OVERLOADED'
  | 'RATE_LIMIT_UNAVAILABLE'
  | 'SHUTTING_DOWN'
  | 'UPSTREAM_TIMEOUT'

/** A response the gateway makes itself (README.md "Error codes"). Frozen, made once: no stack per refusal. */
export interface Refusal {
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
}

function refusal(status: number, code: ErrorCode, message: string): Refusal {
  return Object.freeze({ status, code, message })
}

export const BAD_REQUEST = refusal(400, 'BAD_REQUEST', 'malformed or forbidden request')
export const ROUTE_NOT_FOUND = refusal(404, 'ROUTE_NOT_FOUND', 'no route matches this request')
export const METHOD_NOT_ALLOWED = refusal(405, 'METHOD_NOT_ALLOWED', 'the route does not allow this method')
export const REQUEST_TIMEOUT = refusal(408, 'REQUEST_TIMEOUT', 'the client was too slow to send the request')
export const UNAUTHORIZED = refusal(401, 'UNAUTHORIZED', 'no valid credentials for this route')
/** Key auth (src/policy/auth/): no key in the header or query parameter. Sent with WWW-Authenticate. */
export const MISSING_KEY = refusal(401, 'UNAUTHORIZED', 'no API key in the request')
/** Key auth: a key that belongs to no consumer. Never echoes the key. */
export const INVALID_KEY = refusal(401, 'UNAUTHORIZED', 'the API key is not valid')
/** JWT auth: no `Authorization: Bearer` token. */
export const MISSING_TOKEN = refusal(401, 'UNAUTHORIZED', 'no bearer token in the request')
/** JWT auth: a bad signature, algorithm, issuer, audience, nbf, sub or key id. Says no more (the token is not echoed). */
export const INVALID_TOKEN = refusal(401, 'UNAUTHORIZED', 'the bearer token is not valid')
/** JWT auth: the token's exp (plus the leeway) has passed. */
export const EXPIRED_TOKEN = refusal(401, 'UNAUTHORIZED', 'the bearer token has expired')
/** Basic auth: no `Authorization: Basic` credentials. */
export const MISSING_CREDENTIALS = refusal(401, 'UNAUTHORIZED', 'no basic credentials in the request')
/** Basic auth: malformed credentials, an unknown user or a wrong password (which one is not said). */
export const INVALID_CREDENTIALS = refusal(401, 'UNAUTHORIZED', 'the user name or password is not valid')
export const FORBIDDEN = refusal(403, 'FORBIDDEN', 'the request is not allowed on this route')
/** A WebSocket upgrade on a route without `websocket: true` (src/proxy/websocket-upgrade.ts); Envoy answers 403 too. */
export const WEBSOCKET_NOT_ENABLED = refusal(403, 'FORBIDDEN', 'WebSocket upgrades are not enabled on this route')
/** A route's access list (src/policy/access/) refused the client address. */
export const FORBIDDEN_ADDRESS = refusal(403, 'FORBIDDEN', 'the client address is not allowed on this route')
/** A route's auth.allow does not list the authenticated consumer (src/policy/auth/consumer-step.ts). */
export const FORBIDDEN_CONSUMER = refusal(403, 'FORBIDDEN', 'the consumer is not allowed on this route')
/** A route plugin's onRequest or onResponse threw or ran past its timeout (src/policy/plugins/). */
export const PLUGIN_FAILED = refusal(500, 'PLUGIN_FAILED', 'a plugin of this route failed')
export const PAYLOAD_TOO_LARGE = refusal(413, 'PAYLOAD_TOO_LARGE', 'the request body is larger than maxBodySize')
export const EXPECTATION_FAILED = refusal(417, 'EXPECTATION_FAILED', 'only "Expect: 100-continue" is supported')
export const RATE_LIMITED = refusal(429, 'RATE_LIMITED', 'rate limit exceeded')
export const UPSTREAM_UNAVAILABLE = refusal(502, 'UPSTREAM_UNAVAILABLE', 'the upstream could not be reached or sent a broken response')
export const CIRCUIT_OPEN = refusal(503, 'CIRCUIT_OPEN', 'the circuit breaker for this route is open')
export const NO_HEALTHY_UPSTREAM = refusal(503, 'NO_HEALTHY_UPSTREAM', 'no upstream target is available')
export const OVERLOADED = refusal(503, 'OVERLOADED', 'the upstream has reached maxConcurrent in-flight requests')
export const RATE_LIMIT_UNAVAILABLE = refusal(503, 'RATE_LIMIT_UNAVAILABLE', 'the rate limit store is unavailable')
export const SHUTTING_DOWN = refusal(503, 'SHUTTING_DOWN', 'the gateway is shutting down')
export const UPSTREAM_TIMEOUT = refusal(504, 'UPSTREAM_TIMEOUT', 'the upstream did not answer in time')

const badRequests = new Map<string, Refusal>()

/**
 * 400 BAD_REQUEST saying which rule refused the request (`dot segment in the path`), never echoing the
 * input. One frozen value per rule, made on first use: a refusal allocates nothing.
 */
export function badRequest(rule: string): Refusal {
  let r = badRequests.get(rule)
  if (r === undefined) {
    r = refusal(400, 'BAD_REQUEST', `malformed or forbidden request: ${rule}`)
    badRequests.set(rule, r)
  }
  return r
}

export const BAD_TRANSFER_ENCODING = badRequest('Transfer-Encoding other than exactly one "chunked" (ambiguous framing)')
export const BAD_HOST_COUNT = badRequest('more than one Host header')
export const BAD_ENCODED_SLASH = badRequest("encoded slash (%2F) in the path, which this route does not allow")
export const BAD_BODY_FRAMING = badRequest('the request body framing is broken (chunk size or delimiter)')
export const BAD_HOST = badRequest('Host is not a valid host[:port]')
export const MISSING_HOST = badRequest('HTTP/1.1 request without a Host header')
export const BAD_HTTP_VERSION = badRequest('HTTP/0.9 request (only HTTP/1.0 and HTTP/1.1 are served)')
export const MISSING_AUTHORITY = badRequest('HTTP/2 request without :authority or Host')
export const BAD_SCHEME = badRequest(':scheme is neither http nor https')
export const CONFLICTING_AUTHORITY = badRequest('Host names another host than :authority (RFC 9113 §8.3.1)')
export const BAD_CONNECT = badRequest('CONNECT is not supported: the gateway is not a forward proxy')
export const BAD_UPGRADE_BODY = badRequest('an Upgrade request with a body')
export const BAD_FRAMING = badRequest('the request could not be parsed as HTTP/1.1 (framing, header syntax or size)')

/** Every gateway-made response, in status order: the source of README's error table. */
export const GATEWAY_ERRORS: readonly Refusal[] = Object.freeze([
  BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, ROUTE_NOT_FOUND, METHOD_NOT_ALLOWED, REQUEST_TIMEOUT, PAYLOAD_TOO_LARGE,
  EXPECTATION_FAILED, RATE_LIMITED, PLUGIN_FAILED, UPSTREAM_UNAVAILABLE, CIRCUIT_OPEN, NO_HEALTHY_UPSTREAM,
  OVERLOADED, RATE_LIMIT_UNAVAILABLE, SHUTTING_DOWN, UPSTREAM_TIMEOUT,
])

export class GatewayError extends Error {
  override name = 'GatewayError'
  constructor(readonly code: ErrorCode | 'CONFIG_INVALID', readonly status: number, message: string,
              options?: ErrorOptions) {
    super(message, options)
  }
}

/** One problem in a config source, located as precisely as we can: `file:line:col path`. */
export interface ConfigIssue {
  readonly where: string   // 'routes.yaml:14:9' or 'etcd /tollgate/routes/users (rev 812)' or 'TOLLGATE_LISTEN'
  readonly path: string    // 'routes[2].rateLimit[0].burst' ('' for the whole document)
  readonly message: string // what was expected, what was found, what to do
  readonly severity: 'error' | 'warning'
}

export function formatIssue(issue: ConfigIssue): string {
  const path = issue.path === '' ? '' : ` ${issue.path}:`
  return `${issue.where}${path} ${issue.message}`
}

/** All the errors of one config source at once. */
export class ConfigError extends GatewayError {
  override name = 'ConfigError'
  constructor(readonly issues: readonly ConfigIssue[]) {
    super('CONFIG_INVALID', 500, issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n'))
  }
}
