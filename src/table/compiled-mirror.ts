// Config mirror -> a route's CompiledMirror (README "Mirroring"): the mirror upstream, the share copied, the
// body limit, the bound on copies in flight and the tollgate_mirror_requests_total children of the route.
// src/proxy/mirror.ts sends the copies. Rebuilt when its settings, its upstream or the route's metrics change;
// copies in flight finish on the object that started them and release into the same in-flight count.
import type { Route } from '../config/schema.js'
import type { RouteMetrics } from '../telemetry/metrics.js'
import type { CounterCell } from '../telemetry/fast-metrics.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import { settingsKey } from './reuse.js'

/** Copies of a route started (body being buffered, or sent) and not finished, shared by every version of its mirror. */
export interface MirrorCount {
  value: number
}

export class CompiledMirror {
  constructor(
    /** At most maxConcurrent; a reload that changes the mirror hands the count on, so the bound holds across it. */
    readonly inflight: MirrorCount,
    readonly upstream: CompiledUpstream,
    /** percent / 100: a request is copied when Math.random() < ratio. */
    readonly ratio: number,
    readonly maxBodyBytes: number,
    readonly maxConcurrent: number,
    /** headers: 'x-tollgate-mirror: 1' is added to every copy, so the mirror can tell a copy from a real request. */
    readonly sent: CounterCell,
    readonly dropped: CounterCell,
    readonly failed: CounterCell,
    readonly key: string,
    readonly metrics: RouteMetrics,
  ) {}
}

export function compileMirror(
  route: Route, upstreams: ReadonlyMap<string, CompiledUpstream>, metrics: RouteMetrics, old: CompiledMirror | null,
): CompiledMirror | null {
  const spec = route.mirror
  if (spec === undefined) return null
  const upstream = upstreams.get(spec.upstream)
  if (upstream === undefined) throw new Error(`route ${route.id}: mirror upstream ${spec.upstream} is not defined (load.ts should have rejected this)`)
  const key = settingsKey(spec)
  if (old !== null && old.key === key && old.upstream === upstream && old.metrics === metrics) return old
  const results = metrics.mirrorResults()
  return new CompiledMirror(old?.inflight ?? { value: 0 }, upstream, spec.percent / 100, spec.maxBodySize, spec.maxConcurrent, results.sent, results.dropped, results.failed, key, metrics)
}
