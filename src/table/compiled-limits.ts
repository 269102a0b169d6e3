// Config rateLimit -> a route's RateLimitStep (src/policy/ratelimit/ratelimit-step.ts). Each limiter is one
// component with its own reuse key (reuse.ts): the route id, its settings and the worker count. A reload
// that leaves them unchanged keeps the limiter object and so every key's quota; a changed limiter starts
// fresh. Cluster limiters keep their count in the store, under route id + name, whatever the config version.
import { limiterName } from '../config/check.js'
import type { RateLimit, Route } from '../config/schema.js'
import { RequestKey } from '../http/request-key.js'
import { Algorithm, type ClusterLimit, type ClusterStore } from '../policy/ratelimit/cluster-store.js'
import type { KeyStore } from '../policy/ratelimit/key-store.js'
import { LocalLimiter, type DecisionCounters, type LocalAlgorithm } from '../policy/ratelimit/local-limiter.js'
import { ClusterLimiter, OnStoreError, RateLimitStep } from '../policy/ratelimit/ratelimit-step.js'
import { SlidingWindow } from '../policy/ratelimit/sliding-window.js'
import { TokenBucket } from '../policy/ratelimit/token-bucket.js'
import type { Metrics } from '../telemetry/metrics.js'
import { reuse, type Keyed } from './reuse.js'

/** What every route's limiters share: built once per gateway (key store) or per redis: settings (store). */
export interface LimitContext {
  readonly keyStore: KeyStore
  readonly clusterStore: ClusterStore | null
  /** Processes sharing the port (--workers): a local limiter counts 1/workers of rate and burst. */
  readonly workers: number
  readonly metrics: Metrics
}

export type Limiter = LocalLimiter | ClusterLimiter

export interface CompiledLimits {
  readonly step: RateLimitStep | null
  readonly parts: readonly Keyed<Limiter>[]
}

/** The missing-part stand-in of limiter keys: NUL, which no header value, path or query contains. */
const MISSING = '\u0000'

export function compileRateLimits(route: Route, old: { readonly step: RateLimitStep | null; readonly parts: readonly Keyed<Limiter>[] } | undefined, ctx: LimitContext): CompiledLimits {
  const limits = route.rateLimit ?? []
  if (limits.length === 0) return { step: null, parts: [] }
  const oldByKey = new Map((old?.parts ?? []).map((p) => [p.key, p]))
  const parts = limits.map((limit, i) => {
    const name = limiterName(limit, i)
    const settings = { route: route.id, name, limit, workers: limit.scope === 'local' || limit.onStoreError === 'local' ? ctx.workers : 1 }
    return reuse(oldByKey.get(JSON.stringify(settings)), settings, () => buildLimiter(route.id, name, limit, ctx))
  })
  const locals = parts.map((p) => p.value).filter((l): l is LocalLimiter => l instanceof LocalLimiter)
  const clusters = parts.map((p) => p.value).filter((l): l is ClusterLimiter => l instanceof ClusterLimiter)
  const oldStep = old?.step ?? null
  if (oldStep !== null && old !== undefined && old.parts.length === parts.length && old.parts.every((p, i) => p === parts[i]) &&
    (clusters.length === 0 || oldStep.store === ctx.clusterStore)) {
    return { step: oldStep, parts }
  }
  return { step: new RateLimitStep(route.id, locals, clusters, clusters.length > 0 ? ctx.clusterStore : null), parts }
}

/** A limiter of a route that went away: its keys leave the store, its metric series go. */
export function retireLimiter(limiter: Limiter, routeId: string, metrics: Metrics, removeSeries: boolean): void {
  if (limiter instanceof LocalLimiter) limiter.close()
  else limiter.fallback?.close()
  if (removeSeries) for (const decision of ['allowed', 'rejected']) metrics.ratelimitDecisions.remove(routeId, limiter.name, decision)
}

function buildLimiter(routeId: string, name: string, limit: RateLimit, ctx: LimitContext): Limiter {
  const counters: DecisionCounters = {
    allowed: ctx.metrics.ratelimitDecisions.labels(routeId, name, 'allowed'),
    rejected: ctx.metrics.ratelimitDecisions.labels(routeId, name, 'rejected'),
  }
  const key = new RequestKey(limit.key, MISSING)
  const local = (): LocalLimiter => new LocalLimiter(name, localAlgorithm(limit, ctx.workers), key, ctx.keyStore, counters)
  if (limit.scope === 'local') return local()
  const whole = localAlgorithm(limit, 1) // the headers of a cluster limiter show its whole quota
  return new ClusterLimiter(
    name,
    clusterLimit(routeId, name, limit),
    key,
    limit.onStoreError === 'allow' ? OnStoreError.Allow : limit.onStoreError === 'deny' ? OnStoreError.Deny : OnStoreError.Local,
    limit.onStoreError === 'local' ? local() : null,
    counters,
    whole.limitHeader,
    whole.policyHeader,
  )
}

/**
 * With --workers N, each worker's local limiter counts 1/N of rate and burst (README "Rate limiting"), and
 * at least one request per bucket, so a small burst does not become 0.
 */
function localAlgorithm(limit: RateLimit, workers: number): LocalAlgorithm {
  if (limit.algorithm === 'token-bucket') {
    const burst = limit.burst ?? limit.rate
    return new TokenBucket(limit.rate / workers, limit.period, Math.max(1, burst / workers))
  }
  return new SlidingWindow(Math.max(1, limit.limit / workers), limit.window)
}

function clusterLimit(routeId: string, name: string, limit: RateLimit): ClusterLimit {
  // One hash tag over the whole key: a Redis Cluster places each key by its own route, limiter and value.
  const storeKeyPrefix = `tollgate:rl:{${routeId}|${name}|`
  if (limit.algorithm === 'token-bucket') {
    return { storeKeyPrefix, algorithm: Algorithm.TokenBucket, ratePerMs: limit.rate / limit.period, burst: limit.burst ?? limit.rate, limit: 0, windowMs: 0 }
  }
  return { storeKeyPrefix, algorithm: Algorithm.SlidingWindow, ratePerMs: 0, burst: 0, limit: limit.limit, windowMs: limit.window }
}
