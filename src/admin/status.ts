// The /status JSON (README "Admin endpoints and metrics"): config source and revision, applied-at time, rejected items with reasons,
// routes with their request and 5xx counts, upstreams with each target's state, the TLS certificates in force. Built from the config in force plus, where this process
// serves traffic, the live route table; the cluster primary has no table (its workers hold the pools), so
// there what only a live pool knows (health, requests in flight, panic) is null and the rest comes from
// the config.
import { performance } from 'node:perf_hooks'
import type { Config } from '../config/schema.js'
import type { EtcdStatus } from '../etcd/source.js'
import { formatIssue, type ConfigIssue } from '../errors.js'
import type { RouteTable } from '../table/route-table.js'
import type { ActiveReport } from '../upstream/health/active.js'
import { describeHealth } from '../upstream/health/upstream-health.js'
import { Target } from '../upstream/target.js'
import { STATE_NAMES } from '../policy/breaker/breaker.js'
import { JwksKeys, type JwksStatus } from '../policy/auth/jwks-keys.js'

/** What the file source knows (src/lifecycle/file-source.ts has these fields). */
export interface FileFacts {
  readonly path: string
  readonly revision: string
  readonly appliedAt: Date | null
  readonly rejected: readonly ConfigIssue[]
  readonly rejectedAt: Date | null
  readonly current: { readonly warnings: readonly ConfigIssue[]; readonly notEnforced: readonly string[] } | null
}

export interface StatusInput {
  readonly file: FileFacts
  readonly config: Config
  /** Config version: the table's, or the primary's count of configs applied. */
  readonly version: number
  /** The table serving requests in this process; null in the cluster primary. */
  readonly table: RouteTable | null
  /** Requests in flight in this process; null in the cluster primary. */
  readonly inflight: number | null
  readonly draining: boolean
  readonly etcd: EtcdStatus | null
  /** The cluster primary's probe results (it probes for its workers); absent elsewhere. */
  readonly activeReports?: readonly ActiveReport[]
  /** The cluster primary's sum of its workers' route counts (routeTotalsOf); absent elsewhere. */
  readonly routeTotals?: RouteTotalsById | null
}

/** Requests and 5xx answers of one route (src/telemetry/metrics.ts RouteMetrics.totals()). */
export interface RouteTotals {
  readonly requests: number
  readonly errors: number
}
export type RouteTotalsById = Readonly<Record<string, RouteTotals>>

/** Sums several processes' route counts (the cluster primary: each worker's, and those of workers gone). */
export function sumRouteTotals(all: readonly RouteTotalsById[]): Record<string, RouteTotals> {
  const sum: Record<string, { requests: number; errors: number }> = {}
  for (const one of all) {
    for (const [id, t] of Object.entries(one)) {
      const s = sum[id] ??= { requests: 0, errors: 0 }
      s.requests += t.requests
      s.errors += t.errors
    }
  }
  return sum
}

export function renderStatus(input: StatusInput): Record<string, unknown> {
  const { file, config, table, etcd } = input
  const registered = new Set<string>()
  for (const r of etcd?.registrations ?? []) if (r.attached) registered.add(`${r.upstream} ${new URL(r.url).origin}`)
  return {
    config: {
      source: etcd === null ? 'file' : 'file+etcd',
      path: file.path,
      revision: file.revision,
      version: input.version,
      appliedAt: file.appliedAt?.toISOString() ?? null,
      rejected: [
        ...file.rejected.map((i) => ({ where: i.where, path: i.path, reason: i.message })),
        ...(etcd?.rejected ?? []).map((r) => ({
          where: `etcd ${r.key} (rev ${r.revision})`, path: '', reason: r.reason, key: r.key, revision: r.revision, keptRevision: r.keptRevision,
        })),
      ],
      rejectedAt: file.rejectedAt?.toISOString() ?? null,
      warnings: (file.current?.warnings ?? []).map(formatIssue),
      notEnforced: file.current?.notEnforced ?? [],
      etcd: etcd === null ? null : { ...etcd, rejected: undefined },
    },
    inflight: input.inflight,
    draining: input.draining,
    routes: routes(config, table, input.routeTotals ?? null),
    upstreams: table === null ? upstreamsOfConfig(config, registered, input.activeReports ?? []) : upstreamsOfTable(table, registered),
    breakers: breakers(config, table),
    limiterStore: limiterStore(config, table),
    tls: tlsStatus(config),
  }
}

/** The certificates in force (README "TLS"): files, names and expiry, never the PEM. null: plaintext listener. */
function tlsStatus(config: Config): Record<string, unknown> | null {
  const tls = config.tls
  if (tls === undefined) return null
  return {
    minVersion: tls.minVersion,
    clientAuth: tls.clientAuth === undefined ? null : { ca: tls.clientAuth.ca, required: tls.clientAuth.required },
    certificates: tls.certificates.map((c) => ({ cert: c.cert, key: c.key, subject: c.subject, names: c.names, validTo: c.validTo })),
  }
}

/**
 * The routes, each with its requests and 5xx answers counted in this process since the route was built (kept
 * across reloads that keep the route): the status page turns two answers into rates. The cluster primary
 * counts nothing itself: it passes the sum of its workers' counts, or null when it has none.
 */
