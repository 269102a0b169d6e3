// The one description of routes.yaml and of etcd values (README.md "Configuration" and "Running several
// instances against etcd"). Types, validation, defaults and schema/routes.schema.json all come from here.
// Every field has a description: it is the reference text.
import { Type, type StaticDecode } from '@sinclair/typebox'
import { parseDurationMs, parseSizeBytes } from './units.js'

const strict = { additionalProperties: false } as const

/**
 * A duration string: `250ms`, `5s`, `1m`, `1h`, or a sum such as `1m30s`. In the loaded Config it is a
 * number of milliseconds (load.ts decodes it once), so nothing downstream parses it again.
 */
export const Duration = (description: string, def?: string) =>
  Type.Transform(Type.String({ pattern: DURATION_PATTERN, description: `${description} Duration, e.g. 250ms, 5s, 1m.`, ...(def === undefined ? {} : { default: def }) }))
    .Decode((text) => parseDurationMs(text))
    .Encode((ms) => `${ms}ms`)

/** A size: bytes as an integer, or a string such as `512KiB`, `10MiB`, `1GiB`, `100kB`. A number of bytes in the loaded Config. */
export const Size = (description: string, def?: string) =>
  Type.Transform(Type.Union([
    Type.Integer({ minimum: 0 }),
    Type.String({ pattern: SIZE_PATTERN }),
  ], { description: `${description} Size in bytes, or e.g. 512KiB, 10MiB.`, ...(def === undefined ? {} : { default: def }) }))
    .Decode((v) => parseSizeBytes(v))
    .Encode((bytes) => bytes)

export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$'
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?\\s*(B|b|KiB|MiB|GiB|kB|KB|MB|GB)?$'

const Address = (description: string, def: string) =>
  Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]*):[0-9]{1,5}$', description: `${description} host:port.`, default: def })

const HttpUrl = (description: string) =>
  Type.String({ pattern: '^https?://[^/?#\\s]+/?$', description: `${description} http://host:port (no path).` })

/** A share written as a percent string, `20%` or `12.5%` (how retry.budget is written). A number of percent in the loaded Config. */
const Percent = (description: string, def: string) =>
  Type.Transform(Type.String({ pattern: PERCENT_PATTERN, description: `${description} Percent, e.g. 20%.`, default: def }))
    .Decode((text) => Number(text.slice(0, -1)))
    .Encode((percent) => `${percent}%`)

export const PERCENT_PATTERN = '^(100(\\.0+)?|[0-9]{1,2}(\\.[0-9]+)?)%$'

const Ratio = (description: string, def?: number) =>
  Type.Number({ minimum: 0, maximum: 1, description, ...(def === undefined ? {} : { default: def }) })

