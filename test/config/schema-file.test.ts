import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { loadConfigText } from '../../src/config/load.js'
import { schemaJson } from '../../src/commands/validate-command.js'

// A full routes.yaml using every setting (README.md "Configuration" shows most of it), plus a second
// upstream and route for the variants it only mentions in comments.
const FULL_EXAMPLE = `
listen: 0.0.0.0:8080
admin: 127.0.0.1:9901
clientIp:
  trustedProxies: [10.0.0.0/8]   # X-Forwarded-For is read right to left, skipping these; default: none
limits:
  maxBodySize: 10MiB             # per-route override; larger bodies get 413
  headersTimeout: 10s            # slow clients get 408 and are closed (checked at least every second)
  requestTimeout: 60s            # whole request, body included
  keepAliveTimeout: 5s
  maxLimiterKeys: 100000         # per-key limiter state kept in memory (LRU)
paths:
  mergeSlashes: true             # //a -> /a before matching and forwarding
  rejectSemicolon: true          # ';' in the path -> 400 (servlet-style parameters are a bypass)
  allowEncodedSlash: false       # '%2F' in the path -> 400; a route may set allowEncodedSlash: true
shutdown:
  delay: 0s                      # after SIGTERM: /readyz is 503 but traffic is still served
  timeout: 30s                   # then: stop accepting, wait for in-flight requests this long
etcd:                            # optional
  endpoints: [http://127.0.0.1:2379]
  prefix: /tollgate
  snapshotFile: .tollgate/etcd-snapshot.json   # last good etcd config, used to start when etcd is down
  username: \${ETCD_USER:-}       # optional auth
  password: \${ETCD_PASSWORD:-}
  tls: { ca: /etc/tollgate/etcd-ca.pem, cert: /etc/tollgate/etcd.pem, key: /etc/tollgate/etcd-key.pem }  # optional
redis:                           # optional; needed by scope: cluster limits
  url: redis://127.0.0.1:6379
  timeout: 50ms                  # per decision; then the limiter's onStoreError applies
tracing:
  exporter: none                 # none | otlp | console
  endpoint: http://127.0.0.1:4318/v1/traces
  serviceName: tollgate
  sampleRatio: 0.01              # for traces that start here
  parentBased: true              # follow the sampled flag of an incoming traceparent

upstreams:
  users:
    targets:
      - url: http://127.0.0.1:9001
        weight: 2
      - url: http://127.0.0.1:9002
    balancer: round-robin        # round-robin (weighted) | least-request (P2C) | random | hash
    hashKey: header:x-user-id    # for balancer: hash (consistent hashing)
    hostHeader: pass             # pass (client's Host) | target (the target's host) | <fixed host>
    timeouts: { connect: 2s, response: 30s }
    retry:
      attempts: 2                # extra attempts; only idempotent methods; never after response bytes were sent
      on: [connect-failure, reset, 502, 503, 504]
      backoff: 25ms              # full-jitter exponential, capped at 10x
    maxConcurrent: 1000          # in-flight requests to this upstream (bulkhead); over it: 503 OVERLOADED
    healthCheck:
      active: { path: /healthz, interval: 5s, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 3, expectStatus: ["200-399"] }
      passive: { consecutiveFailures: 5, ejectionTime: 30s, maxEjectionTime: 300s, maxEjectionPercent: 50 }
      # passive ejection lasts ejectionTime x times-ejected (capped), then the target is tried again;
      # maxEjectionPercent is checked after the ejection it would allow
    onAllUnhealthy: route-all    # route-all (panic: try every target) | fail (503 NO_HEALTHY_UPSTREAM)

  users-readonly:
    targets: [{ url: "https://replica.internal:8443" }]
    balancer: hash
    hashKey: header:x-user-id
    hostHeader: target
    retry: { attempts: 1, on: [timeout, 5xx, 500], backoff: 1m30s }
    healthCheck:
      active: { expectStatus: [200, "300-302"] }
routes:
  - id: users                    # unique; the label used in metrics, logs and /status
    match:
      path: /api/users/:id       # static segments, :name (one segment), * (the rest, may be empty)
      methods: [GET, PUT]        # default: any
      host: api.example.com      # exact, or *.example.com; default: any
      headers: { x-canary: "1" } # optional exact matches
    priority: 0                  # tie-break between otherwise equal matches: higher wins
    upstream: users
    rewrite: { stripPrefix: /api }        # or { path: /v2/users/:id }; an empty result forwards /
    maxBodySize: 1MiB
    allowEncodedSlash: false     # true: %2F allowed in this route's params, forwarded still encoded
    websocket: false
    rateLimit:                   # all must admit; rejected requests are not counted
      - name: per-client
        algorithm: token-bucket  # rate tokens per period, bucket holds burst (default: rate)
        rate: 50
        period: 1s
        burst: 100
        key: client-ip           # client-ip | route | header:<name> | query:<name>; "a,b" combines keys
        scope: local             # local (this instance) | cluster (shared through Redis)
      - name: per-key-minute
        algorithm: sliding-window  # sliding-window counter: previous window weighted by its overlap
        limit: 1000
        window: 1m
        key: header:x-api-key
        scope: cluster
        onStoreError: local      # local (fall back to a local limiter) | allow | deny
    circuitBreaker:              # Hystrix semantics, one breaker per route
      window: 10s                # rolling window, in 10 buckets
      minRequests: 20            # no trip below this many calls in the window
      errorRate: 50              # percent of failed calls that opens the breaker
      openFor: 5s                # then half-open
      halfOpenRequests: 1        # trial calls; all succeed -> closed, any fails -> open again
      failOn: [5xx, timeout, connect-failure]
      fallback: { status: 503, body: '{"code":"CIRCUIT_OPEN"}', headers: { content-type: application/json } }
      # or fallback: { upstream: users-readonly }
    tracing: { sampleRatio: 1.0 }
  - id: users-v2
    match: { path: /v2/users/:userId/*, methods: [GET], host: "*.example.com" }
    priority: 10
    upstream: users
    rewrite: { path: /users/:userId/* }
    maxBodySize: 1048576
    allowEncodedSlash: true
    websocket: true
    circuitBreaker:
      failOn: [5xx, 502]
      fallback: { upstream: users-readonly }
`

