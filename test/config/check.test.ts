import { describe, expect, it } from 'vitest'
import { checkConfig } from '../../src/config/check.js'
import { loadConfigText } from '../../src/config/load.js'
import { formatPath } from '../../src/config/validate-value.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`

function problems(text: string): string[] {
  try {
    loadConfigText(text, 'routes.yaml', {})
  } catch (err) {
    // A file with no routes is refused too (test/config/load.test.ts); these tests are about other checks.
    if (err instanceof ConfigError) return err.issues.filter((i) => !i.message.startsWith('the config has no routes')).map((i) => `${i.severity}: ${formatIssue(i)}`)
    throw err
  }
  throw new Error('expected the config to be rejected')
}

function warnings(text: string): string[] {
  return loadConfigText(text, 'routes.yaml', {}).warnings.map(formatIssue)
}

const UPSTREAMS = [
  'upstreams:',                                         // 1
  '  users: { targets: [{ url: "http://127.0.0.1:9001" }] }',  // 2
  '  orders: { targets: [{ url: "http://127.0.0.1:9002" }] }', // 3
  'routes:',                                            // 4
]

describe('checkConfig', () => {
  it('refuses a duplicate route id, naming both places', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - { id: users, match: { path: /users }, upstream: users }',
      '  - { id: users, match: { path: /people }, upstream: users }',
    ))).toEqual([
      'error: routes.yaml:6:11 routes[1].id: duplicate route id "users": routes[0] (routes.yaml:5:11) already uses it',
    ])
  })

  it('refuses a route naming an undefined upstream, listing the defined ones', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /a }, upstream: user }',
    ))).toEqual([
      'error: routes.yaml:5:45 routes[0].upstream: upstream "user" is not defined; defined upstreams: users, orders',
    ])
    expect(problems(yaml('routes:', '  - { id: a, match: { path: /a }, upstream: users }'))).toEqual([
      'error: routes.yaml:2:45 routes[0].upstream: upstream "users" is not defined; no upstreams are defined',
    ])
  })

  it('refuses balancer: hash without hashKey', () => {
    expect(problems(yaml('upstreams:', '  users:', '    balancer: hash'))).toEqual([
      'error: routes.yaml:3:15 upstreams.users.balancer: balancer "hash" needs hashKey (client-ip, path, header:<name> or query:<name>)',
    ])
    expect(() => loadConfigText(yaml('upstreams:', '  users:', '    balancer: hash', '    hashKey: header:x-user-id', 'routes: [{ id: r, match: { path: /r }, upstream: users }]'), 'routes.yaml', {})).not.toThrow()
  })

  it('refuses a breaker fallback to an undefined upstream', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - id: a',
      '    match: { path: /a }',
      '    upstream: users',
      '    circuitBreaker: { fallback: { upstream: users-readonly } }',
    ))).toEqual([
      'error: routes.yaml:8:45 routes[0].circuitBreaker.fallback.upstream: upstream "users-readonly" is not defined; defined upstreams: users, orders',
    ])
  })

  it('refuses a breaker fallback to the upstream the breaker protects', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - id: a',
      '    match: { path: /a }',
      '    upstream: users',
      '    circuitBreaker: { fallback: { upstream: users } }',
    ))).toEqual([
      'error: routes.yaml:8:45 routes[0].circuitBreaker.fallback.upstream: "users" is the route\'s own upstream: an open breaker would send requests to the upstream it protects. Name another upstream, or use a fallback response ({ status, body, headers }).',
    ])
  })

  it('refuses an admin listener on the proxy port', () => {
    expect(problems(yaml('listen: 127.0.0.1:8080', 'admin: 127.0.0.1:8080'))).toEqual([
      'error: routes.yaml:2:8 admin: admin 127.0.0.1:8080 overlaps the proxy listener 127.0.0.1:8080 (routes.yaml:1:9); admin endpoints are never served on the proxy port',
    ])
    expect(problems(yaml('listen: 0.0.0.0:9901'))).toEqual([
      'error: routes.yaml:1:1 admin: admin 127.0.0.1:9901 overlaps the proxy listener 0.0.0.0:9901 (routes.yaml:1:9); admin endpoints are never served on the proxy port',
    ])
  })

  it('accepts two listeners on port 0, and the same port on different addresses', () => {
    const etcd = 'etcd: {}' // routes would come from etcd: a file with neither is refused
    expect(loadConfigText(yaml('listen: 127.0.0.1:0', 'admin: 127.0.0.1:0', etcd), 'routes.yaml', {}).config.admin).toBe('127.0.0.1:0')
    expect(loadConfigText(yaml('listen: 10.0.0.1:9901', 'admin: 127.0.0.1:9901', etcd), 'routes.yaml', {}).config.admin).toBe('127.0.0.1:9901')
  })

  it('refuses a rewrite that uses a parameter or wildcard the match path does not have', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /api/users/:id }, upstream: users, rewrite: { path: /v2/:uid/* } }',
    ))).toEqual([
      'error: routes.yaml:5:81 routes[0].rewrite.path: uses :uid, which match.path "/api/users/:id" does not define (its parameters: :id)',
      'error: routes.yaml:5:81 routes[0].rewrite.path: uses *, but match.path "/api/users/:id" has no * segment',
    ])
    expect(() => loadConfigText(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /api/:version/* }, upstream: users, rewrite: { path: /:version/* } }',
    ), 'routes.yaml', {})).not.toThrow()
  })

  it.each([
    ['/a/*/b', '"*" must be the last segment of the path, got "/a/*/b"'],
    ['/a*', '"*" must be a whole segment (/api/*), got "a*" in "/a*"; write %2A for a literal "*"'],
    ['/a/../b', 'can never match: the segment ".." is a dot segment, and requests with one are refused with 400; write "/b"'],
    ['/a?x=1', 'can never match: "?" starts the query string, and routes match the path only (the query passes unchanged); remove "?x=1", or write %3F for a literal "?"'],
    ['/caf\u00e9', 'can never match: requests with raw non-ASCII characters are refused with 400 (clients send them percent-encoded as UTF-8); write "/caf%C3%A9"'],
    ['/a//b', 'can never match: repeated slashes are merged before matching (paths.mergeSlashes is true), so no request path contains "//"; write "/a/b"'],
    ['/users/:', 'parameter ":" needs a name of letters, digits and _ (not starting with a digit), e.g. :id'],
    ['/users/:1st', 'parameter ":1st" needs a name of letters, digits and _ (not starting with a digit), e.g. :id'],
    ['/a/:id/b/:id', 'parameter ":id" appears twice in "/a/:id/b/:id"'],
  ])('refuses the match path %s', (path, message) => {
    expect(problems(yaml(...UPSTREAMS, `  - { id: a, match: { path: "${path}" }, upstream: users }`))).toEqual([
      `error: routes.yaml:5:29 routes[0].match.path: ${message}`,
    ])
  })

  it('judges a route path by the paths policy and the route\'s own allowEncodedSlash', () => {
    const routes = [
      '  - { id: a, match: { path: "/a;b" }, upstream: users }',
      '  - { id: b, match: { path: "/b%2Fc" }, upstream: users }',
      '  - { id: c, match: { path: "/c%2Fd" }, upstream: users, allowEncodedSlash: true }',
      '  - { id: d, match: { path: "/d//e" }, upstream: users }',
    ]
    expect(problems(yaml(...UPSTREAMS, ...routes))).toEqual([
      'error: routes.yaml:5:29 routes[0].match.path: can never match: requests with ";" or %3B in the path are refused with 400 while paths.rejectSemicolon is true (the default); remove it, or set paths.rejectSemicolon: false',
      'error: routes.yaml:6:29 routes[1].match.path: can never match: requests with %2F (an encoded "/") in the path are refused with 400 unless the route allows it; set allowEncodedSlash: true on this route, or write "/"',
      'error: routes.yaml:8:29 routes[3].match.path: can never match: repeated slashes are merged before matching (paths.mergeSlashes is true), so no request path contains "//"; write "/d/e"',
    ])
    const lenient = ['paths: { mergeSlashes: false, rejectSemicolon: false, allowEncodedSlash: true }', ...UPSTREAMS, ...routes]
    expect(() => loadConfigText(yaml(...lenient), 'routes.yaml', {})).not.toThrow()
  })

  it('sees two spellings of one canonical path as the same match', () => {
    expect(warnings(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: "/admin/[x]" }, upstream: users }',
      '  - { id: b, match: { path: "/%61dmin/%5bx%5d" }, upstream: users }',
    ))).toEqual(['routes.yaml:6:5 routes[1]: route "b" can never match: route "a" (routes.yaml:5:5) has the same match and comes first'])
  })

  it('warns about a route shadowed by an identical earlier one, whatever its parameter names', () => {
    expect(warnings(yaml(
      ...UPSTREAMS,
      '  - id: a',                                                    // 5
      '    match: { path: /users/:id, methods: [GET], host: API.example.com, headers: { X-Canary: "1" } }',
      '    upstream: users',
      '  - id: b',                                                    // 8
      '    match: { path: /users/:userId, methods: [HEAD, GET], host: api.example.com, headers: { x-canary: "1" } }',
      '    upstream: orders',
    ))).toEqual([
      'routes.yaml:8:5 routes[1]: route "b" can never match: route "a" (routes.yaml:5:5) has the same match and comes first',
    ])
  })

  it('does not warn when the match differs in methods, host, headers, priority or path', () => {
    const base = '{ path: /users/:id, methods: [GET], host: api.example.com, headers: { x-canary: "1" } }'
    const variants = [
      '{ path: /users/:id, methods: [POST], host: api.example.com, headers: { x-canary: "1" } }',
      '{ path: /users/:id, methods: [GET], host: www.example.com, headers: { x-canary: "1" } }',
      '{ path: /users/:id, methods: [GET], host: api.example.com, headers: { x-canary: "2" } }',
      '{ path: /users/:id, methods: [GET], host: api.example.com }',
      '{ path: /users/:id/, methods: [GET], host: api.example.com, headers: { x-canary: "1" } }',
    ]
    for (const variant of variants) {
      expect(warnings(yaml(...UPSTREAMS, `  - { id: a, match: ${base}, upstream: users }`, `  - { id: b, match: ${variant}, upstream: users }`))).toEqual([])
    }
    expect(warnings(yaml(...UPSTREAMS, `  - { id: a, match: ${base}, upstream: users }`, `  - { id: b, match: ${base}, upstream: users, priority: 1 }`))).toEqual([])
  })

  it('keeps checking the rest of the file when parts fail the schema', () => {
    expect(problems(yaml(
      ...UPSTREAMS,
      '  - { id: a, match: { path: /a }, upstream: users, priority: high }',
      '  - { id: a, match: { path: /b }, upstream: nowhere }',
    ))).toEqual([
      'error: routes.yaml:5:62 routes[0].priority: must be an integer, got "high"',
      'error: routes.yaml:6:11 routes[1].id: duplicate route id "a": routes[0] (routes.yaml:5:11) already uses it',
      'error: routes.yaml:6:45 routes[1].upstream: upstream "nowhere" is not defined; defined upstreams: users, orders',
    ])
  })

  it('locates problems through the function it is given, as the etcd source will', () => {
    const { config } = loadConfigText(yaml(...UPSTREAMS, '  - { id: a, match: { path: /a }, upstream: users }'), 'routes.yaml', {})
    const broken = { ...config, routes: [...config.routes, { ...config.routes[0]!, upstream: 'gone' }] }
    expect(checkConfig(broken, (path) => `etcd /tollgate/${formatPath(path)}`).map(formatIssue)).toEqual([
      'etcd /tollgate/routes[1].id routes[1].id: duplicate route id "a": routes[0] (etcd /tollgate/routes[0].id) already uses it',
      'etcd /tollgate/routes[1].upstream routes[1].upstream: upstream "gone" is not defined; defined upstreams: users, orders',
      'etcd /tollgate/routes[1] routes[1]: route "a" can never match: route "a" (etcd /tollgate/routes[0]) has the same match and comes first',
    ])
  })
})