export const ClientIp = Type.Object({
  trustedProxies: Type.Array(Type.String({ pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$' }), {
    default: [],
    description: 'CIDRs of proxies in front of the gateway. X-Forwarded-For is read right to left, skipping these; from any other peer it is replaced by the peer address.',
  }),
}, { ...strict, default: {}, description: 'How the client address is found.' })

export const Limits = Type.Object({
  maxBodySize: Size('Largest request body; larger bodies get 413. Routes may override.', '10MiB'),
  headersTimeout: Duration('Time a client has to send the request headers; slower clients get 408 and are closed.', '10s'),
  requestTimeout: Duration('Time a client has to send the whole request, body included.', '60s'),
  keepAliveTimeout: Duration('Idle time before a client keep-alive connection is closed.', '5s'),
  maxLimiterKeys: Type.Integer({ minimum: 1, default: 100000, description: 'Per-key limiter state kept in memory (LRU).' }),
}, { ...strict, default: {}, description: 'Server-side limits for client connections.' })

export const Paths = Type.Object({
  mergeSlashes: Type.Boolean({ default: true, description: 'Merge repeated slashes (//a -> /a) before matching and forwarding.' }),
  rejectSemicolon: Type.Boolean({ default: true, description: "Reject ';' in the path with 400 (servlet-style parameters are a bypass)." }),
  allowEncodedSlash: Type.Boolean({ default: false, description: "Allow '%2F' in the path (forwarded still encoded); else 400. A route may override." }),
}, { ...strict, default: {}, description: 'Path canonicalization policy.' })

export const Headers = Type.Object({
  allowUnderscores: Type.Boolean({
    default: false,
    description: "Forward request header names containing '_' (X_Forwarded_For, Content_Length...). Off: they are dropped, as nginx's underscores_in_headers off does, because Rack, WSGI and CGI servers read '_' as '-'.",
  }),
}, { ...strict, default: {}, description: 'Request header policy towards the upstream.' })

export const Shutdown = Type.Object({
  delay: Duration('After SIGTERM, keep serving this long while /readyz answers 503.', '0s'),
  timeout: Duration('Then stop accepting and wait this long for in-flight requests.', '30s'),
}, { ...strict, default: {}, description: 'Graceful shutdown.' })

export const EtcdTls = Type.Object({
  ca: Type.Optional(Type.String({ description: 'Path of the CA certificate (PEM).' })),
  cert: Type.Optional(Type.String({ description: 'Path of the client certificate (PEM).' })),
  key: Type.Optional(Type.String({ description: 'Path of the client key (PEM).' })),
}, { ...strict, description: 'TLS towards etcd.' })

export const Etcd = Type.Object({
  endpoints: Type.Array(Type.String({ pattern: '^https?://' }), { minItems: 1, default: ['http://127.0.0.1:2379'], description: 'etcd endpoints.' }),
  prefix: Type.String({ pattern: '^/', default: '/tollgate', description: 'Key prefix of routes/, upstreams/ and services/.' }),
  snapshotFile: Type.String({ default: '.tollgate/etcd-snapshot.json', description: 'Last good etcd config, used to start when etcd is down.' }),
  username: Type.Optional(Type.String({ description: 'etcd user (auth).' })),
  password: Type.Optional(Type.String({ description: 'etcd password (auth).' })),
  tls: Type.Optional(EtcdTls),
}, { ...strict, description: 'etcd as a config source (optional).' })

/** A PEM file named in routes.yaml: relative paths are read from the config file's directory (config/tls-files.ts). */
const PemFile = (description: string) => Type.String({ minLength: 1, description: `${description} PEM file; a relative path is read from the config file's directory.` })

export const TlsCertificate = Type.Object({
  cert: PemFile('Certificate chain (leaf first).'),
  key: PemFile('Private key of the certificate.'),
}, { ...strict, description: 'A certificate and its key; the names it serves are its subjectAltName DNS entries (the subject CN when it has none).' })

export const Tls = Type.Object({
  certificates: Type.Array(TlsCertificate, { minItems: 1, description: 'Chosen by SNI against each certificate\'s names (wildcards included); the first is the default for an unknown or missing name.' }),
  minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2', description: 'Oldest TLS version accepted.' }),
  clientAuth: Type.Optional(Type.Object({
    ca: PemFile('CA certificates that sign client certificates.'),
    required: Type.Boolean({ default: false, description: 'true: a handshake without a valid client certificate fails. false: a certificate is asked for and verified when sent.' }),
  }, { ...strict, description: 'Client certificates (mTLS).' })),
}, { ...strict, description: 'TLS on the proxy listener; absent: plaintext HTTP. The files are read at load and again when they change.' })

export const UpstreamTls = Type.Object({
  ca: Type.Optional(PemFile('CA certificates the targets\' certificates must chain to; default: Node\'s bundled public CAs.')),
  cert: Type.Optional(PemFile('Client certificate the gateway presents to the targets (mTLS); needs key.')),
  key: Type.Optional(PemFile('Private key of cert.')),
  servername: Type.Optional(Type.String({
    pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$',
    description: 'Server name sent in SNI and that the target\'s certificate must carry; default: the target\'s host (no SNI for an IP address, whose certificate must then name that IP).',
  })),
}, { ...strict, description: 'TLS towards https:// targets (and their active health probes). The files are read at load and again when they change; a certificate that does not verify is a connect failure (502), never a plaintext retry.' })

const RedisUrl = (description: string) => Type.String({ pattern: '^rediss?://[^\\s]+$', description })

export const Redis = Type.Object({
  url: Type.Optional(RedisUrl('One Redis: redis://user:pass@host:port/db, or rediss:// for TLS. Either url or cluster.')),
  cluster: Type.Optional(Type.Array(RedisUrl('A seed node.'), { minItems: 1, description: 'Redis Cluster seed nodes (redis://host:port) instead of url.' })),
  timeout: Duration('Per decision; then the limiter\'s onStoreError applies.', '50ms'),
}, { ...strict, description: 'Redis for cluster-scope rate limits (optional): url, or cluster.' })

export const Log = Type.Object({
  level: Type.Union([
    Type.Literal('trace'), Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error'),
    Type.Literal('fatal'), Type.Literal('silent'),
  ], {
    default: 'info',
    description: 'Lowest level written. TOLLGATE_LOG_LEVEL overrides it and applies from the first line, before the file is read. Reloads apply it.',
  }),
  format: Type.Union([Type.Literal('json'), Type.Literal('pretty')], {
    default: 'json',
    description: 'json: one JSON object per line. pretty: for people, through pino-pretty when it is installed (else JSON, with a warning). Reloads apply it.',
  }),
  access: Type.Boolean({
    default: true,
    description: 'One JSON line per request (msg "access"), written at info: a level above info hides it too. Reloads apply it.',
  }),
}, { ...strict, default: {}, description: 'Logs: JSON lines on stdout.' })

export const Tracing = Type.Object({
  exporter: Type.Union([Type.Literal('none'), Type.Literal('otlp'), Type.Literal('console')], { default: 'none', description: 'Where spans go.' }),
  endpoint: Type.String({ default: 'http://127.0.0.1:4318/v1/traces', description: 'OTLP/HTTP traces endpoint.' }),
  serviceName: Type.String({ default: 'tollgate', description: 'service.name of the spans.' }),
  sampleRatio: Ratio('Sampling ratio for traces that start here.', 0.01),
  parentBased: Type.Boolean({ default: true, description: 'Follow the sampled flag of an incoming traceparent.' }),
}, { ...strict, default: {}, description: 'OpenTelemetry tracing.' })

export const Target = Type.Object({
  url: HttpUrl('Target address.'),
  weight: Type.Integer({ minimum: 1, maximum: 1000, default: 1, description: 'Relative share of traffic.' }),
}, { ...strict, description: 'One upstream target.' })

const StatusRange = Type.Union([
  Type.Integer({ minimum: 100, maximum: 599 }),
  Type.String({ pattern: '^[1-5][0-9]{2}(-[1-5][0-9]{2})?$' }),
])

export const ActiveHealthCheck = Type.Object({
  path: Type.String({ pattern: '^/', default: '/healthz', description: 'Path probed on each target.' }),
  interval: Duration('Time between probes.', '5s'),
  timeout: Duration('Probe timeout.', '1s'),
  healthyThreshold: Type.Integer({ minimum: 1, default: 2, description: 'Consecutive successes that mark a target healthy.' }),
  unhealthyThreshold: Type.Integer({ minimum: 1, default: 3, description: 'Consecutive failures that mark a target unhealthy.' }),
  expectStatus: Type.Array(StatusRange, { default: ['200-399'], description: 'Statuses (or ranges "200-399") that count as healthy.' }),
  grpcService: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.]*$', description: 'protocol: grpc only: probe with the gRPC health protocol (grpc.health.v1.Health/Check) for this service ("" = the server as a whole) instead of GET path; healthy when it answers SERVING.' })),
}, { ...strict, description: 'Active probes.' })

