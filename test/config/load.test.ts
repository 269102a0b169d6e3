import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { loadConfigFile, loadConfigText } from '../../src/config/load.js'
import { ConfigError, formatIssue } from '../../src/errors.js'

/** Joins lines, so the line numbers in expectations can be counted. */
const yaml = (...lines: string[]): string => `${lines.join('\n')}\n`

/** The "no routes" error of a file that routes nothing (its own test below); the other tests look past it. */
const NO_ROUTES = 'the config has no routes (and no etcd: section to bring them)'

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    loadConfigText(text, 'routes.yaml', env)
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue).filter((line) => !line.includes(NO_ROUTES))
    throw err
  }
  throw new Error('expected the config to be rejected')
}

/** One route, for tests about other settings: a file with no routes is refused. */
const A_ROUTE = ['upstreams: { u0: { targets: [{ url: "http://127.0.0.1:9009" }] } }', 'routes: [{ id: r0, match: { path: /r0 }, upstream: u0 }]']

const UPSTREAM = ['upstreams:', '  users:', '    targets: [{ url: "http://127.0.0.1:9001" }]']

describe('loadConfigText', () => {
  it('reports every error of the file at once, each with its line and column', () => {
    const text = yaml(
      'listen: 0.0.0.0:80800',                         // 1
      ...UPSTREAM,                                       // 2-4
      'routes:',                                         // 5
      '  - id: users',                                   // 6
      '    match: { path: /api/users/:id }',             // 7
      '    upstream: users',                             // 8
      '    rateLimit:',                                  // 9
      '      - algorithm: token-bucket',                 // 10
      '        rate: 10',                                // 11
      '        burst: 0',                                // 12
      '  - id: orders',                                  // 13
      '    match: { path: orders }',                     // 14
      '  - id: "bad id"',                                // 15
      '    match: { path: /x, methods: [get] }',         // 16
      '    upstream: users',                             // 17
      '    websocket: "yes"',                            // 18
    )
    expect(problems(text)).toEqual([
      'routes.yaml:1:9 listen: port 80800 is out of range; ports go from 0 to 65535',
      'routes.yaml:12:16 routes[0].rateLimit[0].burst: must be an integer >= 1, got 0',
      'routes.yaml:13:5 routes[1].upstream: missing required field "upstream"',
      'routes.yaml:14:20 routes[1].match.path: must be a path starting with /, got "orders"',
      'routes.yaml:15:9 routes[2].id: must be a string matching ^[A-Za-z0-9_.:-]+$, got "bad id"',
      'routes.yaml:16:34 routes[2].match.methods[0]: must be an upper-case HTTP method such as GET, got "get"',
      'routes.yaml:18:16 routes[2].websocket: must be true or false, got "yes"',
    ])
  })

  it('throws a ConfigError whose message lists every error', () => {
    const text = yaml('listen: nope', 'admin: nope')
    expect(() => loadConfigText(text, 'routes.yaml', {})).toThrow(ConfigError)
    expect(() => loadConfigText(text, 'routes.yaml', {})).toThrow(
      'routes.yaml:1:9 listen: must be host:port, such as 0.0.0.0:8080 or [::1]:8080, got "nope"\n' +
      'routes.yaml:2:8 admin: must be host:port, such as 0.0.0.0:8080 or [::1]:8080, got "nope"',
    )
  })

  it('treats unknown fields as errors, pointing at the key and naming the allowed ones', () => {
    const text = yaml(
      'lisen: 0.0.0.0:8080',
      ...UPSTREAM,
      'routes:',
      '  - id: a',
      '    match: { path: /a }',
      '    upstream: users',
      '    rateLimit:',
      '      - { algorithm: sliding-window, limit: 5, burts: 1 }',
    )
    expect(problems(text)).toEqual([
      'routes.yaml:1:1 lisen: unknown field "lisen" (did you mean "listen"?); allowed: $schema, listen, admin, tls, http2, clientIp, limits, paths, headers, shutdown, etcd, redis, log, tracing, upstreams, routes',
      'routes.yaml:10:48 routes[0].rateLimit[0].burts: unknown field "burts"; allowed: name, algorithm, limit, window, key, scope, onStoreError',
    ])
  })

  it('reports union errors against the branch the discriminator or the fields choose', () => {
    const text = yaml(
      ...UPSTREAM,
      'routes:',
      '  - id: a',
      '    match: { path: /a/:id }',
      '    upstream: users',
      '    rewrite: { stripPrefix: /a, path: /b }',
      '    rateLimit:',
      '      - { algorithm: leaky-bucket, rate: 5 }',
      '      - { rate: 5 }',
      '      - { algorithm: sliding-window, rate: 5, limit: 1 }',
      '    circuitBreaker:',
      '      fallback: { status: 200, upstream: users }',
    )
    expect(problems(text)).toEqual([
      'routes.yaml:8:14 routes[0].rewrite: must be one of { stripPrefix } or { path }, got a mapping with stripPrefix, path',
      'routes.yaml:10:22 routes[0].rateLimit[0].algorithm: must be one of "token-bucket", "sliding-window", got "leaky-bucket"',
      'routes.yaml:11:9 routes[0].rateLimit[1].algorithm: missing required field "algorithm" (one of "token-bucket", "sliding-window")',
      'routes.yaml:12:38 routes[0].rateLimit[2].rate: unknown field "rate"; allowed: name, algorithm, limit, window, key, scope, onStoreError',
      'routes.yaml:14:17 routes[0].circuitBreaker.fallback: must be one of { status, body, headers } or { upstream }, got a mapping with status, upstream',
    ])
  })

  it('says what scalar unions accept', () => {
    const text = yaml(
      'limits: { maxBodySize: lots }',
      'upstreams:',
      '  u:',
      '    balancer: fastest',
      '    retry: { on: [6xx] }',
    )
    expect(problems(text)).toEqual([
      'routes.yaml:1:24 limits.maxBodySize: must be a size such as 512KiB, 10MiB, 100kB or a number of bytes, got "lots"',
      'routes.yaml:4:15 upstreams.u.balancer: must be one of "round-robin", "least-request", "random", "hash", got "fastest"',
      'routes.yaml:5:19 upstreams.u.retry.on[0]: must be one of "connect-failure", "reset", "timeout", "5xx" or an integer from 500 to 599, got "6xx"',
    ])
  })

  it('suggests quoting a number where a string is expected', () => {
    const text = yaml(
      ...UPSTREAM,
      'routes:',
      '  - { id: a, match: { path: /a, headers: { x-canary: 1 } }, upstream: users }',
    )
    expect(problems(text)).toEqual([
      'routes.yaml:5:54 routes[0].match.headers.x-canary: must be a string, got 1 (quote it: "1")',
    ])
  })

  it('reports a YAML syntax error with its position and stops there', () => {
    const syntax = problems(yaml('listen: 0.0.0.0:8080', 'routes: [', '  - id: a'))
    expect(syntax).toContain('routes.yaml:4:1 Flow sequence in block collection must be sufficiently indented and end with a ]')
    expect(syntax.every((line) => /^routes\.yaml:\d+:\d+ [A-Z]/.test(line))).toBe(true)
    expect(problems(yaml('listen: 0.0.0.0:8080', 'listen: 0.0.0.0:9090'))).toEqual([
      'routes.yaml:2:1 Map keys must be unique',
    ])
  })

  it('refuses a file that is not a mapping', () => {
    expect(problems(yaml('- a', '- b'))).toEqual([
      'routes.yaml:1:1 the file must be a mapping of settings (listen:, upstreams:, routes:, ...)',
    ])
  })

  it('applies the schema defaults, also inside upstreams and limiters', () => {
    const { config } = loadConfigText(yaml(
      'limits:',
      '  # everything commented out',
      ...UPSTREAM,
      'routes:',
      '  - id: a',
      '    match: { path: /a }',
      '    upstream: users',
      '    rateLimit: [{ algorithm: token-bucket, rate: 5 }]',
    ), 'routes.yaml', {})
    expect(config.listen).toBe('0.0.0.0:8080')
    expect(config.admin).toBe('127.0.0.1:9901')
    // Durations come out in milliseconds and sizes in bytes: nothing downstream parses them again.
    expect(config.limits).toEqual({ maxBodySize: 10 * 2 ** 20, headersTimeout: 10_000, requestTimeout: 60_000, keepAliveTimeout: 5_000, maxLimiterKeys: 100000 })
    expect(config.paths).toEqual({ mergeSlashes: true, rejectSemicolon: true, allowEncodedSlash: false })
    expect(config.shutdown).toEqual({ delay: 0, timeout: 30_000 })
    expect(config.clientIp).toEqual({ trustedProxies: [] })
    expect(config.tracing.exporter).toBe('none')
    expect(config.etcd).toBeUndefined()
    expect(config.upstreams.users).toEqual({
      protocol: 'http',
      targets: [{ url: 'http://127.0.0.1:9001', weight: 1 }],
      balancer: 'round-robin',
      hostHeader: 'pass',
      timeouts: { connect: 2_000, response: 30_000 },
      onAllUnhealthy: 'route-all',
    })
    expect(config.routes[0]).toEqual({
      id: 'a',
      match: { path: '/a' },
      priority: 0,
      upstream: 'users',
      websocket: false,
      rateLimit: [{ algorithm: 'token-bucket', rate: 5, period: 1_000, key: 'client-ip', scope: 'local', onStoreError: 'local' }],
    })
  })

  it('refuses an empty file, or one with no routes, unless an etcd: section brings the routes', () => {
    for (const text of ['', '# nothing yet\n', 'listen: 0.0.0.0:8080\n', 'routes: []\n']) {
      expect(() => loadConfigText(text, 'routes.yaml', {})).toThrow(`routes.yaml:1:1 ${NO_ROUTES}: every request would get 404. Add routes: or an etcd: section`)
    }
    const { config, warnings } = loadConfigText('etcd: { endpoints: ["http://127.0.0.1:2379"] }\n', 'routes.yaml', {})
    expect(config.routes).toEqual([])
    expect(warnings).toEqual([])
  })

  it('refuses a target URL whose port is no port, at its line and column', () => {
    expect(problems(yaml(
      'upstreams:',
      '  a: { targets: [{ url: "http://127.0.0.1:1700l" }, { url: "http://127.0.0.1:170011" }, { url: "http://[::1]:0" }] }',
      'routes: [{ id: r, match: { path: /a }, upstream: a }]',
    ))).toEqual([
      'routes.yaml:2:25 upstreams.a.targets[0].url: port "1700l" is not a port number from 1 to 65535',
      'routes.yaml:2:60 upstreams.a.targets[1].url: port "170011" is not a port number from 1 to 65535',
      'routes.yaml:2:96 upstreams.a.targets[2].url: port "0" is not a port number from 1 to 65535',
    ])
  })

  it('refuses a tracing endpoint that is not an http(s) URL, at its line and column', () => {
    expect(problems(yaml(...A_ROUTE, 'tracing: { exporter: otlp, endpoint: "127.0.0.1:4318/v1/traces" }'))).toEqual([
      'routes.yaml:3:38 tracing.endpoint: must be an http:// or https:// URL of the OTLP/HTTP traces endpoint, got "127.0.0.1:4318/v1/traces"; e.g. http://127.0.0.1:4318/v1/traces',
    ])
    expect(problems(yaml(...A_ROUTE, 'tracing: { endpoint: "ftp://collector/v1/traces" }'))).toHaveLength(1)
  })

  it('reads YAML anchors and merge keys', () => {
    const { config } = loadConfigText(yaml(
      ...UPSTREAM,
      'routes:',
      '  - &base { id: a, match: { path: /a }, upstream: users, priority: 3 }',
      '  - { <<: *base, id: b, match: { path: /b } }',
    ), 'routes.yaml', {})
    expect(config.routes[1]).toMatchObject({ id: 'b', match: { path: '/b' }, upstream: 'users', priority: 3 })
  })

  it('returns a deeply frozen result', () => {
    const result = loadConfigText(yaml(...UPSTREAM, 'routes: [{ id: a, match: { path: /a }, upstream: users }]'), 'routes.yaml', {})
    expect(Object.isFrozen(result)).toBe(true)
    expect(Object.isFrozen(result.config.routes[0]?.match)).toBe(true)
    expect(Object.isFrozen(result.config.upstreams.users?.targets[0])).toBe(true)
    expect(Object.isFrozen(result.notEnforced)).toBe(true)
  })
})