describe('notEnforced', () => {
  it('lists no setting as not enforced: websocket, limits, breakers, tracing and etcd all are', () => {
    const { notEnforced } = loadConfigText(yaml(
      'etcd: { prefix: /tollgate }',
      'redis: { url: "redis://127.0.0.1:6379" }',
      'tracing: { exporter: otlp }',
      'upstreams:',
      '  users:',
      '    targets: [{ url: "http://127.0.0.1:9001" }]',
      '    healthCheck: { passive: { consecutiveFailures: 3 } }',
      'routes:',
      '  - id: users',
      '    match: { path: /users }',
      '    upstream: users',
      '    websocket: true',
      '    rateLimit: [{ algorithm: token-bucket, rate: 5 }]',
      '    circuitBreaker: {}',
      '    tracing: { sampleRatio: 1 }',
      '  - { id: plain, match: { path: /plain }, upstream: users }',
    ), 'routes.yaml', {})
    expect(notEnforced).toEqual([])
  })
})

describe('websocket', () => {
  it('refuses idleTimeout: 0s, naming file:line:col', () => {
    expect(problems(yaml(
      'upstreams: { users: { targets: [{ url: "http://127.0.0.1:9001" }] } }',
      'routes:',
      '  - { id: ws, match: { path: /ws }, upstream: users, websocket: true, idleTimeout: 0s }',
    ))).toEqual([
      'error: routes.yaml:3:84 routes[0].idleTimeout: must be longer than 0ms, got 0ms; e.g. 5m',
    ])
  })
})