export const PassiveHealthCheck = Type.Object({
  consecutiveFailures: Type.Integer({ minimum: 1, default: 5, description: 'Consecutive failed requests that eject a target.' }),
  ejectionTime: Duration('Base ejection time; multiplied by the times ejected, capped at maxEjectionTime.', '30s'),
  maxEjectionTime: Duration('Longest ejection.', '300s'),
  maxEjectionPercent: Type.Integer({ minimum: 0, maximum: 100, default: 50, description: 'At most this share of targets ejected, checked after the ejection it would allow.' }),
}, { ...strict, description: 'Passive ejection from real traffic.' })

export const RetryOn = Type.Union([
  Type.Literal('connect-failure'), Type.Literal('reset'), Type.Literal('timeout'), Type.Literal('5xx'),
  Type.Integer({ minimum: 500, maximum: 599 }),
], { description: 'connect-failure | reset | timeout | 5xx | a status 500-599.' })

export const Retry = Type.Object({
  attempts: Type.Integer({ minimum: 0, maximum: 10, default: 2, description: 'Extra attempts; only idempotent methods; never after response bytes were sent.' }),
  on: Type.Array(RetryOn, { default: ['connect-failure', 'reset', 502, 503, 504], description: 'Failures that are retried.' }),
  backoff: Duration('Base of the full-jitter exponential back-off, capped at 10x.', '25ms'),
  budget: Percent('Retry budget: retries in progress may be at most this share of the requests in flight to the upstream (at least 3 at a time); over it a retry is skipped.', '20%'),
}, { ...strict, description: 'Retries on another target.' })

