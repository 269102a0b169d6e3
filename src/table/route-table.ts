// The composition root: Config -> RouteTable, everything a request needs, worked out once per config
// version. A rebuild reuses each component whose own settings did not change (reuse.ts): upstream pools
// (with their targets and undici connection pools), retry policies, hash keys, rewrites, the metric
// children of every route id that stays. What goes away is released by commit(), after the swap.
import { performance } from 'node:perf_hooks'
import type { Config } from '../config/schema.js'
import type { PathPolicy } from '../http/canonical-path.js'
import { TrustedProxies } from '../http/client-ip.js'
import { Router } from '../router/router.js'
import type { Metrics, RouteMetrics } from '../telemetry/metrics.js'
import type { Target } from '../upstream/target.js'
import { createTargetPool } from '../upstream/undici-pool.js'
import type { HealthFeed } from '../upstream/health/health-feed.js'
import type { ClusterStore } from '../policy/ratelimit/cluster-store.js'
import { KeyStore } from '../policy/ratelimit/key-store.js'
import { retireLimiter, type LimitContext, type Limiter } from './compiled-limits.js'
import { compileRoute, type CompiledRoute } from './compiled-route.js'
import { primaryUpstreamName } from './compiled-split.js'
import { retireBreaker } from './compiled-breaker.js'
import { openClusterStore } from './cluster-store-factory.js'
import { reuse, type Keyed } from './reuse.js'
import { compileUpstream, type CompiledUpstream } from './compiled-upstream.js'

export class RouteTable {
  /** The shortest timeouts.response of any upstream (Infinity with none): sets the sweep interval of src/proxy/response-watch.ts. */
  readonly minResponseTimeoutMs: number

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
    /** The local limiters' key state: one per gateway, handed from table to table. */
    readonly keyStore: KeyStore,
    /** The Redis store of cluster-scope limits (null: no redis: section), reused while redis: is unchanged. */
    readonly clusterStore: Keyed<ClusterStore | null>,
  ) {
    let min = Infinity
    for (const u of upstreams.values()) if (u.responseTimeoutMs > 0 && u.responseTimeoutMs < min) min = u.responseTimeoutMs
    this.minResponseTimeoutMs = min
  }

  /** At shutdown: destroys every connection pool of this table's upstreams (requests still in flight are cut). */
  async close(): Promise<void> {
    this.keyStore.close()
    for (const u of this.upstreams.values()) u.health.close()
    await Promise.all([
      ...[...this.upstreams.values()].flatMap((u) => u.pool.targets.map((t) => t.dispatcher?.destroy().catch(() => undefined))),
      this.clusterStore.value?.close().catch(() => undefined),
    ])
  }
}

export interface BuildResult {
  readonly table: RouteTable
  /** Call right after the new table is in service: closes what the old table alone used. */
  commit(): void
}

export interface TableOptions {
  /** Processes serving the port (--workers N): local limiters count 1/N each. Default 1. */
  readonly workers?: number
  /** Active probe reports (README "Health checks"): a target's first state when active checks are on. */
  readonly healthFeed?: HealthFeed | null
}

