// The load scenarios. Adding one is adding an entry here: what request to send, and optionally the
// Tollgate config to run it under and the peers worth comparing.

export interface Scenario {
  readonly name: string
  /** One line for the table heading. */
  readonly description: string
  readonly path: string
  readonly method?: string
  readonly body?: string
  /**
   * Tollgate's routes.yaml for this scenario; default: one catch-all route (minimalConfig). `redisUrl` is the
   * bench's own redis-server when the scenario needsRedis, else null.
   */
  readonly tollgateConfig?: (upstreamUrl: string, redisUrl: string | null) => string
  /** Peers to run; default: every peer. */
  readonly peers?: readonly string[]
  /** Skip the whole scenario when Tollgate cannot run it (it is what the scenario measures). */
  readonly needsTollgate?: boolean
  /** Skip Tollgate (and so the scenario, with needsTollgate) while its start-up log says a setting is "not enforced". */
  readonly needsEnforcedPolicies?: boolean
  /** Start a local redis-server for the scenario (bench/lib/redis.ts); skip the scenario without one. */
  readonly needsRedis?: boolean
  /**
   * With tollgate, also run peer tollgate-core: Tollgate with the one-route config (the core path of scenario
   * small), interleaved with the others, so that the scenario's checks compare runs of the same minutes.
   */
  readonly hasCoreBaseline?: boolean
}

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

/**
 * The two local limiters on the route, with limits far above what the bench can send so that nothing is
 * refused. No circuitBreaker yet: breakers are not enforced (issue 12), and a config with one would skip
 * Tollgate (needsEnforcedPolicies); it comes back here with issue 12.
 */
const policiesConfig = (upstreamUrl: string): string => `upstreams:
  up: { targets: [{ url: ${upstreamUrl} }] }
routes:
  - id: r0
    match: { path: /* }
    upstream: up
    rateLimit:
      - { algorithm: token-bucket, rate: 100000000, period: 1s, key: client-ip }
      - { algorithm: sliding-window, limit: 100000000, window: 1m, key: route }
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

const REFERENCE_PEERS = ['tollgate', 'undici-stream'] as const

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
    description: 'GET / with two local rate limits on the route (limits never reached)',
    path: '/',
    tollgateConfig: policiesConfig,
    peers: REFERENCE_PEERS,
    needsTollgate: true,
    needsEnforcedPolicies: true,
    hasCoreBaseline: true,
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
]