export const Upstream = Type.Object({
  protocol: Type.Union([Type.Literal('http'), Type.Literal('grpc')], {
    default: 'http', description: 'http (HTTP/1.1 to the targets) | grpc (HTTP/2 to the targets: h2c for http://, TLS for https://; trailers relayed; gateway refusals answered as gRPC statuses).',
  }),
  targets: Type.Array(Target, { default: [], description: 'Static targets; registered instances from etcd join them.' }),
  balancer: Type.Union([Type.Literal('round-robin'), Type.Literal('least-request'), Type.Literal('random'), Type.Literal('hash')], {
    default: 'round-robin', description: 'round-robin (smooth weighted) | least-request (power of two choices) | random | hash (consistent hashing on hashKey).',
  }),
  hashKey: Type.Optional(Type.String({ pattern: '^(client-ip|path|header:[!#$%&\'*+.^_`|~0-9A-Za-z-]+|query:[^\\s]+)$', description: 'For balancer: hash. client-ip | path | header:<name> | query:<name>.' })),
  hostHeader: Type.String({ default: 'pass', minLength: 1, description: "pass (the client's Host) | target (the target's host:port) | a fixed host." }),
  timeouts: Type.Object({
    connect: Duration('No connection within this: 504.', '2s'),
    response: Duration('No response headers within this: 504.', '30s'),
  }, { ...strict, default: {}, description: 'Upstream timeouts.' }),
  retry: Type.Optional(Retry),
  maxConcurrent: Type.Optional(Type.Integer({ minimum: 1, description: 'In-flight requests to this upstream; over it: 503 OVERLOADED.' })),
  healthCheck: Type.Optional(Type.Object({
    active: Type.Optional(ActiveHealthCheck),
    passive: Type.Optional(PassiveHealthCheck),
  }, { ...strict, description: 'Health checks.' })),
  onAllUnhealthy: Type.Union([Type.Literal('route-all'), Type.Literal('fail')], { default: 'route-all', description: 'route-all (panic: try every target) | fail (503 NO_HEALTHY_UPSTREAM).' }),
  tls: Type.Optional(UpstreamTls),
}, { ...strict, description: 'A named group of targets.' })

export const LimitKey = Type.String({
  pattern: '^(client-ip|route|consumer|client-cert|header:[!#$%&\'*+.^_`|~0-9A-Za-z-]+|query:[^,\\s]+)(,(client-ip|route|consumer|client-cert|header:[!#$%&\'*+.^_`|~0-9A-Za-z-]+|query:[^,\\s]+))*$',
  default: 'client-ip',
  description: 'client-ip | route | consumer (the route\'s authenticated consumer; needs auth) | client-cert (the verified client certificate\'s subject; needs tls.clientAuth) | header:<name> | query:<name>; "a,b" combines keys.',
})

const Scope = Type.Union([Type.Literal('local'), Type.Literal('cluster')], { default: 'local', description: 'local (this instance) | cluster (shared through Redis).' })
const OnStoreError = Type.Union([Type.Literal('local'), Type.Literal('allow'), Type.Literal('deny')], { default: 'local', description: 'When Redis fails: local (fall back to a local limiter) | allow | deny (503).' })
const LimiterName = Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]+$', description: 'Label in metrics and headers; default: the algorithm and position.' }))

export const TokenBucketLimit = Type.Object({
  name: LimiterName,
  algorithm: Type.Literal('token-bucket'),
  rate: Type.Number({ exclusiveMinimum: 0, description: 'Tokens added per period.' }),
  period: Duration('Period of rate.', '1s'),
  burst: Type.Optional(Type.Integer({ minimum: 1, description: 'Bucket size; default: rate.' })),
  key: LimitKey,
  scope: Scope,
  onStoreError: OnStoreError,
}, { ...strict, description: 'Token bucket: rate tokens per period, the bucket holds burst.' })

export const SlidingWindowLimit = Type.Object({
  name: LimiterName,
  algorithm: Type.Literal('sliding-window'),
  limit: Type.Integer({ minimum: 1, description: 'Requests per window.' }),
  window: Duration('Window length.', '1m'),
  key: LimitKey,
  scope: Scope,
  onStoreError: OnStoreError,
}, { ...strict, description: 'Sliding-window counter: the previous window weighted by its overlap.' })

export const RateLimit = Type.Union([TokenBucketLimit, SlidingWindowLimit])

