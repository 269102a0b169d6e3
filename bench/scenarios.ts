// The load scenarios. Adding one is adding an entry here: what request to send, and optionally the
// Tollgate config to run it under and the peers worth comparing.
import { resolve } from 'node:path'
import { FAILURE_PATH } from './lib/bodies.js'
import { benchJwt } from './lib/bench-jwt.js'

export interface Scenario {
  readonly name: string
  /** One line for the table heading. */
  readonly description: string
  readonly path: string
  readonly method?: string
  readonly body?: string
  /** Request headers sent with every request of the scenario (an API key), by the load generator and the answer checks. */
  readonly headers?: Readonly<Record<string, string>>
  /**
   * Tollgate's routes.yaml for this scenario; default: one catch-all route (minimalConfig). `redisUrl` is the
   * bench's own redis-server when the scenario needsRedis, else null; `otlpEndpoint` its OTLP receiver when the
   * scenario needsOtlpReceiver, else null.
   */
  readonly tollgateConfig?: (upstreamUrl: string, redisUrl: string | null, otlpEndpoint: string | null) => string
  /** Peers to run; default: every peer. */
  readonly peers?: readonly string[]
  /** Skip the whole scenario when Tollgate cannot run it (it is what the scenario measures). */
  readonly needsTollgate?: boolean
  /** Skip Tollgate (and so the scenario, with needsTollgate) while its start-up log says a setting is "not enforced". */
  readonly needsEnforcedPolicies?: boolean
  /** Start a local redis-server for the scenario (bench/lib/redis.ts); skip the scenario without one. */
  readonly needsRedis?: boolean
  /** Run an OTLP/HTTP receiver beside the peers (bench/lib/otlp-sink.ts): where Tollgate's spans go. */
  readonly needsOtlpReceiver?: boolean
  /**
   * With tollgate, also run peer tollgate-core: Tollgate with the one-route config (the core path of scenario
   * small), interleaved with the others, so that the scenario's checks compare runs of the same minutes.
   */
  readonly hasCoreBaseline?: boolean
  /**
   * Every repetition starts its peers afresh (and warms them up), instead of one set of processes for all
   * repetitions. Where two processes of one build differ by less than their layout does: two gateways with the
   * same config, alternated on one core, differed by -0.7 to +2.1 us of CPU per request as medians of 10 pairs,
   * one figure per pair of processes (A/A, /tmp perf runs of issue 11). That is more than the 1 us a limit target
   * allows, and it stays the same for every repetition of one set of processes: fresh ones average it out.
   */
  readonly freshPeers?: boolean
  /**
   * What the scenario's peers must answer (tollgate-core excepted: it always runs CORE_PATH), when not a 2xx with
   * the upstream's bytes. One response is checked before the warm-up and again after the measured runs (else the
   * peer is skipped, or the scenario gets a note and a failed run), and the errors column counts the responses the
   * load generator saw on the wrong side of 2xx/3xx. `tollgateError`: the x-tollgate-error code of a response
   * Tollgate makes itself, or null for the upstream's own response passed through (its bytes then checked too).
   */
  readonly expect?: { readonly status: number, readonly tollgateError: string | null }
  /**
   * Tollgate writes its access log (one JSON line per request, into the peer's log file). Off otherwise, in
   * tollgate-core too (TOLLGATE_LOG_ACCESS=false): the other peers log no requests either (nginx: access_log off).
   */
  readonly accessLog?: boolean
  /** Extra command-line arguments of peer tollgate, and of peer tollgate-core (e.g. --workers). */
  readonly tollgateArgs?: readonly string[]
  readonly coreArgs?: readonly string[]
  /**
   * Cores the peers get, when the machine has one more than that for the load generator and upstream (else
   * the one proxy core, and a note says so).
   */
  readonly proxyCores?: number
  /**
   * How the load generator talks to the peers: plaintext HTTP/1.1 (default), `tls` (HTTP/1.1 over TLS with
   * keep-alive: wrk, or the undici loop) or `h2` (HTTP/2 over TLS, ALPN h2: h2load). The peers listen with the
   * bench's certificate (bench/lib/certs.ts); the upstream stays plaintext HTTP/1.1.
   */
  readonly protocol?: 'tls' | 'h2'
  /** Unmeasured requests sent to each peer (tollgate-core excepted) before its answer is checked: e.g. the failure that opens a breaker. */
  readonly primeRequests?: number
}