function routes(config: Config, table: RouteTable | null, summed: RouteTotalsById | null): unknown[] {
  return config.routes.map((r) => {
    const totals = table !== null ? table.routeMetrics.get(r.id)?.totals() ?? null
      : summed === null ? null : summed[r.id] ?? { requests: 0, errors: 0 }
    const jwks = r.auth?.type === 'jwt' ? r.auth.jwt?.jwks : undefined
    return {
      id: r.id, match: r.match, upstream: r.upstream, priority: r.priority,
      requests: totals === null ? null : totals.requests, errors: totals === null ? null : totals.errors,
      ...(jwks === undefined ? {} : { jwks: jwksStatus(jwks) }),
    }
  })
}

/**
 * A JWT route's key set (README "Authentication"): keys in use, last good fetch, last error. The set is per
 * process; the cluster primary fetches none (its workers do), so there only the URL is known.
 */
function jwksStatus(url: string): JwksStatus | { readonly url: string; readonly keys: null; readonly kids: null; readonly lastFetchAt: null; readonly lastError: null; readonly lastErrorAt: null } {
  return JwksKeys.peek(url)?.status() ?? { url, keys: null, kids: null, lastFetchAt: null, lastError: null, lastErrorAt: null }
}

/**
 * The circuit breakers by route id: state, calls and failures in the rolling window, the error rate (percent)
 * and, when open, when it will next let a trial through. The cluster primary has no breakers (its workers
 * each hold their own): there the state is null.
 */
function breakers(config: Config, table: RouteTable | null): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const nowMs = performance.now()
  const wallMs = Date.now()
  for (const r of config.routes) {
    if (r.circuitBreaker === undefined) continue
    const compiled = table?.routes.get(r.id)?.breaker ?? null
    if (compiled === null) {
      out[r.id] = { state: null, requests: null, failures: null, errorRate: null, nextTryAt: null }
      continue
    }
    const s = compiled.breaker.snapshot(nowMs)
    out[r.id] = {
      state: STATE_NAMES[s.state],
      requests: s.requests,
      failures: s.failures,
      errorRate: s.errorRate,
      nextTryAt: s.retryInMs === null ? null : new Date(wallMs + s.retryInMs).toISOString(),
    }
  }
  return out
}

/**
 * The rate-limit stores: the Redis store of cluster-scope limits (state, errors, last error) and the local
 * key store. In the cluster primary the workers hold both, so only what the config says is shown.
 */
function limiterStore(config: Config, table: RouteTable | null): Record<string, unknown> {
  const redis = config.redis
  const kind = redis === undefined ? 'none' : redis.cluster !== undefined ? 'redis-cluster' : 'redis'
  const local = table === null ? null : { keys: table.keyStore.size, maxKeys: table.keyStore.maxKeys }
  if (table === null) return { kind, state: null, errors: null, lastError: null, lastErrorAt: null, local }
  const store = table.clusterStore.value
  if (store === null) return { kind, state: 'none', errors: 0, lastError: null, lastErrorAt: null, local }
  return { ...store.status(), local }
}

function upstreamsOfTable(table: RouteTable, registered: ReadonlySet<string>): unknown[] {
  return [...table.upstreams.values()].map((u) => ({
    name: u.name,
    balancer: u.pool.balancerKind,
    inflight: u.pool.inflight,
    maxConcurrent: u.pool.maxConcurrent,
    panic: u.pool.isPanicking,
    onAllUnhealthy: u.pool.onAllUnhealthy,
    ejectionsRefused: u.passive?.refused ?? null,
    targets: u.pool.targets.map((t) => ({
      url: t.url, weight: t.weight, healthy: t.healthy, ejected: (t.health?.ejectedUntilMs ?? 0) !== 0,
      registered: registered.has(`${u.name} ${t.origin}`), inflight: t.inflight, health: describeHealth(t.health, u.passive !== null),
    })),
  }))
}

function upstreamsOfConfig(config: Config, registered: ReadonlySet<string>, reports: readonly ActiveReport[]): unknown[] {
  const reportOf = new Map<string, ActiveReport>()
  for (const r of reports) reportOf.set(`${r.upstream} ${r.url}`, r)
  return Object.entries(config.upstreams).map(([name, spec]) => ({
    name,
    balancer: spec.balancer,
    inflight: null,
    maxConcurrent: spec.maxConcurrent ?? null,
    panic: null,
    onAllUnhealthy: spec.onAllUnhealthy,
    ejectionsRefused: null,
    targets: spec.targets.map((t) => {
      // A Target is plain data (no connection): it normalises the URL the way the workers' tables do.
      const target = new Target(t.url, t.weight)
      // The primary probes for its workers; passive ejection is each worker's own (README "Health checks").
      const report = reportOf.get(`${name} ${target.url}`)
      const health = spec.healthCheck?.active === undefined ? null : report ?? null
      return {
        url: target.url, weight: target.weight, healthy: null, ejected: null, registered: registered.has(`${name} ${target.origin}`), inflight: null,
        health: {
          state: health === null ? null : health.state,
          reason: health === null ? 'no active checks; passive ejection is per worker' : 'active probe state from the primary; passive ejection is per worker',
          active: health === null ? null : { ...health, upstream: undefined, url: undefined, lastProbeAt: health.lastProbeAt === null ? null : new Date(health.lastProbeAt).toISOString() },
          passive: null,
        },
      }
    }),
  }))
}