export const CircuitBreaker = Type.Object({
  window: Duration('Rolling window, in 10 buckets.', '10s'),
  minRequests: Type.Integer({ minimum: 1, default: 20, description: 'No trip below this many calls in the window.' }),
  errorRate: Type.Number({ minimum: 1, maximum: 100, default: 50, description: 'Percent of failed calls that opens the breaker.' }),
  openFor: Duration('Time open before half-open.', '5s'),
  halfOpenRequests: Type.Integer({ minimum: 1, default: 1, description: 'Trial calls; all succeed -> closed, any fails -> open again.' }),
  failOn: Type.Array(Type.Union([
    Type.Literal('5xx'), Type.Literal('timeout'), Type.Literal('connect-failure'), Type.Integer({ minimum: 500, maximum: 599 }),
    Type.Literal('grpc-unknown'), Type.Literal('grpc-deadline-exceeded'), Type.Literal('grpc-resource-exhausted'),
    Type.Literal('grpc-unimplemented'), Type.Literal('grpc-internal'), Type.Literal('grpc-unavailable'), Type.Literal('grpc-data-loss'),
  ]), {
    default: ['5xx', 'timeout', 'connect-failure'], description: 'Outcomes that count as failures. grpc-<status>: a gRPC response (HTTP 200) ending with that grpc-status.',
  }),
  fallback: Type.Optional(Type.Union([
    Type.Object({
      status: Type.Integer({ minimum: 200, maximum: 599, description: 'Status of the fallback response.' }),
      body: Type.String({ default: '', description: 'Body of the fallback response.' }),
      headers: Type.Record(Type.String(), Type.String(), { default: {}, description: 'Headers of the fallback response.' }),
    }, strict),
    Type.Object({ upstream: Type.String({ description: 'Send to this upstream instead while open.' }) }, strict),
  ], { description: 'What an open breaker answers: a fixed response or another upstream.' })),
}, { ...strict, description: 'Hystrix-style circuit breaker, one per route.' })

export const RouteMatch = Type.Object({
  path: Type.String({ pattern: '^/', description: 'Static segments, :name (one segment), * (the rest, may be empty; last segment only).' }),
  methods: Type.Optional(Type.Array(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Z-]+$' }), { minItems: 1, description: 'Allowed methods (upper case); default: any. GET implies HEAD.' })),
  host: Type.Optional(Type.String({ pattern: '^(\\*\\.)?[A-Za-z0-9.-]+$', description: 'Exact host or *.example.com; default: any. Port and case are ignored.' })),
  headers: Type.Optional(Type.Record(Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }), Type.String(), { description: 'Exact header matches.' })),
}, { ...strict, description: 'What requests this route takes.' })

export const Rewrite = Type.Union([
  Type.Object({ stripPrefix: Type.String({ pattern: '^/', description: 'Prefix removed from the canonical path; an empty result forwards /.' }) }, strict),
  Type.Object({ path: Type.String({ pattern: '^/', description: 'Path template; :name refers to a route parameter, * to the wildcard.' }) }, strict),
], { description: 'Path rewrite before forwarding.' })