/** The request of scenario small (GET /, 2 bytes): what tollgate-core is sent in every scenario, its core path. */
export const CORE_PATH = '/'

/** One upstream, one catch-all route. */
export const minimalConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - { id: r0, match: { path: /* }, upstream: up }
`

/** n routes /svc<i>/v1/items/:id, all to the same upstream. */
export function manyRoutesConfig(n: number): (upstreamUrl: string) => string {
  return (upstreamUrl) => {
    const lines = [`upstreams:\n  up: { targets: [{ url: ${upstreamUrl} }] }\nroutes:`]
    for (let i = 0; i < n; i++) lines.push(`  - { id: svc${i}, match: { path: /svc${i}/v1/items/:id }, upstream: up }`)
    return `${lines.join('\n')}\n`
  }
}

/** The two local limiters of policies, limits and full-chain: limits far above what the bench can send. */
const LOCAL_LIMITS = `    rateLimit:
      - { algorithm: token-bucket, rate: 100000000, period: 1s, key: client-ip }
      - { algorithm: sliding-window, limit: 100000000, window: 1m, key: route }
`

/**
 * Every per-request policy on the success path: two local limiters with limits far above what the bench can
 * send (nothing refused), a circuit breaker with the default settings (the upstream never fails, so it stays
 * closed and records every request) and passive health checks on the upstream (counting every response, never
 * ejecting).
 */
const policiesConfig = (upstreamUrl: string): string => `upstreams:
  up:
    targets: [{ url: ${upstreamUrl} }]
    healthCheck: { passive: { consecutiveFailures: 5 } }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
${LOCAL_LIMITS}    circuitBreaker: { window: 10s, minRequests: 20, errorRate: 50, openFor: 5s }
`

/** The API key scenario key-auth sends, and its hash in keyAuthConfig (sha256 of the key). */
const BENCH_API_KEY = 'bench-key-0123456789abcdef'

/**
 * Scenario policies with an access list (the bench's own address allowed, a CIDR denied) and key auth in front:
 * each request's key is hashed (SHA-256) and looked up, checked against auth.allow and counted in
 * tollgate_consumer_requests_total, the key header stripped and x-consumer added (issue 17).
 */
const keyAuthConfig = (upstreamUrl: string): string => `${policiesConfig(upstreamUrl)}    access: { allow: [127.0.0.0/8, "::1"], deny: [192.0.2.0/24] }
    auth:
      type: key
      key: { header: x-api-key, consumers: { bench: { keyHash: "sha256:95ab1ab43a1c769ff93ba02eec3f4f81c077398c1691a00ae8628abd43901779" }, other: { keyHash: "sha256:0000000000000000000000000000000000000000000000000000000000000000" } } }
      forwardConsumer: x-consumer
      allow: [bench]
`

/** bench/plugins/set-header.mjs from dist/bench/ (the build does not copy it: it is plain JavaScript). */
const BENCH_PLUGIN = resolve(import.meta.dirname, '../../bench/plugins/set-header.mjs')

/**
 * One route with one synchronous onRequest plugin that sets one upstream header (README "Plugins"): the per-request
 * cost of the plugin machinery (a ctx per request, the hook call, its timing, the header applied) over the core path.
 */
const pluginConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
    plugins:
      - { module: ${BENCH_PLUGIN}, config: { value: "1" } }
`

/**
 * Scenario key-auth's access list, with JWT auth instead of the API key: RS256 against a public key (PEM in the
 * config), issuer and audience checked, the same token on every request, so after the first request each one
 * costs the verification cache's lookup, not an RSA verification (issue 17 item 6). Authorization is stripped
 * and x-consumer added as with key auth.
 */
const jwtAuthConfig = (upstreamUrl: string): string => `${policiesConfig(upstreamUrl)}    access: { allow: [127.0.0.0/8, "::1"], deny: [192.0.2.0/24] }
    auth:
      type: jwt
      jwt: { publicKey: ${JSON.stringify(benchJwt().publicKeyPem)}, issuer: "https://idp.bench/", audience: bench, algorithms: [RS256] }
      forwardConsumer: x-consumer
`

/**
 * The two local limiters of scenario policies and nothing else: what they cost per request, apart from the
 * breaker and passive health that policies adds too (the ≤ 1 µs target of the local limiters, issue 11).
 */
const limitsConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
${LOCAL_LIMITS}`

/**
 * A breaker that opens on the first failure (primeRequests: one GET /500) and stays open for an hour: every
 * measured request is refused with 503 CIRCUIT_OPEN before anything is forwarded. No retry (none configured).
 */
const breakerOpenConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
    circuitBreaker: { window: 10s, minRequests: 1, errorRate: 1, openFor: 1h }
`

/**
 * Every request forwarded and answered 500 by the upstream, recorded as a failure by a breaker that can never
 * open (minRequests far above what a 10 s window can hold); no retry (none configured; 500 is not among the
 * default retry statuses anyway).
 */
const failingUpstreamConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
    circuitBreaker: { window: 10s, minRequests: 1000000000, errorRate: 1, openFor: 1h }
`

/**
 * One cluster-scope limiter, counted in the bench's redis-server, far above the load. onStoreError deny: a
 * store that fails shows as 503s in the errors column instead of being measured as the local fallback.
 */
function clusterLimitConfig(upstreamUrl: string, redisUrl: string | null): string {
  if (redisUrl === null) throw new Error('cluster-limit: no redis-server (the scenario needsRedis)')
  return `redis: { url: ${redisUrl} }
upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
    rateLimit:
      - { algorithm: token-bucket, rate: 100000000, period: 1s, key: client-ip, scope: cluster, onStoreError: deny }
`
}

/**
 * Tracing on, exported over OTLP/HTTP protobuf to the scenario's receiver, with `sampleRatio` of the requests
 * sampled. Every request still reads the incoming context, decides, and sends a traceparent.
 */
function tracingConfig(sampleRatio: number): (upstreamUrl: string, redisUrl: string | null, otlpEndpoint: string | null) => string {
  return (upstreamUrl, _redisUrl, otlpEndpoint) => {
    if (otlpEndpoint === null) throw new Error('tracing: no OTLP receiver (the scenario needsOtlpReceiver)')
    return `tracing: { exporter: otlp, endpoint: ${otlpEndpoint}, sampleRatio: ${sampleRatio} }
${minimalConfig(upstreamUrl)}`
  }
}

/**
 * Everything on at once (issue 15): the two local limiters of policies (never reached), a circuit breaker
 * (closed), passive and active health checks on the upstream (a probe of / every second), tracing with 1%
 * sampled and exported over OTLP to the scenario's receiver; the access log (Scenario.accessLog) and the
 * metrics are on as in production. `cluster`: one cluster-scope limiter on the bench's redis-server as well
 * (onStoreError deny: a failing store shows as errors, not as the local fallback measured).
 */
function fullChainConfig(cluster: boolean): (upstreamUrl: string, redisUrl: string | null, otlpEndpoint: string | null) => string {
  return (upstreamUrl, redisUrl, otlpEndpoint) => {
    if (otlpEndpoint === null) throw new Error('full-chain: no OTLP receiver (the scenario needsOtlpReceiver)')
    if (cluster && redisUrl === null) throw new Error('full-chain-cluster: no redis-server (the scenario needsRedis)')
    return `${cluster ? `redis: { url: ${redisUrl} }\n` : ''}tracing: { exporter: otlp, endpoint: ${otlpEndpoint}, sampleRatio: 0.01 }
upstreams:
  up:
    targets: [{ url: ${upstreamUrl} }]
    healthCheck:
      active: { path: /, interval: 1s, healthyThreshold: 1 }
      passive: { consecutiveFailures: 5 }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
${LOCAL_LIMITS}${cluster ? '      - { name: cluster, algorithm: token-bucket, rate: 100000000, period: 1s, key: client-ip, scope: cluster, onStoreError: deny }\n' : ''}    circuitBreaker: { window: 10s, minRequests: 20, errorRate: 50, openFor: 5s }
`
  }
}

/**
 * A 95/5 weighted split (README "Traffic splitting") between two upstreams that both name the bench upstream:
 * each request draws its side from the split's shuffled deck, then goes through that upstream's own pool.
 * `sticky`: the side comes from a hash of the x-user header instead (the scenario sends one).
 */
const splitConfig = (sticky: boolean) => (upstreamUrl: string): string => `upstreams:
  v1: { targets: [{ url: ${upstreamUrl} }] }
  v2: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: [{ upstream: v1, weight: 95 }, { upstream: v2, weight: 5 }]
${sticky ? '    sticky: header:x-user\n' : ''}`

/** One route whose every request is also copied to a mirror upstream (the bench upstream under another name). */
const mirrorConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
  shadow: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - { id: r0, match: { path: /* }, upstream: up, mirror: { upstream: shadow, percent: 100 } }
`

const REFERENCE_PEERS = ['tollgate', 'undici-stream'] as const
/** Tollgate alone (with its tollgate-core): the scenario measures one of its own paths against its core path. */
const TOLLGATE_ONLY = ['tollgate'] as const
/** The peers that speak TLS and HTTP/2 to clients (scenarios tls and h2). */
const TLS_PEERS: readonly string[] = ['tollgate', 'node-tls', 'nginx']

export const scenarios: readonly Scenario[] = [
  { name: 'small', description: 'GET / → 2 B', path: '/' },
  { name: '4k', description: 'GET /4k → 4 KiB', path: '/4k' },
  { name: '1m-stream', description: 'GET /1m → 1 MiB streamed', path: '/1m' },
  {
    name: 'routes-1k',
    description: 'GET /svc500/v1/items/42 with 1,000 routes in Tollgate\'s table',
    path: '/svc500/v1/items/42',
    tollgateConfig: manyRoutesConfig(1000),
    peers: REFERENCE_PEERS,
    needsTollgate: true,
  },
  {
    name: 'routes-10k',
    description: 'GET /svc5000/v1/items/42 with 10,000 routes in Tollgate\'s table',
    path: '/svc5000/v1/items/42',
    tollgateConfig: manyRoutesConfig(10_000),
    peers: REFERENCE_PEERS,
    needsTollgate: true,
  },
  {
    name: 'policies',
    description: 'GET / with two local rate limits (never reached), a circuit breaker (closed) and passive health checks',
    path: '/',
    tollgateConfig: policiesConfig,
    peers: REFERENCE_PEERS,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
  },
  {
    name: 'key-auth',
    description: 'GET / with an API key header: policies plus an access list and key auth (with auth.allow and the per-consumer counter)',
    path: '/',
    headers: { 'x-api-key': BENCH_API_KEY },
    tollgateConfig: keyAuthConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
  },
  {
    name: 'jwt-auth',
    description: 'GET / with an RS256 bearer token (the same one, so the verification cache hits): policies plus an access list and JWT auth',
    path: '/',
    get headers() { return { authorization: `Bearer ${benchJwt().token}` } },
    tollgateConfig: jwtAuthConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
  },
  {
    name: 'split',
    description: 'GET / through a 95/5 weighted split of two upstreams (one random draw per request)',
    path: '/',
    tollgateConfig: splitConfig(false),
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
  },
  {
    name: 'split-sticky',
    description: 'GET / through a 95/5 weighted split, sticky by the x-user header (one hash per request)',
    path: '/',
    headers: { 'x-user': 'user-4711' },
    tollgateConfig: splitConfig(true),
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
  },
  {
    name: 'mirror',
    description: 'GET / with every request also copied to a mirror upstream (twice the upstream requests)',
    path: '/',
    tollgateConfig: mirrorConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
  },
  {
    name: 'plugin',
    description: 'GET / through one synchronous onRequest plugin that sets one upstream header',
    path: '/',
    tollgateConfig: pluginConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
  },
  {
    name: 'limits',
    description: 'GET / with the two local rate limits of policies (never reached), nothing else',
    path: '/',
    tollgateConfig: limitsConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
    freshPeers: true,
  },
  {
    name: 'cluster-limit',
    description: 'GET / with one cluster-scope rate limit on a local redis-server (limit never reached)',
    path: '/',
    tollgateConfig: clusterLimitConfig,
    peers: REFERENCE_PEERS,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    needsRedis: true,
    hasCoreBaseline: true,
  },
  {
    name: 'breaker-open',
    description: 'GET /500 refused by an open circuit breaker: 503 CIRCUIT_OPEN, nothing forwarded',
    path: FAILURE_PATH,
    tollgateConfig: breakerOpenConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
    expect: { status: 503, tollgateError: 'CIRCUIT_OPEN' },
    primeRequests: 1,
  },
  {
    name: 'access-log',
    description: 'GET / with the access log on: one JSON line per request, to a file (the core path has it off)',
    path: '/',
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
    accessLog: true,
  },
  {
    name: 'failing-upstream',
    description: 'GET /500 forwarded, the upstream answers 500 (2 B); breaker closed, no retry',
    path: FAILURE_PATH,
    tollgateConfig: failingUpstreamConfig,
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
    expect: { status: 500, tollgateError: null },
  },
  {
    name: 'tracing',
    description: 'GET / with tracing on: 1% of requests sampled, spans exported over OTLP/HTTP to a local receiver',
    path: '/',
    tollgateConfig: tracingConfig(0.01),
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsOtlpReceiver: true,
    hasCoreBaseline: true,
  },
  {
    name: 'tracing-all',
    description: 'GET / with every request sampled: a SERVER and a CLIENT span each, exported over OTLP/HTTP to a local receiver',
    path: '/',
    tollgateConfig: tracingConfig(1),
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    needsOtlpReceiver: true,
    hasCoreBaseline: true,
  },
  {
    name: 'full-chain',
    description: 'GET / through every policy at once: two local limits, breaker, active and passive health, tracing at 1% over OTLP, access log to a file',
    path: '/',
    tollgateConfig: fullChainConfig(false),
    peers: REFERENCE_PEERS,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    needsOtlpReceiver: true,
    accessLog: true,
  },
  {
    name: 'full-chain-cluster',
    description: 'full-chain plus one cluster-scope rate limit on a local redis-server (limit never reached)',
    path: '/',
    tollgateConfig: fullChainConfig(true),
    peers: REFERENCE_PEERS,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    needsOtlpReceiver: true,
    needsRedis: true,
    accessLog: true,
  },
  {
    name: 'tls',
    description: 'GET / over TLS (HTTP/1.1, keep-alive, TLS 1.3 on a P-256 certificate) → 2 B',
    path: '/',
    protocol: 'tls',
    peers: TLS_PEERS,
    needsTollgate: true,
  },
  {
    name: 'h2',
    description: 'GET / over HTTP/2 (TLS, ALPN h2; h2load, 10 streams per connection) → 2 B; upstream HTTP/1.1',
    path: '/',
    protocol: 'h2',
    peers: TLS_PEERS,
    needsTollgate: true,
  },
  {
    name: 'workers',
    description: 'GET /, the one-route config: tollgate with --workers 2 against tollgate-core with --workers 1',
    path: '/',
    peers: TOLLGATE_ONLY,
    needsTollgate: true,
    hasCoreBaseline: true,
    tollgateArgs: ['--workers', '2'],
    coreArgs: ['--workers', '1'],
    proxyCores: 2,
  },
]
