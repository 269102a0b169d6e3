// Config -> RouteTable: everything a request needs, worked out once per config version.
// A rebuild reuses what did not change: CompiledUpstreams whose settings are equal (their pools, targets
// and undici connection pools), Target objects of unchanged URLs inside changed upstreams, and the metric
// children of every route id that stays. What goes away is released by commit(), after the swap.
import { Pool } from '../upstream/undici-pool.js'
import type { Config, Route, Upstream } from '../config/schema.js'
import { parseDurationMs, parseSizeBytes } from '../config/units.js'
import type { PathPolicy } from '../http/canonical-path.js'
import { sweepIntervalMs } from '../proxy/response-watch.js'
import { TrustedProxies } from '../proxy/headers.js'
import type { Metrics, RouteMetrics, UpstreamMetrics } from '../telemetry/metrics.js'
import { HashKey } from '../http/request-key.js'
import { RetryPolicy } from '../upstream/retry-policy.js'
import type { Target } from '../upstream/target.js'
import { UpstreamPool } from '../upstream/upstream-pool.js'
import { Router } from '../router/router.js'

export class CompiledUpstream {
  constructor(
    readonly name: string,
    readonly key: string,                 // JSON of the settings: equal key -> reused as is
    readonly pool: UpstreamPool,
    readonly hostHeader: string | null,   // null: pass the client's Host
    readonly hostFromTarget: boolean,
    readonly connectTimeoutMs: number,
    readonly responseTimeoutMs: number,
    readonly retry: RetryPolicy,
    readonly hashKey: HashKey | null,
    readonly metrics: UpstreamMetrics,
  ) {}
}

type RewriteFn = (path: string, params: Readonly<Record<string, string>>) => string

export class CompiledRoute {
  constructor(
    readonly id: string,
    readonly key: string,
    readonly upstream: CompiledUpstream,
    readonly rewritePath: RewriteFn,
    readonly maxBodyBytes: number,
    readonly allowEncodedSlash: boolean,
    readonly websocket: boolean,
    readonly metrics: RouteMetrics,
  ) {}
}

export class RouteTable {
  constructor(
    readonly version: number,
    readonly config: Config,
    readonly router: Router<CompiledRoute>,
    readonly routes: ReadonlyMap<string, CompiledRoute>,
    readonly upstreams: ReadonlyMap<string, CompiledUpstream>,
    readonly pathPolicy: PathPolicy,
    readonly trustedProxies: TrustedProxies,
    readonly routeMetrics: ReadonlyMap<string, RouteMetrics>,
    /** Some route matches on headers: only then does a request build Node's lazy req.headers object. */
    readonly matchesHeaders: boolean,
  ) {
    this.sweepMs = sweepIntervalMs(Array.from(upstreams.values(), (u) => u.responseTimeoutMs))
  }

  /** How often timeouts.response is checked for requests in flight (response-watch.ts). */
  readonly sweepMs: number

  /** At shutdown: destroys every connection pool of this table's upstreams (requests still in flight are cut). */
  async close(): Promise<void> {
    await Promise.all([...this.upstreams.values()].flatMap((u) => u.pool.targets.map((t) =>
      (t.dispatcher as Pool | null)?.destroy().catch(() => undefined))))
  }
}

export interface BuildResult {
  readonly table: RouteTable
  /** Call right after the new table is in service: closes what the old table alone used. */
  commit(): void
}

const identity: RewriteFn = (path) => path

/** Builds a table from a validated config. Throws only on programming errors; config errors are load.ts's. */
export function buildRouteTable(config: Config, prev: RouteTable | null, metrics: Metrics): BuildResult {
  const upstreams = new Map<string, CompiledUpstream>()
  const added: Array<{ readonly target: Target; readonly upstream: CompiledUpstream }> = []
  const retired: Target[] = []
  for (const [name, spec] of Object.entries(config.upstreams)) {
    const old = prev?.upstreams.get(name)
    const built = compileUpstream(name, spec, old, metrics)
    upstreams.set(name, built.upstream)
    for (const target of built.added) added.push({ target, upstream: built.upstream })
    retired.push(...built.retired)
  }
  if (prev !== null) {
    for (const [name, old] of prev.upstreams) {
      if (!upstreams.has(name)) retired.push(...old.pool.targets)
    }
  }
  const defaultMaxBody = parseSizeBytes(config.limits.maxBodySize)
  const routes = new Map<string, CompiledRoute>()
  const routeMetrics = new Map<string, RouteMetrics>()
  const entries = []
  for (const route of config.routes) {
    const upstream = upstreams.get(route.upstream)
    if (upstream === undefined) throw new Error(`route ${route.id}: upstream ${route.upstream} is not defined (load.ts should have rejected this)`)
    const key = JSON.stringify(route)
    const old = prev?.routes.get(route.id)
    const m = prev?.routeMetrics.get(route.id) ?? metrics.forRoute(route.id)
    routeMetrics.set(route.id, m)
    const compiled = old !== undefined && old.key === key && old.upstream === upstream
      ? old
      : new CompiledRoute(
        route.id, key, upstream, compileRewrite(route),
        route.maxBodySize === undefined ? defaultMaxBody : parseSizeBytes(route.maxBodySize),
        route.allowEncodedSlash ?? config.paths.allowEncodedSlash,
        route.websocket, m,
      )
    routes.set(route.id, compiled)
    entries.push({
      spec: {
        id: route.id,
        path: route.match.path,
        methods: route.match.methods ?? null,
        host: route.match.host ?? null,
        headers: route.match.headers ?? null,
        priority: route.priority,
      },
      value: compiled,
    })
  }
  for (const { target, upstream } of added) attachDispatcher(target, upstream)
  const table = new RouteTable(
    (prev?.version ?? 0) + 1,
    config,
    new Router(entries),
    routes,
    upstreams,
    { mergeSlashes: config.paths.mergeSlashes, rejectSemicolon: config.paths.rejectSemicolon },
    new TrustedProxies(config.clientIp.trustedProxies),
    routeMetrics,
    config.routes.some((r) => r.match.headers !== undefined && Object.keys(r.match.headers).length > 0),
  )
  return {
    table,
    commit() {
      if (prev === null) return
      const live = new Set<Target>()
      for (const u of upstreams.values()) for (const t of u.pool.targets) live.add(t)
      for (const target of retired) {
        if (live.has(target)) continue
        target.closing = true
        // undici's close() lets requests in flight finish, then closes the sockets.
        void (target.dispatcher as Pool | null)?.close().catch(() => undefined)
      }
      for (const [id, m] of prev.routeMetrics) if (!routeMetrics.has(id)) m.remove()
      for (const [name, old] of prev.upstreams) {
        const now = upstreams.get(name)
        if (now === undefined) old.metrics.remove(old.pool.targets.map((t) => t.hostPort))
        else for (const t of old.pool.targets) if (!now.pool.targets.includes(t)) old.metrics.removeTarget(t.hostPort)
      }
    },
  }
}