const Cidr = Type.String({ pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$', description: 'A CIDR (10.0.0.0/8, 2001:db8::/32) or one address (/32, /128).' })

export const Access = Type.Object({
  allow: Type.Array(Cidr, { default: [], description: 'When not empty, only client addresses in these CIDRs are served; others get 403.' }),
  deny: Type.Array(Cidr, { default: [], description: 'Client addresses in these CIDRs get 403 FORBIDDEN, even when allow lists them.' }),
}, { ...strict, description: 'Client address lists, checked first, on the address the client-ip limiter key sees (X-Forwarded-For past clientIp.trustedProxies). IPv4-mapped IPv6 clients match IPv4 CIDRs.' })

const HeaderName = (description: string, def?: string) =>
  Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$', description, ...(def === undefined ? {} : { default: def }) })

export const KeyConsumer = Type.Object({
  keyHash: Type.String({ pattern: '^sha256:[0-9a-f]{64}$', description: 'sha256: + the lower-case hex SHA-256 of the key (printf %s KEY | sha256sum). The key itself is never in the config.' }),
}, { ...strict, description: 'One consumer of key auth.' })

export const KeyAuth = Type.Object({
  header: HeaderName('Header carrying the key; removed before forwarding.', 'x-api-key'),
  query: Type.Optional(Type.String({ pattern: '^[^&=#\\s]+$', description: 'Query parameter carrying the key when the header is absent; removed before forwarding (the other parameters keep their order and bytes).' })),
  consumers: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.@-]+$' }), KeyConsumer, { description: 'Consumers by name; the name is what forwardConsumer and the consumer limiter key carry.' }),
}, { ...strict, description: 'API key auth.' })

/** JWS algorithms a route may accept (jose's names); `none` is not one of them, ever. */
export const JWT_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const

export const JwtAuth = Type.Object({
  secret: Type.Optional(Type.String({ minLength: 1, description: 'HMAC secret for HS256/HS384/HS512 (at least 32 bytes); write it as ${VAR} to keep it out of the file.' })),
  publicKey: Type.Optional(Type.String({ minLength: 1, description: 'Public key for RS*/PS*/ES*/EdDSA: a PEM file (a relative path is read from the config file\'s directory) or the PEM text itself (the only form in etcd).' })),
  jwks: Type.Optional(Type.String({ pattern: '^https?://', description: 'JWKS URL: fetched at load, again on an unknown kid (at most once per 30 s); while it cannot be fetched the last good keys stay in use.' })),
  issuer: Type.Optional(Type.String({ minLength: 1, description: 'Required iss claim.' })),
  audience: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], { description: 'Required aud: the token must name this audience (or one of these).' })),
  algorithms: Type.Optional(Type.Array(Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a))), { minItems: 1, uniqueItems: true, description: 'Accepted alg values (default: HS256 with secret, RS256 with jwks, the key\'s own with publicKey). HMAC and public-key algorithms never mix.' })),
  leeway: Duration('Clock skew allowed on exp and nbf.', '0s'),
}, { ...strict, description: 'JWT (Bearer token) auth: exactly one of secret, publicKey, jwks. The consumer is the sub claim.' })

export const BasicConsumer = Type.Object({
  passwordHash: Type.String({ pattern: '^\\$(2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{53}|argon2(id|i|d)\\$.+)$', description: 'bcrypt ($2b$...) or argon2 ($argon2id$...) hash of the password; the password itself is never in the config.' }),
}, { ...strict, description: 'One consumer of basic auth.' })

export const BasicAuth = Type.Object({
  consumers: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.@-]+$' }), BasicConsumer, { description: 'Consumers by user name; the name is what forwardConsumer and the consumer limiter key carry.' }),
}, { ...strict, description: 'HTTP basic auth (RFC 7617) against bcrypt or argon2 hashes.' })

export const Auth = Type.Object({
  type: Type.Union([Type.Literal('key'), Type.Literal('jwt'), Type.Literal('basic')], { description: 'key (API keys), jwt (Bearer tokens) or basic (user and password); the matching key:, jwt: or basic: block configures it.' }),
  key: Type.Optional(KeyAuth),
  jwt: Type.Optional(JwtAuth),
  basic: Type.Optional(BasicAuth),
  forwardConsumer: HeaderName('Header the upstream receives with the consumer name; one the client sent is replaced.', 'x-consumer'),
  allow: Type.Optional(Type.Array(Type.String({ pattern: '^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,254}[\\x21-\\x7e])?$' }), {
    minItems: 1, uniqueItems: true,
    description: 'Consumers allowed on the route (Kong\'s ACL, APISIX\'s consumer-restriction): another consumer with valid credentials gets 403 FORBIDDEN. key/basic: names under consumers; jwt: sub values.',
  })),
}, { ...strict, description: 'Authentication of the route\'s requests: missing or unknown credentials get 401 UNAUTHORIZED.' })

const TOKEN = '[!#$%&\'*+.^_`|~0-9A-Za-z-]+'

export const SplitEntry = Type.Object({
  upstream: Type.String({ minLength: 1, description: 'Name of the upstream.' }),
  weight: Type.Integer({ minimum: 0, maximum: 1000000, description: 'Share of the route\'s requests: weight / sum of the weights. 0 sends it nothing (its splitRules still may).' }),
}, { ...strict, description: 'One side of a weighted split.' })

export const SplitRule = Type.Object({
  match: Type.Object({
    headers: Type.Optional(Type.Record(Type.String({ pattern: `^${TOKEN}$` }), Type.String(), { description: 'Exact header values (names case-insensitive).' })),
    cookies: Type.Optional(Type.Record(Type.String({ pattern: `^${TOKEN}$` }), Type.String(), { description: 'Exact cookie values (names case-sensitive).' })),
  }, { ...strict, description: 'All must match.' }),
  upstream: Type.String({ minLength: 1, description: 'Where matching requests go.' }),
}, { ...strict, description: 'Requests that match go to one upstream, whatever the weights.' })

