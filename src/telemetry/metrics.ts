// The prom-client metrics, created once per process. Reloads only add and remove label sets: registering a
// metric twice throws (prometheus/client_js#196), so nothing here is ever re-created.
//
// Only families that some code writes are registered: an empty family on /metrics reads as "nothing
// happened" when the feature does not exist yet. README.md "Admin endpoints and metrics" lists the names
// still to come (rate limits, circuit breakers, ejections...): each feature registers its families here
// together with the code that writes them. test/telemetry/metrics-families.test.ts fails on a family that nothing writes.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { FastCounter, FastHistogram, type CounterCell, type HistogramCell } from './fast-metrics.js'

const STANDARD_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const

/**
 * The index of `method` in STANDARD_METHODS, its length for any other. A switch, not indexOf(): in one
 * `perf record` of the limits config TurboFan had left indexOf as a call to its builtin, 0.15 us a request;
 * in the other runs it was inlined and near 0.
 */
function methodIndex(method: string): number {
  switch (method) {
    case 'GET': return 0
    case 'HEAD': return 1
    case 'POST': return 2
    case 'PUT': return 3
    case 'DELETE': return 4
    case 'CONNECT': return 5
    case 'OPTIONS': return 6
    case 'TRACE': return 7
    case 'PATCH': return 8
    default: return STANDARD_METHODS.length
  }
}

/** `method` is one of the standard methods or OTHER, so cardinality stays bounded (README.md metrics table). */
export function methodLabel(method: string): string {
  switch (method) {
    case 'GET': case 'HEAD': case 'POST': case 'PUT': case 'DELETE':
    case 'CONNECT': case 'OPTIONS': case 'TRACE': case 'PATCH':
      return method
    default:
      return 'OTHER'
  }
}

/** tollgate_retries_skipped_total's reasons: a retry that retry.on and the attempts left allowed, not made. */
export const RetrySkip = { Budget: 0, NotIdempotent: 1, BodySent: 2 } as const
export type RetrySkip = (typeof RetrySkip)[keyof typeof RetrySkip]
const RETRY_SKIP_NAMES = ['budget', 'not-idempotent', 'body-sent'] as const