/** A keep-alive connection pool per target (STYLE: an undici Pool per target). */
function attachDispatcher(target: Target, upstream: CompiledUpstream): void {
  target.dispatcher = new Pool(target.origin, {
    connect: { timeout: upstream.connectTimeoutMs },
    // timeouts.response is enforced by the proxy's sweep (src/proxy/response-watch.ts), not undici's timers.
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: 4_000,
    pipelining: 1,
    strictContentLength: true,
  })
  upstream.metrics.setTargetUp(target.hostPort, target.healthy)
}

function compileUpstream(name: string, spec: Upstream, old: CompiledUpstream | undefined, metrics: Metrics):
  { upstream: CompiledUpstream; added: Target[]; retired: Target[] } {
  const key = JSON.stringify(spec)
  if (old !== undefined && old.key === key) return { upstream: old, added: [], retired: [] }
  const connectMs = parseDurationMs(spec.timeouts.connect)
  const responseMs = parseDurationMs(spec.timeouts.response)
  const specs = spec.targets.map((t) => ({ url: t.url, weight: t.weight }))
  const maxConcurrent = spec.maxConcurrent ?? null
  let pool: UpstreamPool
  let added: Target[]
  let retired: Target[] = []
  // Connection pools are built with the connect timeout: when it changes, every target gets a new one.
  // timeouts.response is not theirs (the proxy's sweep reads it per request), so it changes in place.
  if (old !== undefined && old.connectTimeoutMs === connectMs) {
    const r = old.pool.withTargets(specs, { balancer: spec.balancer, maxConcurrent, onAllUnhealthy: spec.onAllUnhealthy })
    pool = r.pool
    added = r.added
    retired = r.removed
  } else {
    pool = UpstreamPool.fromSpecs(name, specs, spec.balancer, maxConcurrent, spec.onAllUnhealthy)
    added = [...pool.targets]
    if (old !== undefined) retired = [...old.pool.targets]
  }
  const hostHeader = spec.hostHeader === 'pass' || spec.hostHeader === 'target' ? null : spec.hostHeader
  const upstream = new CompiledUpstream(
    name, key, pool, hostHeader, spec.hostHeader === 'target', connectMs, responseMs,
    new RetryPolicy(spec.retry),
    spec.balancer === 'hash' && spec.hashKey !== undefined ? new HashKey(spec.hashKey) : null,
    old?.metrics ?? metrics.forUpstream(name),
  )
  return { upstream, added, retired }
}

/**
 * rewrite.stripPrefix: remove the prefix from the canonical path, on a segment boundary only (`/api` strips
 * `/api/x` and `/api`, never `/apiary`); an empty result forwards `/`.
 * rewrite.path: a template; `:name` takes the route parameter, `*` the wildcard rest. Both work on the
 * canonical path and build the result by concatenation, never by URL resolution (PITFALLS §0.2). The
 * template is split at build time into literals and parameter names, so a request only concatenates.
 */
function compileRewrite(route: Route): RewriteFn {
  const rewrite = route.rewrite
  if (rewrite === undefined) return identity
  if ('stripPrefix' in rewrite) {
    const strip = rewrite.stripPrefix
    const prefix = strip.length > 1 && strip.endsWith('/') ? strip.slice(0, -1) : strip
    if (prefix === '/') return identity
    const n = prefix.length
    return (path) => {
      if (!path.startsWith(prefix)) return path
      if (path.length === n) return '/'
      return path.charCodeAt(n) === 0x2f ? path.slice(n) : path
    }
  }
  // '/internal/u/:id/f/*' -> literals ['/internal/u/', '/f/'], names ['id', '*'], tail ''.
  const literals: string[] = []
  const names: string[] = []
  let text = ''
  for (const segment of rewrite.path.split('/').slice(1)) {
    text += '/'
    if (segment === '*' || segment.startsWith(':')) {
      literals.push(text)
      names.push(segment === '*' ? '*' : segment.slice(1))
      text = ''
    } else {
      text += segment
    }
  }
  const tail = text
  if (names.length === 0) return () => tail
  return (_path, params) => {
    let out = ''
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!
      const value = params[name] ?? ''
      // The wildcard rest may itself start with '/' (paths.mergeSlashes: false): do not double it.
      out += name === '*' && value.charCodeAt(0) === 0x2f ? literals[i]!.slice(0, -1) + value : literals[i]! + value
    }
    return out + tail
  }
}