describe('${VAR} substitution', () => {
  const text = yaml(
    'listen: ${HOST:-0.0.0.0}:${PORT}',
    'admin: "127.0.0.1:${ADMIN_PORT:-9901}"',
    'tracing:',
    '  sampleRatio: ${RATIO}',
    '  serviceName: "${RATIO}"',
    'etcd:',
    '  username: ${ETCD_USER:-}',
    '  prefix: /$${literal}',
  )

  it('substitutes variables and defaults, reading a plain scalar again so numbers stay numbers', () => {
    const { config } = loadConfigText(text, 'routes.yaml', { PORT: '8081', RATIO: '0.5' })
    expect(config.listen).toBe('0.0.0.0:8081')
    expect(config.admin).toBe('127.0.0.1:9901')
    expect(config.tracing.sampleRatio).toBe(0.5)
    expect(config.tracing.serviceName).toBe('0.5')
    expect(config.etcd?.username).toBeUndefined()
    expect(config.etcd?.prefix).toBe('/${literal}')
  })

  it('uses the variable over the default when it is set and not empty', () => {
    const { config } = loadConfigText(text, 'routes.yaml', { HOST: '127.0.0.1', PORT: '1', RATIO: '1', ETCD_USER: 'root' })
    expect(config.listen).toBe('127.0.0.1:1')
    expect(config.etcd?.username).toBe('root')
  })

  it('names an unset variable without a default, with its position', () => {
    expect(problems(text, { RATIO: '1' })).toEqual([
      'routes.yaml:1:9 listen: environment variable PORT is not set (use ${PORT:-default} to give a default)',
    ])
  })

  it('refuses malformed references', () => {
    expect(problems(yaml('listen: "${1BAD}"', 'admin: "${OPEN"'))).toEqual([
      'routes.yaml:1:9 listen: invalid variable name in "${1BAD}": expected ${NAME} or ${NAME:-default}',
      'routes.yaml:2:8 admin: unterminated "${" in "${"; write $${ for a literal "${"',
    ])
  })

  it('validates substituted values like written ones', () => {
    expect(problems(yaml('tracing:', '  sampleRatio: ${RATIO}'), { RATIO: '2' })).toEqual([
      'routes.yaml:2:16 tracing.sampleRatio: must be a number from 0 to 1, got 2',
    ])
  })
})