/**
 * prom-client's default metrics that break `promtool check metrics` (SPEC.md §8: /metrics passes it): gauges
 * named `_total` ("non-counter metrics should not have "_total" suffix", exit 3). Each is the sum of a family
 * that stays, by type: `sum(nodejs_active_handles)` is the old `nodejs_active_handles_total`, and so on.
 */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class Metrics {
  readonly registry: Registry
  readonly requests: FastCounter
  readonly requestDuration: FastHistogram
  readonly upstreamRequests: FastCounter
  readonly upstreamDuration: FastHistogram
  readonly inflight: Gauge
  readonly retries: FastCounter
  /** Open upgraded WebSocket connections by route; read from the proxy at scrape time (websocketsNow). */
  readonly websocketConnections: Gauge<'route'>
  /** Read at scrape time: open WebSocket connections by route id, 0 for websocket routes with none. */
  websocketsNow: () => ReadonlyMap<string, number> = () => new Map()
  /** Read at scrape time: the proxy keeps the in-flight count itself (no metric call per request). */
  inflightNow: () => number = () => 0
  readonly targetUp: Gauge<'upstream' | 'target'>
  /** Written where the decision is made: passive in each serving process, active where probes run (the primary with --workers). */
  readonly ejections: Counter<'upstream' | 'target' | 'reason'>
  readonly configReloads: Counter<'source' | 'result'>
  readonly lastReloadSuccess: Gauge<'source'>
  readonly etcdUp: Gauge
  readonly #controlRegisters: Registry[]
  readonly #dataRegisters: Registry[]
  readonly ratelimitDecisions: FastCounter
  readonly ratelimitStoreErrors: Counter
  readonly ratelimitKeys: Gauge
  /** Read at scrape time: keys held by the local limiters (policy/ratelimit/key-store.ts). */
  limiterKeysNow: () => number = () => 0
  readonly retriesSkipped: FastCounter
  readonly authFailures: FastCounter
  readonly consumerRequests: FastCounter
  readonly mirrorRequests: FastCounter
  readonly pluginErrors: FastCounter
  /** Spans the export queue gave up on: full, or their export failed (src/telemetry/otel-tracer.ts). */
  readonly traceSpansDropped: Counter
  /**
   * Set on each transition (src/table/compiled-breaker.ts); breakersNow() first brings every breaker up to
   * now. With --workers, each worker has its own breakers: the primary shows the worst state (max).
   */
  readonly breakerState: Gauge<'route'>
  readonly breakerTransitions: Counter<'route' | 'to'>
  /** Called at scrape time before tollgate_circuit_breaker_state is read: an open breaker past openFor turns half-open. */
  breakersNow: () => void = () => undefined

  /**
   * `data`: the request-path families; `control`: config and etcd families. A single process has both;
   * with --workers, workers register `data` and the primary `control`, so the primary's /metrics can
   * concatenate its own registry with the workers' aggregate without a family appearing twice.
   */
  constructor(options: { defaultMetrics?: boolean; data?: boolean; control?: boolean } = {}) {
    this.registry = new Registry()
    const { defaultMetrics = true, data = true, control = true } = options
    if (defaultMetrics) {
      collectDefaultMetrics({ register: this.registry })
      for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name)
    }
    const registers = data ? [this.registry] : []
    const controlRegisters = control ? [this.registry] : []
    this.requests = new FastCounter('tollgate_requests_total', 'Requests handled, by route id ("" when unmatched), method and status code.', ['route', 'method', 'code'], registers)
    this.requestDuration = new FastHistogram('tollgate_request_duration_seconds', 'Time from request start to the end of the response, by route.', ['route'], DURATION_BUCKETS, registers)
    this.upstreamRequests = new FastCounter('tollgate_upstream_requests_total', 'Requests sent to upstream targets, by upstream, target (host:port) and status code (0 = no response).', ['upstream', 'target', 'code'], registers)
    this.upstreamDuration = new FastHistogram('tollgate_upstream_duration_seconds', 'Time from sending to an upstream target until its response headers arrived.', ['upstream'], DURATION_BUCKETS, registers)
    const self = this
    this.inflight = new Gauge({ name: 'tollgate_inflight_requests', help: 'Requests being handled now.', registers, collect() { this.set(self.inflightNow()) } })
    // Registered by exposeWebsocketConnections() once a config has a websocket route: without one it would be an empty family.
    this.websocketConnections = new Gauge({
      name: 'tollgate_websocket_connections', help: 'Open upgraded WebSocket connections, by route.', labelNames: ['route'], registers: [],
      collect() {
        // Set afresh at each scrape: a route that went (by a reload) shows while it still has connections.
        this.reset()
        for (const [route, n] of self.websocketsNow()) this.labels(route).set(n)
      },
    })
    this.retries = new FastCounter('tollgate_retries_total', 'Retried upstream attempts, by route.', ['route'], registers)
    this.ratelimitDecisions = new FastCounter('tollgate_ratelimit_decisions_total', 'Rate-limit decisions, by route, limiter and decision (allowed, rejected).', ['route', 'limiter', 'decision'], registers)
    this.ratelimitStoreErrors = new Counter({ name: 'tollgate_ratelimit_store_errors_total', help: 'Cluster-scope limiter decisions the store (Redis) failed to make in time; onStoreError applied.', registers })
    this.ratelimitKeys = new Gauge({ name: 'tollgate_ratelimit_keys', help: 'Keys held in local limiter memory (at most limits.maxLimiterKeys).', registers, collect() { this.set(self.limiterKeysNow()) } })
    this.authFailures = new FastCounter('tollgate_auth_failures_total', 'Requests refused by a route\'s auth or access list, by route and reason (missing, invalid, expired, forbidden).', ['route', 'reason'], registers)
    // Bounded by config: one cell per consumer a route names (key/basic consumers, or auth.allow for jwt).
    this.consumerRequests = new FastCounter('tollgate_consumer_requests_total', 'Requests that passed a route\'s auth (and its auth.allow), by route and consumer. Only consumers the config names: key and basic consumers, JWT subjects only with auth.allow.', ['route', 'consumer'], registers)
    this.mirrorRequests = new FastCounter('tollgate_mirror_requests_total', 'Mirror copies of requests, by route and result (sent: the mirror answered, dropped: not sent, failed: no answer).', ['route', 'result'], registers)
    this.pluginErrors = new FastCounter('tollgate_plugin_errors_total', 'Plugin hook calls that threw or ran past their timeout, by route, plugin (its file name), hook (onRequest, onResponse, onLog) and reason (threw, timeout).', ['route', 'plugin', 'hook', 'reason'], registers)
    this.retriesSkipped = new FastCounter('tollgate_retries_skipped_total', 'Retries that retry.on allowed but were not made, by route and reason (budget, not-idempotent, body-sent).', ['route', 'reason'], registers)
    // Registered by exposeTraceSpansDropped() when a span exporter starts: without one nothing could drop.
    this.traceSpansDropped = new Counter({ name: 'tollgate_trace_spans_dropped_total', help: 'Spans not exported: the export queue was full, or their export failed.', registers: [] })
    this.#dataRegisters = registers
    this.breakerState = new Gauge({ name: 'tollgate_circuit_breaker_state', help: 'Circuit breaker state by route: 0 closed, 1 half-open, 2 open.', labelNames: ['route'], registers, aggregator: 'max', collect() { self.breakersNow() } })
    this.breakerTransitions = new Counter({ name: 'tollgate_circuit_breaker_transitions_total', help: 'Circuit breaker state changes, by route and the state entered (closed, half-open, open).', labelNames: ['route', 'to'], registers })
    // With --workers the primary's /metrics shows the lowest value of the workers: 0 when any worker ejected it.
    this.targetUp = new Gauge({ name: 'tollgate_upstream_target_up', help: '1 when the target is eligible for traffic, 0 when unhealthy or ejected.', labelNames: ['upstream', 'target'], registers, aggregator: 'min' })
    this.ejections = new Counter({ name: 'tollgate_upstream_ejections_total', help: 'Targets taken out of rotation, by upstream, target and reason (active: failed probes, passive: failed requests).', labelNames: ['upstream', 'target', 'reason'], registers: data || control ? [this.registry] : [] })
    this.configReloads = new Counter({ name: 'tollgate_config_reloads_total', help: 'Config loads, by source (file, etcd) and result (applied, rejected).', labelNames: ['source', 'result'], registers: controlRegisters })
    this.lastReloadSuccess = new Gauge({ name: 'tollgate_config_last_reload_success_timestamp_seconds', help: 'Unix time of the last applied config, by source.', labelNames: ['source'], registers: controlRegisters })
    // Registered by exposeEtcdUp() when the config has an etcd: section: a 0 without etcd would read as "etcd down".
    this.etcdUp = new Gauge({ name: 'tollgate_etcd_up', help: '1 while the etcd watch is connected, 0 otherwise.', registers: [] })
    this.#controlRegisters = controlRegisters
    for (const source of ['file', 'etcd']) {
      for (const result of ['applied', 'rejected']) this.configReloads.labels(source, result).inc(0)
    }
  }

  /** A span exporter started (tracing.exporter is not none): tollgate_trace_spans_dropped_total goes on /metrics (once). */
  exposeTraceSpansDropped(): void {
    for (const r of this.#dataRegisters) if (r.getSingleMetric('tollgate_trace_spans_dropped_total') === undefined) r.registerMetric(this.traceSpansDropped)
  }

  /** A config has a websocket: true route: tollgate_websocket_connections goes on /metrics (once, and stays). */
  exposeWebsocketConnections(): void {
    for (const r of this.#dataRegisters) if (r.getSingleMetric('tollgate_websocket_connections') === undefined) r.registerMetric(this.websocketConnections)
  }

  /** The config has an etcd: section: tollgate_etcd_up goes on /metrics (once). */
  exposeEtcdUp(): void {
    for (const r of this.#controlRegisters) if (r.getSingleMetric('tollgate_etcd_up') === undefined) r.registerMetric(this.etcdUp)
  }

  /** Labels of one route, bound at build time. Counter children are made lazily per (method, code). */
  forRoute(routeId: string): RouteMetrics {
    return new RouteMetrics(this, routeId)
  }

  forUpstream(upstream: string): UpstreamMetrics {
    return new UpstreamMetrics(this, upstream)
  }
}

type CounterChild = CounterCell
type HistogramChild = HistogramCell

export class RouteMetrics {
  readonly #metrics: Metrics
  readonly id: string
  readonly duration: HistogramChild
  readonly retries: CounterChild
  // (method index * 1000 + status) -> counter child; bounded by methods x statuses seen.
  readonly #requestChildren = new Map<number, CounterChild>()
  /** tollgate_retries_skipped_total by RetrySkip, bound on first use. */
  readonly #skipped: Array<CounterChild | null> = [null, null, null]

  constructor(metrics: Metrics, id: string) {
    this.#metrics = metrics
    this.id = id
    this.duration = metrics.requestDuration.labels(id)
    this.retries = metrics.retries.labels(id)
  }

  #removed = false

  /** Hot path: one map lookup after the first request of a (method, status) pair. */
  countRequest(method: string, status: number): void {
    // A request that started before its route was removed must not bring the route's series back.
    if (this.#removed) return
    const key = methodIndex(method) * 1000 + status
    let child = this.#requestChildren.get(key)
    if (child === undefined) {
      child = this.#metrics.requests.labels(this.id, methodLabel(method), String(status))
      this.#requestChildren.set(key, child)
    }
    child.inc()
  }

  /**
   * Requests counted so far and those answered 5xx, summed from this route's tollgate_requests_total cells
   * (one per method and status seen: a handful). For /status, which the status page differences into rates.
   */
  totals(): { requests: number; errors: number } {
    let requests = 0
    let errors = 0
    for (const [key, child] of this.#requestChildren) {
      requests += child.value
      if (key % 1000 >= 500) errors += child.value
    }
    return { requests, errors }
  }

  /** A retry not made, and why (src/proxy/forward.ts). */
  skipRetry(reason: RetrySkip): void {
    if (this.#removed) return
    let child = this.#skipped[reason]!
    if (child === null) child = this.#skipped[reason] = this.#metrics.retriesSkipped.labels(this.id, RETRY_SKIP_NAMES[reason])
    child.inc()
  }

  /**
   * tollgate_auth_failures_total{route, reason}, bound when the route's auth or access step is built (reasons:
   * missing, invalid, expired, forbidden). remove() drops the series it bound.
   */
  authFailures(reason: 'missing' | 'invalid' | 'expired' | 'forbidden'): CounterChild {
    this.#authReasons.add(reason)
    return this.#metrics.authFailures.labels(this.id, reason)
  }

  readonly #authReasons = new Set<string>()

  /**
   * tollgate_consumer_requests_total{route, consumer}: one cell per name, bound when the route's auth step is
   * built (the hot path is one Map.get and an inc). A name bound by an earlier build and not named now (a
   * consumer removed by a reload) loses its series; remove() drops the rest.
   */
  consumerRequests(names: Iterable<string>): ReadonlyMap<string, CounterChild> {
    const cells = new Map<string, CounterChild>()
    for (const name of names) cells.set(name, this.#metrics.consumerRequests.labels(this.id, name))
    for (const name of this.#consumers) if (!cells.has(name)) this.#metrics.consumerRequests.remove(this.id, name)
    this.#consumers = new Set(cells.keys())
    return cells
  }

  #consumers: ReadonlySet<string> = new Set()

  /** tollgate_mirror_requests_total{route, result}, bound when the route's mirror is built; remove() drops them. */
  mirrorResults(): { readonly sent: CounterChild; readonly dropped: CounterChild; readonly failed: CounterChild } {
    this.#hasMirror = true
    const m = this.#metrics.mirrorRequests
    return Object.freeze({ sent: m.labels(this.id, 'sent'), dropped: m.labels(this.id, 'dropped'), failed: m.labels(this.id, 'failed') })
  }

  #hasMirror = false
  /**
   * tollgate_plugin_errors_total{route, plugin, hook, reason}, bound when the route's plugins are built
   * (src/policy/plugins/plugin-chain.ts). remove() drops the series it bound.
   */
  pluginErrors(plugin: string, hook: 'onRequest' | 'onResponse' | 'onLog', reason: 'threw' | 'timeout'): CounterChild {
    this.#pluginLabels.add(`${plugin}\0${hook}\0${reason}`)
    return this.#metrics.pluginErrors.labels(this.id, plugin, hook, reason)
  }

  readonly #pluginLabels = new Set<string>()

  /** The route is gone: remove its label sets so /metrics does not keep series of deleted routes. */
  remove(): void {
    this.#removed = true
    const m = this.#metrics
    for (const key of this.#requestChildren.keys()) {
      const idx = Math.floor(key / 1000)
      m.requests.remove(this.id, STANDARD_METHODS[idx] ?? 'OTHER', String(key % 1000))
    }
    this.#requestChildren.clear()
    m.requestDuration.remove(this.id)
    m.retries.remove(this.id)
    for (const reason of this.#authReasons) m.authFailures.remove(this.id, reason)
    this.#authReasons.clear()
    for (const name of this.#consumers) m.consumerRequests.remove(this.id, name)
    this.#consumers = new Set()
    if (this.#hasMirror) for (const result of ['sent', 'dropped', 'failed']) m.mirrorRequests.remove(this.id, result)
    for (const labels of this.#pluginLabels) {
      const [plugin, hook, reason] = labels.split('\0') as [string, string, string]
      m.pluginErrors.remove(this.id, plugin, hook, reason)
    }
    this.#pluginLabels.clear()
    for (let i = 0; i < this.#skipped.length; i++) {
      if (this.#skipped[i] !== null) m.retriesSkipped.remove(this.id, RETRY_SKIP_NAMES[i]!)
      this.#skipped[i] = null
    }
  }
}

export class UpstreamMetrics {
  readonly #metrics: Metrics
  readonly name: string
  readonly duration: HistogramChild
  // target host:port -> status -> cell: two map lookups per response, no key string built.
  readonly #children = new Map<string, Map<number, CounterChild>>()

  constructor(metrics: Metrics, name: string) {
    this.#metrics = metrics
    this.name = name
    this.duration = metrics.upstreamDuration.labels(name)
  }

  // Targets (or the whole upstream) removed by a reload: late responses must not bring their series back.
  readonly #removedTargets = new Set<string>()
  #removed = false

  /** Hot path. */
  countResponse(target: string, status: number): void {
    let byStatus = this.#children.get(target)
    if (byStatus === undefined) {
      if (this.#removed || this.#removedTargets.has(target)) return
      byStatus = new Map()
      this.#children.set(target, byStatus)
    }
    let child = byStatus.get(status)
    if (child === undefined) {
      child = this.#metrics.upstreamRequests.labels(this.name, target, String(status))
      byStatus.set(status, child)
    }
    child.inc()
  }

  setTargetUp(target: string, up: boolean): void {
    this.#removedTargets.delete(target)
    this.#metrics.targetUp.labels(this.name, target).set(up ? 1 : 0)
  }

  /** A target left rotation: `active` (probes, counted where they run) or `passive` (this process's traffic). */
  countEjection(target: string, reason: 'active' | 'passive'): void {
    if (this.#removed || this.#removedTargets.has(target)) return
    this.#metrics.ejections.labels(this.name, target, reason).inc()
  }

  removeTarget(target: string): void {
    this.#removedTargets.add(target)
    for (const reason of ['active', 'passive']) this.#metrics.ejections.remove(this.name, target, reason)
    const byStatus = this.#children.get(target)
    if (byStatus !== undefined) {
      for (const status of byStatus.keys()) this.#metrics.upstreamRequests.remove(this.name, target, String(status))
      this.#children.delete(target)
    }
    this.#metrics.targetUp.remove(this.name, target)
  }

  remove(targets: readonly string[]): void {
    this.#removed = true
    for (const t of targets) this.removeTarget(t)
    this.#metrics.upstreamDuration.remove(this.name)
  }
}
