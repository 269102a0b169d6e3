// What the schema cannot say: references between items, path pattern syntax, listeners that collide,
// routes that can never match. Also lists settings that are accepted but not enforced yet.
import type { ConfigIssue } from '../errors.js'
import type { Access, Auth, Config, RateLimit, Route } from './schema.js'
import { parseCidr } from '../lib/ip-address.js'
import { parseRoutePath, policyProblem, type RoutePath } from './route-path.js'
import { formatPath, type IssueTarget, type PathSegment } from './validate-value.js'
import { isMapping } from '../lib/plain-data.js'
import { splitEntries, upstreamReferences } from './route-upstreams.js'
import { splitHostPort } from '../lib/host-port.js'
import { jwtProblems } from './auth-keys.js'

/** `file:line:col` (or another source description) of the node at `path`. */
export type Locate = (path: readonly PathSegment[], at?: IssueTarget) => string

/**
 * Cross-checks a schema-checked config. `isValid(path)` is false for values that failed the schema; checks
 * needing them are skipped, so one broken field does not hide the other problems of the file.
 */
export function checkConfig(config: Config, locate: Locate, isValid: (path: readonly PathSegment[]) => boolean = () => true): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const report = (severity: ConfigIssue['severity'], path: readonly PathSegment[], message: string): void => {
    issues.push({ where: locate(path), path: formatPath(path), message, severity })
  }
  checkListeners(config, isValid, locate, report)
  // README "HTTP/2": h2 is offered by ALPN during the TLS handshake; h2c is its plaintext form.
  if (isValid(['http2'])) {
    if (config.http2 === true && config.tls === undefined) {
      report('warning', ['http2'], 'http2: true offers HTTP/2 by ALPN on a TLS listener and has no effect without tls:; for HTTP/2 in cleartext write http2: h2c')
    }
    if (config.http2 === 'h2c' && config.tls !== undefined) {
      report('error', ['http2'], 'h2c is HTTP/2 without TLS; with tls: write http2: true (HTTP/2 by ALPN)')
    }
  }
  const upstreams: Config['upstreams'] = isMapping(config.upstreams) ? config.upstreams : {}
  const upstreamNames = Object.keys(upstreams)
  for (const name of upstreamNames) {
    const upstream = upstreams[name]
    if (upstream === undefined || !isValid(['upstreams', name])) continue
    if (isValid(['upstreams', name, 'targets'])) {
      upstream.targets.forEach((target, t) => {
        const problem = targetUrlProblem(target.url)
        if (problem !== null) report('error', ['upstreams', name, 'targets', t, 'url'], problem)
      })
    }
    // tls: applies to https:// targets only; an upstream without any (registered ones may still come) is told.
    if (upstream.tls !== undefined && isValid(['upstreams', name, 'targets']) && upstream.targets.length > 0 &&
      !upstream.targets.some((t) => t.url.startsWith('https://'))) {
      report('warning', ['upstreams', name, 'tls'], 'tls: applies to https:// targets only, and this upstream has none; its targets are reached in plaintext')
    }
    if (upstream.balancer === 'hash' && upstream.hashKey === undefined) {
      report('error', ['upstreams', name, 'balancer'], 'balancer "hash" needs hashKey (client-ip, path, header:<name> or query:<name>)')
    }
    checkHealthCheck(name, upstream, report)
  }
  checkRedis(config, isValid, report)
  checkTracing(config, isValid, report)
  const routes = Array.isArray(config.routes) ? config.routes : []
  // README "Configuration", Validation: a file that routes nothing serves only 404s; it is a mistake unless etcd brings the routes.
  if (routes.length === 0 && config.etcd === undefined && isValid(['routes'])) {
    report('error', [], 'the config has no routes (and no etcd: section to bring them): every request would get 404. Add routes: or an etcd: section')
  }
  const paths = { mergeSlashes: config.paths?.mergeSlashes !== false, rejectSemicolon: config.paths?.rejectSemicolon !== false }
  const allowEncodedSlash = config.paths?.allowEncodedSlash === true
  const firstById = new Map<string, number>()
  const firstByMatch = new Map<string, number>()
  routes.forEach((route, i) => {
    const at = (...rest: PathSegment[]): PathSegment[] => ['routes', i, ...rest]
    const ok = (...rest: PathSegment[]): boolean => isValid(at(...rest))
    if (ok('id')) {
      const first = firstById.get(route.id)
      if (first === undefined) firstById.set(route.id, i)
      else report('error', at('id'), `duplicate route id "${route.id}": routes[${first}] (${locate(['routes', first, 'id'])}) already uses it`)
    }
    for (const ref of upstreamReferences(route)) {
      if (ok(...ref.path) && !Object.hasOwn(upstreams, ref.name)) report('error', at(...ref.path), undefinedUpstream(ref.name, upstreamNames))
    }
    checkSplit(route, at, ok, report)
    const fallback = ok('circuitBreaker') ? route.circuitBreaker?.fallback : undefined
    if (fallback !== undefined && 'upstream' in fallback && Object.hasOwn(upstreams, fallback.upstream) && ok('upstream') &&
      splitEntries(route).some((e) => e.upstream === fallback.upstream)) {
      report('error', at('circuitBreaker', 'fallback', 'upstream'),
        `"${fallback.upstream}" is the route's own upstream: an open breaker would send requests to the upstream it protects. Name another upstream, or use a fallback response ({ status, body, headers }).`)
    }
    if (isMapping(route.access)) checkAccess(route.access, at, ok, report)
    if (ok('auth') && route.auth !== undefined) checkAuth(route.auth, at, locate, report, ok('auth', 'jwt', 'publicKey'))
    if (ok('forwardClientCert') && route.forwardClientCert !== undefined && config.tls?.clientAuth === undefined) {
      report('error', at('forwardClientCert'), 'forwardClientCert needs tls.clientAuth (a CA to verify client certificates against); without it no request has one')
    }
    // 0 would turn the socket timeout off: a connection nobody uses would be held for ever.
    if (ok('idleTimeout') && route.idleTimeout === 0) report('error', at('idleTimeout'), 'must be longer than 0ms, got 0ms; e.g. 5m')
    if (ok('rateLimit') && route.rateLimit !== undefined) checkRateLimits(route.rateLimit, config, at, locate, report)
    if (ok('rateLimit') && route.rateLimit !== undefined && (!ok('auth') || route.auth === undefined)) {
      route.rateLimit.forEach((limit, j) => {
        if (limit.key.split(',').includes('consumer')) {
          report('error', at('rateLimit', j, 'key'), 'key "consumer" needs the route to have auth: (the consumer is who the key belongs to); add auth:, or key by client-ip or header:<name>')
        }
      })
    }
    if (!ok('match', 'path')) return
    // The router parses with the same function: what passes here is what it builds (config/route-path.ts).
    const parsed = parseRoutePath(route.match.path)
    const policy = { ...paths, allowEncodedSlash: ok('allowEncodedSlash') ? route.allowEncodedSlash ?? allowEncodedSlash : true }
    const pathError = typeof parsed === 'string' ? parsed : policyProblem(parsed, route.match.path, policy)
    if (pathError !== null) report('error', at('match', 'path'), pathError)
    if (typeof parsed === 'string') return
    if (ok('rewrite') && route.rewrite !== undefined && 'path' in route.rewrite) {
      for (const message of rewriteErrors(route.rewrite.path, route.match.path, parsed)) report('error', at('rewrite', 'path'), message)
    }
    if (pathError !== null || !ok('match') || !ok('priority') || !ok('id')) return
    const key = matchKey(route, parsed)
    const shadowing = firstByMatch.get(key)
    if (shadowing === undefined) firstByMatch.set(key, i)
    else {
      const earlier = routes[shadowing]?.id ?? ''
      report('warning', at(), `route "${route.id}" can never match: route "${earlier}" (${locate(['routes', shadowing])}) has the same match and comes first`)
    }
  })
  return issues
}