describe('TOLLGATE_* overrides', () => {
  const text = yaml('listen: 0.0.0.0:8080', 'paths: { mergeSlashes: true }', ...A_ROUTE)

  it('read TOLLGATE_LOG_LEVEL, _FORMAT and _ACCESS as the overrides of log:, over the file', () => {
    const withLog = yaml('log: { level: debug, format: pretty, access: true }', ...A_ROUTE)
    expect(loadConfigText(withLog, 'routes.yaml', {}).config.log).toEqual({ level: 'debug', format: 'pretty', access: true })
    const { config, warnings } = loadConfigText(withLog, 'routes.yaml', { TOLLGATE_LOG_LEVEL: 'warn', TOLLGATE_LOG_FORMAT: 'json', TOLLGATE_LOG_ACCESS: 'false' })
    expect(warnings).toEqual([])
    expect(config.log).toEqual({ level: 'warn', format: 'json', access: false })
    expect(loadConfigText(yaml(...A_ROUTE), 'routes.yaml', {}).config.log).toEqual({ level: 'info', format: 'json', access: true })
    expect(() => loadConfigText(withLog, 'routes.yaml', { TOLLGATE_LOG_LEVEL: 'loud' })).toThrow(/TOLLGATE_LOG_LEVEL log\.level: /)
  })

  it('override settings of fixed sections, turned into the setting type', () => {
    const { config } = loadConfigText(text, 'routes.yaml', {
      TOLLGATE_LISTEN: '0.0.0.0:80',
      TOLLGATE_LIMITS_MAXBODYSIZE: '5MiB',
      TOLLGATE_LIMITS_MAXLIMITERKEYS: '10',
      TOLLGATE_PATHS_MERGESLASHES: 'false',
      TOLLGATE_TRACING_SAMPLERATIO: '0.5',
      TOLLGATE_CLIENTIP_TRUSTEDPROXIES: '10.0.0.0/8, 192.168.0.0/16',
      TOLLGATE_REDIS_URL: 'redis://cache:6379',
      UNRELATED: 'x',
    })
    expect(config.listen).toBe('0.0.0.0:80')
    expect(config.limits.maxBodySize).toBe(5 * 2 ** 20)
    expect(config.limits.maxLimiterKeys).toBe(10)
    expect(config.paths.mergeSlashes).toBe(false)
    expect(config.tracing.sampleRatio).toBe(0.5)
    expect(config.clientIp.trustedProxies).toEqual(['10.0.0.0/8', '192.168.0.0/16'])
    expect(config.redis).toEqual({ url: 'redis://cache:6379', timeout: 50 })
  })

  it('reads a number for a size and a JSON list for a list', () => {
    const { config } = loadConfigText(text, 'routes.yaml', {
      TOLLGATE_LIMITS_MAXBODYSIZE: '1024',
      TOLLGATE_ETCD_ENDPOINTS: '["http://a:2379","http://b:2379"]',
    })
    expect(config.limits.maxBodySize).toBe(1024)
    expect(config.etcd?.endpoints).toEqual(['http://a:2379', 'http://b:2379'])
  })

  it('reports bad values at the variable, and ignores a variable naming no setting with a warning', () => {
    const env = {
      TOLLGATE_LISTN: '0.0.0.0:80',
      TOLLGATE_LIMITS: '1',
      TOLLGATE_ROUTES_0_UPSTREAM: 'x',
      TOLLGATE_PATHS_MERGESLASHES: 'maybe',
      TOLLGATE_LIMITS_MAXLIMITERKEYS: '0',
    }
    expect(problems(text, env).filter((p) => !p.endsWith('(ignored)'))).toEqual([
      'TOLLGATE_LIMITS_MAXLIMITERKEYS limits.maxLimiterKeys: must be an integer >= 1, got 0',
      'TOLLGATE_PATHS_MERGESLASHES paths.mergeSlashes: must be true or false, got "maybe"',
    ])
    const { warnings } = loadConfigText(text, 'routes.yaml', { TOLLGATE_LISTN: '0.0.0.0:80', TOLLGATE_LIMITS: '1', TOLLGATE_ROUTES_0_UPSTREAM: 'x' })
    expect(warnings.map(formatIssue)).toEqual([
      'TOLLGATE_LIMITS limits is a section; set one of its settings, e.g. TOLLGATE_LIMITS_MAXBODYSIZE (ignored)',
      'TOLLGATE_LISTN names no setting: "LISTN" is not one of the top-level settings: listen, admin, tls, http2, clientIp, limits, paths, headers, shutdown, etcd, redis, log, tracing, upstreams, routes (ignored)',
      'TOLLGATE_ROUTES_0_UPSTREAM routes cannot be set from the environment; only settings outside routes and upstreams can (ignored)',
    ])
  })

  it('skips the Kubernetes service links of a Service named tollgate without a word', () => {
    const links = {
      TOLLGATE_PORT: 'tcp://10.0.0.1:8080',
      TOLLGATE_SERVICE_HOST: '10.0.0.1',
      TOLLGATE_SERVICE_PORT: '8080',
      TOLLGATE_SERVICE_PORT_HTTP: '8080',
      TOLLGATE_PORT_8080_TCP: 'tcp://10.0.0.1:8080',
      TOLLGATE_PORT_8080_TCP_ADDR: '10.0.0.1',
      TOLLGATE_PORT_8080_TCP_PORT: '8080',
      TOLLGATE_PORT_8080_TCP_PROTO: 'tcp',
      TOLLGATE_ADMIN_SERVICE_HOST: '10.0.0.2',
      TOLLGATE_ADMIN_PORT_9901_TCP_ADDR: '10.0.0.2',
    }
    const { config, warnings } = loadConfigText(text, 'routes.yaml', links)
    expect(warnings).toEqual([])
    expect(config.listen).toBe('0.0.0.0:8080')
  })
})

