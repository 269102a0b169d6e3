// The route tables and requests of the micro-benchmarks: a realistic routes.yaml, in the style of the
// bundled example, with four routes per service, and the request paths that hit them.

/** The Host header of every request; the `/svcN/v2/*` routes are bound to it. */
export const MICRO_HOST = 'api.example.com'

/** A typical request target, and one that canonicalization has to rewrite (`//`, `%75`, `%2f`). */
export const TYPICAL_TARGET = '/api/v1/users/12345/orders?limit=10'
export const REWRITTEN_TARGET = '//api/v1/%75sers/12345/orders%2f?limit=10'

const UPSTREAMS = 8
const ROUTES_PER_SERVICE = 4

/** Services in a table of `routes` routes. */
export const servicesIn = (routes: number): number => Math.ceil(routes / ROUTES_PER_SERVICE)

/**
 * routes.yaml with `count` routes over 8 upstreams. Per service N: the collection `/svcN/v1/items` (GET,
 * POST), an item `/svcN/v1/items/:id` (GET, PUT, DELETE, rewritten to `/items/:id`), a sub-resource
 * `/svcN/v1/items/:id/events` (GET) and a versioned prefix `/svcN/v2/*` on host api.example.com with
 * `stripPrefix: /svcN`.
 */
export function microRoutesYaml(count: number): string {
  const lines = ['listen: 127.0.0.1:8080', 'admin: 127.0.0.1:9901', '', 'upstreams:']
  for (let u = 0; u < UPSTREAMS; u++) {
    lines.push(`  up${u}:`, '    targets:', `      - url: http://127.0.0.1:${9100 + u}`, '    timeouts: { connect: 1s, response: 5s }')
  }
  lines.push('', 'routes:')
  let written = 0
  for (let svc = 0; written < count; svc++) {
    const upstream = `up${svc % UPSTREAMS}`
    const routes = [
      [`svc${svc}-items`, `{ path: /svc${svc}/v1/items, methods: [GET, POST] }`, null],
      [`svc${svc}-item`, `{ path: /svc${svc}/v1/items/:id, methods: [GET, PUT, DELETE] }`, '{ path: /items/:id }'],
      [`svc${svc}-events`, `{ path: /svc${svc}/v1/items/:id/events, methods: [GET] }`, null],
      [`svc${svc}-v2`, `{ path: /svc${svc}/v2/*, host: ${MICRO_HOST} }`, `{ stripPrefix: /svc${svc} }`],
    ] as const
    for (const [id, match, rewrite] of routes) {
      if (written === count) break
      lines.push(`  - id: ${id}`, `    match: ${match}`, `    upstream: ${upstream}`)
      if (rewrite !== null) lines.push(`    rewrite: ${rewrite}`)
      written++
    }
  }
  return `${lines.join('\n')}\n`
}

/**
 * 1024 request paths over the first `services` services, mostly param routes as in real APIs: the
 * sub-resource, the item, the collection and the v2 prefix in turn, with pseudo-random services and ids.
 */
export function microRequestPaths(services: number): string[] {
  const paths: string[] = []
  let seed = 12345
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed
  }
  for (let i = 0; i < 1024; i++) {
    const svc = next() % services
    const id = 10000 + (next() % 90000)
    switch (i % 4) {
      case 0: paths.push(`/svc${svc}/v1/items/${id}/events`); break
      case 1: paths.push(`/svc${svc}/v1/items/${id}`); break
      case 2: paths.push(`/svc${svc}/v1/items`); break
      default: paths.push(`/svc${svc}/v2/things/${id}`)
    }
  }
  return paths
}
