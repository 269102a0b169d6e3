// Config route -> CompiledRoute: what a matched request reads (rewrite, body limit, its pipeline steps,
// metrics), each component reused across reloads while its own settings are unchanged (reuse.ts).
import type { Config, Route } from '../config/schema.js'
import type { RequestStep } from '../http/request-step.js'
import type { RouteMetrics } from '../telemetry/metrics.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import { reuse, type Keyed } from './reuse.js'
import { compileRewrite, type RewriteFn } from './rewrite.js'

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
    readonly parts: {
      readonly rewrite: Keyed<RewriteFn>
    },
  ) {}
}

export function compileRoute(route: Route, config: Config, upstream: CompiledUpstream, old: CompiledRoute | undefined, metrics: RouteMetrics): CompiledRoute {
  const rewrite = reuse(old?.parts.rewrite, route.rewrite ?? null, () => compileRewrite(route))
  const maxBodyBytes = route.maxBodySize ?? config.limits.maxBodySize
  const allowEncodedSlash = route.allowEncodedSlash ?? config.paths.allowEncodedSlash
  // The order of a route's steps (src/proxy/pipeline.ts): its limiters, its breaker's admission,
  // then the upstream's bulkhead. Limiters and breakers join here as they are built.
  const steps: RequestStep[] = [upstream.bulkhead]
  if (old !== undefined && old.upstream === upstream && old.parts.rewrite === rewrite && old.maxBodyBytes === maxBodyBytes &&
    old.allowEncodedSlash === allowEncodedSlash && old.websocket === route.websocket && old.metrics === metrics &&
    sameSteps(old.steps, steps)) {
    return old
  }
  return new CompiledRoute(route.id, upstream, rewrite.value, maxBodyBytes, allowEncodedSlash, route.websocket, steps, metrics, { rewrite })
}

function sameSteps(a: readonly RequestStep[], b: readonly RequestStep[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i])
}