export const Mirror = Type.Object({
  upstream: Type.String({ minLength: 1, description: 'Upstream that receives the copies; its answers are discarded.' }),
  percent: Type.Number({ minimum: 0, maximum: 100, default: 100, description: 'Share of the route\'s forwarded requests that are copied.' }),
  maxBodySize: Size('Largest request body copied; a request with a bigger body is not mirrored (counted dropped).', '64KiB'),
  maxConcurrent: Type.Integer({ minimum: 1, default: 100, description: 'Copies of this route in flight (body being buffered or sent); over it a copy is dropped, so a slow mirror cannot hold memory.' }),
}, { ...strict, description: 'Fire-and-forget copies of requests to another upstream: never delays or fails the real response.' })

export const Plugin = Type.Object({
  module: Type.String({ minLength: 1, description: 'Path of the plugin, a JavaScript ES module, relative to this file (or absolute). It exports any of onRequest, onResponse, onLog and optionally configSchema (README "Plugins"). Re-imported on reload when its content changed.' }),
  config: Type.Record(Type.String(), Type.Unknown(), { default: {}, description: 'Handed to the plugin\'s hooks as ctx.config; checked against its configSchema at load.' }),
  timeout: Duration('Time budget of each hook call; past it (or on a throw) onRequest and onResponse answer 500 PLUGIN_FAILED.', '100ms'),
}, { ...strict, description: 'One plugin of the route (README "Plugins").' })

const routeFields = {
  match: RouteMatch,
  priority: Type.Integer({ default: 0, description: 'Tie-break between otherwise equal matches: higher wins.' }),
  upstream: Type.Union([
    Type.String({ minLength: 1, description: 'Name of the upstream.' }),
    Type.Array(SplitEntry, { minItems: 1, maxItems: 64, description: 'A weighted split: each request goes to one of these upstreams.' }),
  ], { description: 'Name of the upstream, or a weighted split [{ upstream, weight }, ...].' }),
  sticky: Type.Optional(Type.String({
    pattern: `^(client-ip|consumer|header:${TOKEN}|cookie:${TOKEN})$`,
    description: 'With a weighted split: client-ip | consumer (needs auth) | header:<name> | cookie:<name>. A key always goes to the same side while the weights stay; a request without it is split at random by weight.',
  })),
  splitRules: Type.Optional(Type.Array(SplitRule, { description: 'Checked in order before the weights: the first rule that matches chooses the upstream.' })),
  mirror: Type.Optional(Mirror),
  rewrite: Type.Optional(Rewrite),
  maxBodySize: Type.Optional(Size('Overrides limits.maxBodySize.')),
  allowEncodedSlash: Type.Optional(Type.Boolean({ description: 'true: %2F allowed in this route\'s params, forwarded still encoded.' })),
  websocket: Type.Boolean({ default: false, description: 'Allow WebSocket upgrades (GET with Upgrade: websocket): they pass the same steps as other requests (one limiter decision per connection), then frames are relayed both ways. Without it an upgrade attempt gets 403 FORBIDDEN and is never forwarded.' }),
  idleTimeout: Type.Optional(Duration('websocket routes: an upgraded connection with no traffic either way for this long is closed on both sides. Default 5m.')),
  access: Type.Optional(Access),
  auth: Type.Optional(Auth),
  forwardClientCert: Type.Optional(Type.String({
    pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$',
    description: 'Header that carries the verified client certificate\'s subject to the upstream (needs tls.clientAuth); a value the client sent in it is always removed.',
  })),
  rateLimit: Type.Optional(Type.Array(RateLimit, { description: 'All must admit; rejected requests are not counted.' })),
  circuitBreaker: Type.Optional(CircuitBreaker),
  tracing: Type.Optional(Type.Object({ sampleRatio: Ratio('Sampling ratio for this route.') }, strict)),
  plugins: Type.Optional(Type.Array(Plugin, { description: 'Plugins run in this order after auth and rate limits, before the circuit breaker (README "Plugins"). routes.yaml only: an etcd route cannot name code to run.' })),
}

const RouteId = Type.String({ pattern: '^[A-Za-z0-9_.:-]+$', maxLength: 128, description: 'Unique; the label in metrics, logs and /status.' })