/** What is wrong with a target URL the schema's pattern let through (a port that is no port), or null. */
function targetUrlProblem(url: string): string | null {
  const authority = /^https?:\/\/([^/?#]+)/.exec(url)?.[1] ?? ''
  const at = authority.lastIndexOf('@')
  if (at >= 0) return 'a target URL has no user or password part'
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(authority)
  const port = m?.[2]
  if (port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    return `port ${JSON.stringify(port)} is not a port number from 1 to 65535`
  }
  try {
    new URL(url)
  } catch {
    return `${JSON.stringify(url)} is not a valid URL`
  }
  return null
}

// README "Access lists": every CIDR parses, with no host bits set (10.0.0.1/8 is a typo for 10.0.0.0/8 or /32).
function checkAccess(access: Access, at: (...rest: PathSegment[]) => PathSegment[], ok: (...rest: PathSegment[]) => boolean, report: Report): void {
  for (const list of ['allow', 'deny'] as const) {
    if (!Array.isArray(access[list])) continue
    access[list].forEach((cidr, k) => {
      if (!ok('access', list, k)) return // the schema already said what is wrong with it
      const parsed = parseCidr(cidr)
      if (typeof parsed === 'string') report('error', at('access', list, k), parsed)
    })
  }
}

// README "Traffic splitting": weights that send somewhere, each upstream once, a sticky key that exists.
function checkSplit(route: Route, at: (...rest: PathSegment[]) => PathSegment[], ok: (...rest: PathSegment[]) => boolean, report: Report): void {
  const split = ok('upstream') && Array.isArray(route.upstream) ? route.upstream : null
  if (split !== null) {
    if (split.every((e) => e.weight === 0)) {
      report('error', at('upstream'), 'every weight is 0: the split would send no request anywhere. Give at least one upstream a weight above 0')
    }
    const seen = new Map<string, number>()
    split.forEach((e, i) => {
      const first = seen.get(e.upstream)
      if (first === undefined) seen.set(e.upstream, i)
      else report('error', at('upstream', i, 'upstream'), `"${e.upstream}" is already upstream[${first}] of this split; name each upstream once and add up its weight`)
    })
  }
  if (ok('sticky') && route.sticky !== undefined) {
    if (ok('upstream') && split === null) {
      report('error', at('sticky'), 'sticky needs a weighted split (upstream: [{ upstream, weight }, ...]); with one upstream there is no side to stick to')
    } else if (route.sticky === 'consumer' && route.auth === undefined) {
      report('error', at('sticky'), 'sticky "consumer" needs the route to have auth: (the consumer is who the key belongs to); add auth:, or stick by header:<name>, cookie:<name> or client-ip')
    }
  }
  if (ok('splitRules') && route.splitRules !== undefined) {
    route.splitRules.forEach((rule, i) => {
      const n = Object.keys(rule.match.headers ?? {}).length + Object.keys(rule.match.cookies ?? {}).length
      if (n === 0) report('error', at('splitRules', i, 'match'), 'matches every request: give it headers: or cookies:, or make the upstream the route\'s own')
    })
  }
}

// README "Authentication": the block of the chosen type; one key hash names one consumer.
function checkAuth(auth: Auth, at: (...rest: PathSegment[]) => PathSegment[], locate: Locate, report: Report, publicKeyRead: boolean): void {
  const block = auth[auth.type]
  if (block === undefined) {
    report('error', at('auth'), `auth type "${auth.type}" needs ${AUTH_BLOCKS[auth.type]}`)
    return
  }
  for (const other of ['key', 'jwt', 'basic'] as const) {
    if (other !== auth.type && auth[other] !== undefined) report('error', at('auth', other), `${other}: is set but type is "${auth.type}": it would be ignored; remove it or change type`)
  }
  if (auth.allow !== undefined && auth.type !== 'jwt') {
    // key/basic consumers are named in the config: a name that is none of them can never get in (a typo).
    const consumers = auth.type === 'key' ? auth.key!.consumers : auth.basic!.consumers
    auth.allow.forEach((name, j) => {
      if (!Object.hasOwn(consumers, name)) {
        report('error', at('auth', 'allow', j), `"${name}" is not a consumer of this route (auth.${auth.type}.consumers has ${Object.keys(consumers).map((c) => `"${c}"`).join(', ') || 'none'}); add it there or remove it here`)
      }
    })
  }
  if (auth.type === 'jwt') {
    // An unreadable publicKey file was reported by load.ts (auth-keys.ts); its name is no PEM to check.
    if (!publicKeyRead) return
    for (const [field, message] of jwtProblems(auth.jwt!)) report('error', field === null ? at('auth', 'jwt') : at('auth', 'jwt', field), message)
    if (auth.forwardConsumer.toLowerCase() === 'authorization') report('error', at('auth', 'forwardConsumer'), '"authorization" carries the credential; name another header')
    return
  }
  if (auth.type === 'basic') {
    if (Object.keys(auth.basic!.consumers).length === 0) report('error', at('auth', 'basic', 'consumers'), 'no consumers: every request would get 401')
    if (auth.forwardConsumer.toLowerCase() === 'authorization') report('error', at('auth', 'forwardConsumer'), '"authorization" carries the credential; name another header')
    return
  }
  const key = auth.key!
  const byHash = new Map<string, string>()
  for (const [name, consumer] of Object.entries(key.consumers)) {
    const first = byHash.get(consumer.keyHash)
    if (first === undefined) byHash.set(consumer.keyHash, name)
    else {
      report('error', at('auth', 'key', 'consumers', name, 'keyHash'),
        `consumers "${first}" (${locate(at('auth', 'key', 'consumers', first, 'keyHash'))}) and "${name}" have the same keyHash: one key must name one consumer`)
    }
  }
  if (Object.keys(key.consumers).length === 0) report('error', at('auth', 'key', 'consumers'), 'no consumers: every request would get 401')
  if (auth.forwardConsumer.toLowerCase() === key.header.toLowerCase()) {
    report('error', at('auth', 'forwardConsumer'), `"${auth.forwardConsumer}" is also the key header: the key would be replaced by the consumer name; name another header`)
  }
}

const AUTH_BLOCKS = {
  key: 'key: { header, consumers: { <name>: { keyHash: "sha256:<hex>" } } }',
  jwt: 'jwt: { secret | publicKey | jwks, issuer, audience, algorithms }',
  basic: 'basic: { consumers: { <name>: { passwordHash: "$2b$..." } } }',
} as const

type Report = (severity: ConfigIssue['severity'], path: readonly PathSegment[], message: string) => void

/** A limiter's name: its `name`, else `<algorithm>-<position>` (`token-bucket-0`). Labels metrics and Redis keys. */
export function limiterName(limit: RateLimit, index: number): string {
  return limit.name ?? `${limit.algorithm}-${index}`
}

// README "Health checks". Durations are milliseconds only when the whole file validated (load.ts decodes
// it then); otherwise they are still text and the checks on them wait for the other errors to be fixed.
function checkHealthCheck(name: string, upstream: Config['upstreams'][string], report: Report): void {
  const at = (...rest: PathSegment[]): PathSegment[] => ['upstreams', name, 'healthCheck', ...rest]
  const active = upstream.healthCheck?.active
  if (active !== undefined) {
    for (const field of ['interval', 'timeout'] as const) {
      if (active[field] === 0) report('error', at('active', field), `must be longer than 0ms, got ${active[field]}ms; e.g. ${field === 'interval' ? '5s' : '1s'}`)
    }
    active.expectStatus.forEach((item, i) => {
      if (typeof item !== 'string' || !item.includes('-')) return
      const [lo, hi] = item.split('-').map(Number) as [number, number]
      if (lo > hi) report('error', at('active', 'expectStatus', i), `range "${item}" is empty: its first status is above its last; write "${hi}-${lo}"`)
    })
    if (active.grpcService !== undefined && upstream.protocol !== 'grpc') {
      report('error', at('active', 'grpcService'), 'the gRPC health protocol needs protocol: grpc on the upstream')
    }
  }
  const passive = upstream.healthCheck?.passive
  if (passive !== undefined && typeof passive.ejectionTime === 'number' && typeof passive.maxEjectionTime === 'number') {
    if (passive.ejectionTime === 0) report('error', at('passive', 'ejectionTime'), 'must be longer than 0ms, got 0ms; to turn ejection off, remove healthCheck.passive')
    else if (passive.maxEjectionTime < passive.ejectionTime) {
      report('error', at('passive', 'maxEjectionTime'), `must be at least ejectionTime (${passive.ejectionTime}ms), got ${passive.maxEjectionTime}ms`)
    }
  }
}

function checkRedis(config: Config, isValid: (path: readonly PathSegment[]) => boolean, report: Report): void {
  const redis = config.redis
  if (redis === undefined || !isValid(['redis'])) return
  if (redis.url === undefined && redis.cluster === undefined) report('error', ['redis'], 'needs url (one Redis) or cluster (Redis Cluster seed nodes)')
  if (redis.url !== undefined && redis.cluster !== undefined) report('error', ['redis', 'cluster'], 'give either url or cluster, not both')
}

/** tracing.endpoint: the OTLP exporter would refuse it at start-up, where the file cannot be named any more. */
function checkTracing(config: Config, isValid: (path: readonly PathSegment[]) => boolean, report: Report): void {
  const tracing = config.tracing
  if (tracing === undefined || !isValid(['tracing', 'endpoint'])) return
  let url: URL | null = null
  try {
    url = new URL(tracing.endpoint)
  } catch {
    // reported below
  }
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    report('error', ['tracing', 'endpoint'], `must be an http:// or https:// URL of the OTLP/HTTP traces endpoint, got ${JSON.stringify(tracing.endpoint)}; e.g. http://127.0.0.1:4318/v1/traces`)
  }
}

function checkRateLimits(limits: readonly RateLimit[], config: Config, at: (...rest: PathSegment[]) => PathSegment[], locate: Locate, report: Report): void {
  const firstByName = new Map<string, number>()
  limits.forEach((limit, j) => {
    const name = limiterName(limit, j)
    const first = firstByName.get(name)
    if (first === undefined) firstByName.set(name, j)
    else {
      const where = limit.name === undefined ? at('rateLimit', j) : at('rateLimit', j, 'name')
      const why = limit.name === undefined ? ` (the default name of an unnamed ${limit.algorithm} limiter at position ${j})` : ''
      report('error', where, `limiter name "${name}"${why} is used twice on this route: rateLimit[${first}] (${locate(at('rateLimit', first))}) already uses it; names label metrics and Redis keys`)
    }
    if (limit.key.split(',').includes('client-cert') && config.tls?.clientAuth === undefined) {
      report('error', at('rateLimit', j, 'key'), 'key "client-cert" needs tls.clientAuth (a CA to verify client certificates against); without it no request has one')
    }
    if (limit.scope === 'cluster' && config.redis === undefined) {
      report('error', at('rateLimit', j, 'scope'), 'scope "cluster" needs a top-level redis: section (url or cluster); or use scope "local"')
    }
  })
}

const WILDCARD_HOSTS = new Set(['', '0.0.0.0', '[::]', '::'])

// README.md "Configuration": admin is never on the proxy port. Port 0 asks the OS for a free port, so two port-0 listeners are fine.
function checkListeners(config: Config, isValid: (path: readonly PathSegment[]) => boolean, locate: Locate, report: Report): void {
  if (!isValid(['listen']) || !isValid(['admin'])) return
  const split = (address: string): [string, string] => {
    const { host, port } = splitHostPort(address)
    return [host.toLowerCase(), port]
  }
  const [listenHost, listenPort] = split(config.listen)
  const [adminHost, adminPort] = split(config.admin)
  for (const [field, port] of [['listen', listenPort], ['admin', adminPort]] as const) {
    if (Number(port) > 65535) report('error', [field], `port ${port} is out of range; ports go from 0 to 65535`)
  }
  if (Number(listenPort) === 0 || Number(listenPort) !== Number(adminPort)) return
  if (listenHost === adminHost || WILDCARD_HOSTS.has(listenHost) || WILDCARD_HOSTS.has(adminHost)) {
    report('error', ['admin'], `admin ${config.admin} overlaps the proxy listener ${config.listen} (${locate(['listen'])}); admin endpoints are never served on the proxy port`)
  }
}

function undefinedUpstream(name: string, defined: readonly string[]): string {
  if (defined.length === 0) return `upstream "${name}" is not defined; no upstreams are defined`
  const shown = defined.slice(0, 20).join(', ')
  const more = defined.length > 20 ? ` and ${defined.length - 20} more` : ''
  return `upstream "${name}" is not defined; defined upstreams: ${shown}${more}`
}

function rewriteErrors(template: string, matchPath: string, parsed: RoutePath): string[] {
  const params = parsed.paramNames.filter((name) => name !== '*')
  const hasWildcard = parsed.hasWildcard
  const errors: string[] = []
  for (const segment of template.split('/')) {
    if (segment.startsWith(':') && !params.includes(segment.slice(1))) {
      const known = params.length === 0 ? 'it has no parameters' : `its parameters: ${params.map((p) => `:${p}`).join(', ')}`
      errors.push(`uses ${segment}, which match.path ${JSON.stringify(matchPath)} does not define (${known})`)
    } else if (segment === '*' && !hasWildcard) {
      errors.push(`uses *, but match.path ${JSON.stringify(matchPath)} has no * segment`)
    }
  }
  return errors
}

/**
 * Two routes with the same key take exactly the same requests. The path part is the router's view of it:
 * canonical static segments (`/%61dmin` is `/admin`), parameter names dropped.
 */
function matchKey(route: Route, parsed: RoutePath): string {
  const path = parsed.segments.map((s) => (s.kind === 'param' ? ':' : s.label)).join('/') + (parsed.hasWildcard ? '/*' : '')
  const methods = route.match.methods === undefined ? '*' : [...new Set(route.match.methods.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])))].sort().join(',')
  const host = route.match.host?.toLowerCase() ?? ''
  const headers = Object.entries(route.match.headers ?? {}).map(([k, v]) => `${k.toLowerCase()}=${v}`).sort().join('\u0001')
  return [path, methods, host, headers, String(route.priority)].join('\u0000')
}

/** Settings accepted now whose behaviour arrives in a later issue, one human-readable line each. */
export function listNotEnforced(config: Config): string[] {
  const out: string[] = []
  void config // every setting of this version is enforced; the list is kept for the next ones
  return out
}