describe('loadConfigFile', () => {
  it('loads a file and names it as given in messages', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-config-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const file = join(dir, 'routes.yaml')
    writeFileSync(file, yaml('listen: 0.0.0.0:8080', 'admin: x'))
    expect(() => loadConfigFile(file, {})).toThrow(`${file}:2:8 admin: must be host:port`)
    writeFileSync(file, yaml('listen: 0.0.0.0:8081', ...A_ROUTE))
    expect(loadConfigFile(file, {}).config.listen).toBe('0.0.0.0:8081')
  })

  it('reports a missing file as a ConfigError', () => {
    expect(() => loadConfigFile('no/such/routes.yaml', {})).toThrow('no/such/routes.yaml cannot read the config file: no such file')
  })

  it('loads 10 000 routes in linear time', () => {
    const lines = ['upstreams:', '  u:', '    targets: [{ url: "http://127.0.0.1:9001" }]', 'routes:']
    for (let i = 0; i < 10_000; i++) {
      lines.push(`  - id: r${i}`, '    match:', `      path: /api/v${i}/:id/*`, '      methods: [GET, POST]', '    upstream: u')
    }
    const text = yaml(...lines)
    const before = process.cpuUsage()
    const { config } = loadConfigText(text, 'routes.yaml', {})
    const used = process.cpuUsage(before)
    expect(config.routes).toHaveLength(10_000)
    // CPU time, not wall time: shared CI machines stall. Most of it is the yaml package's parser; the bound
    // only catches something quadratic.
    expect((used.user + used.system) / 1000).toBeLessThan(6000)
  })
})