export const Route = Type.Object({ id: RouteId, ...routeFields }, { ...strict, description: 'One route.' })
/** An etcd value under routes/<id>: the id may be omitted (it is the key). */
export const EtcdRoute = Type.Object({ id: Type.Optional(RouteId), ...routeFields }, { ...strict, description: 'One route stored in etcd.' })

export const Config = Type.Object({
  $schema: Type.Optional(Type.String({ description: 'Editor hint; ignored.' })),
  listen: Address('Proxy listener.', '0.0.0.0:8080'),
  admin: Address('Admin listener (metrics, health, status). Never the proxy port.', '127.0.0.1:9901'),
  tls: Type.Optional(Tls),
  http2: Type.Union([Type.Boolean(), Type.Literal('h2c')], {
    default: false,
    description: 'true: the TLS listener offers HTTP/2 by ALPN (h2) beside HTTP/1.1; needs tls:. h2c: the plaintext listener also takes HTTP/2 with prior knowledge (RFC 9113 §3.3) beside HTTP/1.1 on the same port; without tls: only. Applies at the next restart.',
  }),
  clientIp: ClientIp,
  limits: Limits,
  paths: Paths,
  headers: Headers,
  shutdown: Shutdown,
  etcd: Type.Optional(Etcd),
  redis: Type.Optional(Redis),
  log: Log,
  tracing: Tracing,
  upstreams: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }), Upstream, { default: {}, description: 'Upstreams by name.' }),
  routes: Type.Array(Route, { default: [], description: 'Routes, in priority order after the matching rules.' }),
}, {
  ...strict,
  $id: 'https://tollgate.dev/schema/routes.schema.json',
  title: 'Tollgate routes.yaml',
  description: 'Configuration of the Tollgate API gateway.',
})

/**
 * The loaded config: validated, defaults applied, durations in ms and sizes in bytes, deep-frozen; `tls`
 * with its files read and checked (config/tls-files.ts), so a cluster worker gets the PEM with its config.
 */
export type Config = Omit<StaticDecode<typeof Config>, 'tls' | 'upstreams'> & {
  tls?: LoadedTls
  upstreams: Record<string, Upstream>
}

/** One certificate of `tls:` as loaded: absolute paths, the PEM text, the names it serves. */
export interface LoadedCertificate {
  readonly cert: string
  readonly key: string
  readonly certPem: string
  readonly keyPem: string
  /** Lower-case DNS names, `*.example.com` for a wildcard. */
  readonly names: readonly string[]
  readonly subject: string
  readonly validTo: string
}

export interface LoadedTls {
  readonly certificates: readonly LoadedCertificate[]
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  readonly clientAuth?: { readonly ca: string; readonly caPem: string; readonly required: boolean }
}
/** An upstream's `tls:` as loaded: absolute paths and their PEM text, null when not set. */
export interface LoadedUpstreamTls {
  readonly ca: string | null
  readonly caPem: string | null
  readonly cert: string | null
  readonly certPem: string | null
  readonly key: string | null
  readonly keyPem: string | null
  readonly servername: string | null
}
export type Route = StaticDecode<typeof Route>
export type EtcdRoute = StaticDecode<typeof EtcdRoute>
/** An upstream as loaded: `tls` with its files read (config/tls-files.ts), so a cluster worker gets the PEM too. */
export type Upstream = Omit<StaticDecode<typeof Upstream>, 'tls'> & { tls?: LoadedUpstreamTls }
export type Target = StaticDecode<typeof Target>
export type RateLimit = StaticDecode<typeof RateLimit>
export type TokenBucketLimit = StaticDecode<typeof TokenBucketLimit>
export type SlidingWindowLimit = StaticDecode<typeof SlidingWindowLimit>
export type CircuitBreaker = StaticDecode<typeof CircuitBreaker>
export type Retry = StaticDecode<typeof Retry>
export type LogSettings = StaticDecode<typeof Log>
export type Rewrite = StaticDecode<typeof Rewrite>
export type Access = StaticDecode<typeof Access>
export type Auth = StaticDecode<typeof Auth>
export type SplitEntry = StaticDecode<typeof SplitEntry>
export type SplitRule = StaticDecode<typeof SplitRule>
export type Mirror = StaticDecode<typeof Mirror>
/** In the loaded Config `module` is absolute (load.ts resolves it against the config file's directory). */
export type Plugin = StaticDecode<typeof Plugin>