/** Builds a table from a validated config. Throws only on programming errors; config errors are load.ts's. */
export function buildRouteTable(config: Config, prev: RouteTable | null, metrics: Metrics, options: TableOptions = {}): BuildResult {
  const keyStore = prev?.keyStore ?? new KeyStore(config.limits.maxLimiterKeys)
  if (prev === null) metrics.limiterKeysNow = () => keyStore.size
  const redis = config.redis ?? null
  const clusterStore = reuse(prev?.clusterStore, redis, () => (redis === null ? null : openClusterStore(redis, metrics)))
  const limitContext: LimitContext = { keyStore, clusterStore: clusterStore.value, workers: options.workers ?? 1, metrics }
  const upstreams = new Map<string, CompiledUpstream>()
  const added: Array<{ readonly target: Target; readonly upstream: CompiledUpstream }> = []
  const retired: Target[] = []
  for (const [name, spec] of Object.entries(config.upstreams)) {
    const built = compileUpstream(name, spec, prev?.upstreams.get(name), metrics, options.healthFeed ?? null)
    upstreams.set(name, built.upstream)
    for (const target of built.added) added.push({ target, upstream: built.upstream })
    retired.push(...built.retired)
  }
  if (prev !== null) {
    for (const [name, old] of prev.upstreams) {
      if (!upstreams.has(name)) retired.push(...old.pool.targets)
    }
  }
  const routes = new Map<string, CompiledRoute>()
  const routeMetrics = new Map<string, RouteMetrics>()
  const entries = []
  for (const route of config.routes) {
    const name = primaryUpstreamName(route)
    const upstream = upstreams.get(name)
    if (upstream === undefined) throw new Error(`route ${route.id}: upstream ${name} is not defined (load.ts should have rejected this)`)
    const m = prev?.routeMetrics.get(route.id) ?? metrics.forRoute(route.id)
    routeMetrics.set(route.id, m)
    const compiled = compileRoute(route, config, upstream, upstreams, prev?.routes.get(route.id), m, limitContext)
    routes.set(route.id, compiled)
    if (compiled.websocket) metrics.exposeWebsocketConnections()
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
  for (const { target, upstream } of added) {
    target.dispatcher = createTargetPool(target.origin, upstream.connectTimeoutMs, upstream.tls, upstream.grpc)
    upstream.metrics.setTargetUp(target.hostPort, target.healthy)
  }
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
    keyStore,
    clusterStore,
  )
  // The first table is in service without a commit(); later ones from their commit().
  if (prev === null) metrics.breakersNow = () => advanceBreakers(table)
  return {
    table,
    commit() {
      metrics.breakersNow = () => advanceBreakers(table)
      if (prev === null) return
      keyStore.setMaxKeys(config.limits.maxLimiterKeys)
      const liveLimiters = new Set<Limiter>()
      const liveNames = new Set<string>()
      for (const [id, r] of routes) {
        for (const p of r.parts.limiters) {
          liveLimiters.add(p.value)
          liveNames.add(`${id}\u0000${p.value.name}`)
        }
      }
      for (const [id, r] of prev.routes) {
        for (const p of r.parts.limiters) {
          // A changed limiter under the same name writes the same metric series: those stay.
          if (!liveLimiters.has(p.value)) retireLimiter(p.value, id, metrics, !liveNames.has(`${id}\u0000${p.value.name}`))
        }
      }
      for (const [id, r] of prev.routes) {
        const part = r.breaker?.part
        // A breaker that stays keeps its state, timers it has none (compiled-breaker.ts).
        if (part !== undefined && routes.get(id)?.breaker?.part !== part) retireBreaker(part.value, id, metrics, routes.get(id)?.breaker == null)
      }
      if (prev.clusterStore !== clusterStore) void prev.clusterStore.value?.close().catch(() => undefined)
      const live = new Set<Target>()
      for (const u of upstreams.values()) for (const t of u.pool.targets) live.add(t)
      for (const target of retired) {
        if (live.has(target)) continue
        target.closing = true
        // undici's close() lets requests in flight finish, then closes the sockets.
        void target.dispatcher?.close().catch(() => undefined)
      }
      for (const u of upstreams.values()) u.health.retain(u.pool.targets)
      for (const [name, old] of prev.upstreams) if (upstreams.get(name)?.health !== old.health) old.health.close()
      for (const [id, m] of prev.routeMetrics) if (!routeMetrics.has(id)) m.remove()
      for (const [name, old] of prev.upstreams) {
        const now = upstreams.get(name)
        if (now === undefined) old.metrics.remove(old.pool.targets.map((t) => t.hostPort))
        else for (const t of old.pool.targets) if (!now.pool.targets.includes(t)) old.metrics.removeTarget(t.hostPort)
      }
    },
  }
}

/** Brings every breaker of `table` up to now (an open one past openFor turns half-open): before a read of their state. */
export function advanceBreakers(table: RouteTable): void {
  const now = performance.now()
  for (const r of table.routes.values()) r.breaker?.breaker.advance(now)
}
