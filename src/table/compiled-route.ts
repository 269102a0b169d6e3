// Config route -> CompiledRoute: what a matched request reads (rewrite, body limit, its pipeline steps,
// metrics), each component reused across reloads while its own settings are unchanged (reuse.ts).
import type { Config, Route } from '../config/schema.js'
import type { RequestStep } from '../http/request-step.js'
import type { RouteMetrics } from '../telemetry/metrics.js'
import { compileBreaker, type CompiledBreaker } from './compiled-breaker.js'
import { compileRateLimits, type LimitContext, type Limiter } from './compiled-limits.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import type { RateLimitStep } from '../policy/ratelimit/ratelimit-step.js'
import { reuse, type Keyed } from './reuse.js'
import { compileRewrite, type RewriteFn } from './rewrite.js'

/** How the route's requests are traced (README "Tracing"): worked out at build time, read per request. */
export interface RouteTracing {
  /** route.tracing.sampleRatio, else tracing.sampleRatio: for traces that start here. */
  readonly sampleRatio: number
  /** tracing.parentBased: follow the sampled flag of a valid incoming traceparent. */
  readonly parentBased: boolean
  /** match.path, the span's http.route. */
  readonly template: string
}

export class CompiledRoute {
  constructor(
    readonly id: string,
    readonly upstream: CompiledUpstream,
    readonly rewritePath: RewriteFn,
    readonly maxBodyBytes: number,
    readonly allowEncodedSlash: boolean,
    readonly websocket: boolean,
    /** Run in order after the match, before forwarding (src/proxy/pipeline.ts). */
    readonly steps: readonly RequestStep[],
    readonly metrics: RouteMetrics,
    /** The circuit breaker (null: no circuitBreaker); record.ts tells it each request's outcome. */
    readonly breaker: CompiledBreaker | null,
    readonly parts: {
      readonly rewrite: Keyed<RewriteFn>
      /** The rate-limit step (null: no rateLimit) and its limiters, each with its reuse key. */
      readonly rateLimit: RateLimitStep | null
      readonly limiters: readonly Keyed<Limiter>[]
    },
    readonly tracing: RouteTracing,
    /** route.forwardClientCert, lower case (null: none): the header the client certificate's subject goes in. */
    readonly forwardClientCert: string | null = null,
  ) {}
}

export function compileRoute(
  route: Route, config: Config, upstream: CompiledUpstream, upstreams: ReadonlyMap<string, CompiledUpstream>,
  old: CompiledRoute | undefined, metrics: RouteMetrics, limitContext: LimitContext,
): CompiledRoute {
  const rewrite = reuse(old?.parts.rewrite, route.rewrite ?? null, () => compileRewrite(route))
  const limits = compileRateLimits(route, old === undefined ? undefined : { step: old.parts.rateLimit, parts: old.parts.limiters }, limitContext)
  const maxBodyBytes = route.maxBodySize ?? config.limits.maxBodySize
  const allowEncodedSlash = route.allowEncodedSlash ?? config.paths.allowEncodedSlash
  const breaker = compileBreaker(route, upstream, upstreams, old?.breaker ?? null, limitContext.metrics, performance.now())
  // The order of a route's steps (src/proxy/pipeline.ts): its limiters, then its breaker's admission, which
  // runs the upstream's bulkhead itself (or the fallback upstream's), else the upstream's bulkhead.
  const admission: RequestStep = breaker === null ? upstream.bulkhead : breaker.step
  const steps: RequestStep[] = limits.step === null ? [admission] : [limits.step, admission]
  const tracing = routeTracing(route, config, old?.tracing)
  const forwardClientCert = route.forwardClientCert?.toLowerCase() ?? null
  if (old !== undefined && old.tracing === tracing && old.forwardClientCert === forwardClientCert && old.upstream === upstream && old.parts.rewrite === rewrite && old.maxBodyBytes === maxBodyBytes && old.breaker === breaker &&
    old.allowEncodedSlash === allowEncodedSlash && old.websocket === route.websocket && old.metrics === metrics &&
    sameSteps(old.steps, steps) && sameSteps(old.parts.limiters, limits.parts)) {
    return old
  }
  return new CompiledRoute(route.id, upstream, rewrite.value, maxBodyBytes, allowEncodedSlash, route.websocket, steps, metrics, breaker,
    { rewrite, rateLimit: limits.step, limiters: limits.parts }, tracing, forwardClientCert)
}

/** The route's tracing settings; `old` when they did not change. */
function routeTracing(route: Route, config: Config, old: RouteTracing | undefined): RouteTracing {
  const sampleRatio = route.tracing?.sampleRatio ?? config.tracing.sampleRatio
  const parentBased = config.tracing.parentBased
  const template = route.match.path
  if (old !== undefined && old.sampleRatio === sampleRatio && old.parentBased === parentBased && old.template === template) return old
  return Object.freeze({ sampleRatio, parentBased, template })
}

function sameSteps<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i])
}