describe('schema/routes.schema.json', () => {
  it('is the schema the code generates (regenerate with npm run schema)', () => {
    const committed = readFileSync(new URL('../../schema/routes.schema.json', import.meta.url), 'utf8')
    expect(committed).toBe(schemaJson())
  })

  it('does not require fields that have defaults', () => {
    const schema = JSON.parse(schemaJson()) as { required?: string[]; properties: { routes: { items: { required: string[] } } } }
    expect(schema.required).toBeUndefined()
    expect(schema.properties.routes.items.required).toEqual(['id', 'match', 'upstream'])
  })
})

describe('the full example', () => {
  it('is valid, with every field it sets kept', () => {
    const { config, warnings } = loadConfigText(FULL_EXAMPLE, 'routes.yaml', { ETCD_USER: 'root', ETCD_PASSWORD: 's3cret' })
    expect(warnings).toEqual([])
    expect(config.etcd).toMatchObject({ username: 'root', password: 's3cret', tls: { ca: '/etc/tollgate/etcd-ca.pem' } })
    expect(config.redis).toEqual({ url: 'redis://127.0.0.1:6379', timeout: 50 })
    expect(config.upstreams.users?.healthCheck?.passive?.maxEjectionPercent).toBe(50)
    expect(config.upstreams['users-readonly']?.retry?.backoff).toBe(90_000)
    expect(config.routes.map((r) => r.id)).toEqual(['users', 'users-v2'])
    expect(config.routes[0]?.rateLimit?.[1]).toEqual({
      name: 'per-key-minute', algorithm: 'sliding-window', limit: 1000, window: 60_000,
      key: 'header:x-api-key', scope: 'cluster', onStoreError: 'local',
    })
    expect(config.routes[0]?.circuitBreaker?.fallback).toEqual({ status: 503, body: '{"code":"CIRCUIT_OPEN"}', headers: { 'content-type': 'application/json' } })
    expect(config.routes[1]?.circuitBreaker?.fallback).toEqual({ upstream: 'users-readonly' })
  })

  it('leaves the optional etcd credentials out when their variables are empty', () => {
    const { config } = loadConfigText(FULL_EXAMPLE, 'routes.yaml', {})
    expect(config.etcd?.username).toBeUndefined()
    expect(config.etcd?.password).toBeUndefined()
  })
})