describe('healthCheck', () => {
  const upstream = (...lines: string[]): string => yaml('upstreams:', '  users:', '    targets: [{ url: "http://127.0.0.1:9001" }]', '    healthCheck:', ...lines)

  it('refuses a zero probe interval or timeout and an empty expectStatus range, naming file:line:col', () => {
    expect(problems(upstream(
      '      active:',
      '        interval: 0s',
      '        timeout: 0ms',
      '        expectStatus: [200, "399-200"]',
    ))).toEqual([
      'error: routes.yaml:6:19 upstreams.users.healthCheck.active.interval: must be longer than 0ms, got 0ms; e.g. 5s',
      'error: routes.yaml:7:18 upstreams.users.healthCheck.active.timeout: must be longer than 0ms, got 0ms; e.g. 1s',
      'error: routes.yaml:8:29 upstreams.users.healthCheck.active.expectStatus[1]: range "399-200" is empty: its first status is above its last; write "200-399"',
    ])
  })

  it('refuses maxEjectionTime below ejectionTime and a zero ejectionTime', () => {
    expect(problems(upstream('      passive: { ejectionTime: 30s, maxEjectionTime: 10s }'))).toEqual([
      'error: routes.yaml:5:54 upstreams.users.healthCheck.passive.maxEjectionTime: must be at least ejectionTime (30000ms), got 10000ms',
    ])
    expect(problems(upstream('      passive: { ejectionTime: 0s }'))).toEqual([
      'error: routes.yaml:5:32 upstreams.users.healthCheck.passive.ejectionTime: must be longer than 0ms, got 0ms; to turn ejection off, remove healthCheck.passive',
    ])
  })

  it('accepts the defaults and says nothing about health checks being unenforced', () => {
    const { notEnforced } = loadConfigText(yaml(upstream('      active: { path: /healthz }', '      passive: {}').trimEnd(), 'routes: [{ id: r, match: { path: /r }, upstream: users }]'), 'routes.yaml', {})
    expect(notEnforced).toEqual([])
  })
})
