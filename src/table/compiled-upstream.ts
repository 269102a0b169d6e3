// Config upstream -> CompiledUpstream: its pool of targets (with their undici connection pools), bulkhead,
// retry policy, hash key, timeouts, metrics and health, each reused across reloads while its own settings
// are unchanged (reuse.ts). The UpstreamHealth (target health state) and the metrics live as long as the
// upstream's name.
import type { Upstream } from '../config/schema.js'
import { RequestKey } from '../http/request-key.js'
import type { Metrics, UpstreamMetrics } from '../telemetry/metrics.js'
import { Bulkhead } from '../upstream/bulkhead.js'
import type { HealthFeed } from '../upstream/health/health-feed.js'
import { PassiveHealth } from '../upstream/health/passive.js'
import { UpstreamHealth } from '../upstream/health/upstream-health.js'
import { RetryPolicy } from '../upstream/retry-policy.js'
import type { Target } from '../upstream/target.js'
import { UpstreamPool } from '../upstream/upstream-pool.js'
import { reuse, type Keyed } from './reuse.js'

/** The targets and bulkhead of an upstream: one component, since the bulkhead counts on the pool. */
interface PoolPart {
  readonly pool: UpstreamPool
  readonly bulkhead: Bulkhead
}

export class CompiledUpstream {
  constructor(
    readonly name: string,
    readonly pool: UpstreamPool,
    readonly bulkhead: Bulkhead,
    readonly hostHeader: string | null,   // null: pass the client's Host
    readonly hostFromTarget: boolean,
    readonly connectTimeoutMs: number,
    readonly responseTimeoutMs: number,
    /** protocol: grpc: HTTP/2 to the targets, trailers relayed, refusals as gRPC statuses (README "gRPC"). */
    readonly grpc: boolean,
    readonly retry: RetryPolicy,
    readonly hashKey: RequestKey | null,
    readonly metrics: UpstreamMetrics,
    /** Active and passive state of its targets, kept as long as the upstream's name. */
    readonly health: UpstreamHealth,
    /** Hot path: told of every attempt (forward.ts); null without healthCheck.passive. */
    readonly passive: PassiveHealth | null,
    /** The reuse keys of its components (reuse.ts). */
    readonly parts: {
      readonly pool: Keyed<PoolPart>
      readonly retry: Keyed<RetryPolicy>
      readonly hashKey: Keyed<RequestKey | null>
      readonly passive: Keyed<PassiveHealth | null>
    },
  ) {}
}

export interface CompiledUpstreamResult {
  readonly upstream: CompiledUpstream
  /** Targets new in this build: open their connection pools. */
  readonly added: readonly Target[]
  /** Targets of the previous build this one no longer uses: close their connection pools after the swap. */
  readonly retired: readonly Target[]
}

export function compileUpstream(
  name: string, spec: Upstream, old: CompiledUpstream | undefined, metrics: Metrics, feed: HealthFeed | null = null,
): CompiledUpstreamResult {
  const connectMs = spec.timeouts.connect
  let added: Target[] = []
  let retired: Target[] = []
  const specs = spec.targets.map((t) => ({ url: t.url, weight: t.weight }))
  const maxConcurrent = spec.maxConcurrent ?? null
  const grpc = spec.protocol === 'grpc'
  const poolSettings = { targets: specs, balancer: spec.balancer, maxConcurrent, onAllUnhealthy: spec.onAllUnhealthy, connectMs, grpc }
  const pool = reuse(old?.parts.pool, poolSettings, () => {
    // Connection pools are built with the connect timeout and the protocol: when either changes, every
    // target gets a new one. Otherwise targets of unchanged URLs keep theirs (UpstreamPool.withTargets).
    let next: UpstreamPool
    if (old !== undefined && old.connectTimeoutMs === connectMs && old.grpc === grpc) {
      const r = old.pool.withTargets(specs, { balancer: spec.balancer, maxConcurrent, onAllUnhealthy: spec.onAllUnhealthy })
      next = r.pool
      added = r.added
      retired = r.removed
    } else {
      next = UpstreamPool.fromSpecs(name, specs, spec.balancer, maxConcurrent, spec.onAllUnhealthy)
      added = [...next.targets]
      if (old !== undefined) retired = [...old.pool.targets]
    }
    return { pool: next, bulkhead: new Bulkhead(next) }
  })
  const upstreamMetrics = old?.metrics ?? metrics.forUpstream(name)
  const health = old?.health ?? new UpstreamHealth(name, {
    targetUp: (target, up) => upstreamMetrics.setTargetUp(target, up),
    ejected: (target, reason) => upstreamMetrics.countEjection(target, reason),
  })
  // Binds each target to its health state and sets its first `healthy` (README "Health checks").
  health.prepare(pool.value.pool.targets, spec.healthCheck?.active !== undefined, feed)
  const passiveSpec = spec.healthCheck?.passive ?? null
  const passive = reuse(old?.parts.passive, { passive: passiveSpec, pool: pool.key }, () =>
    passiveSpec === null ? null : new PassiveHealth(passiveSpec, pool.value.pool.targets, health))
  const retry = reuse(old?.parts.retry, spec.retry ?? null, () => new RetryPolicy(spec.retry))
  const hashSpec = spec.balancer === 'hash' && spec.hashKey !== undefined ? spec.hashKey : null
  const hashKey = reuse(old?.parts.hashKey, hashSpec, () => (hashSpec === null ? null : new RequestKey(hashSpec)))
  const responseMs = spec.timeouts.response
  const hostHeader = spec.hostHeader === 'pass' || spec.hostHeader === 'target' ? null : spec.hostHeader
  const hostFromTarget = spec.hostHeader === 'target'
  if (old !== undefined && old.parts.pool === pool && old.parts.retry === retry && old.parts.hashKey === hashKey && old.parts.passive === passive &&
    old.hostHeader === hostHeader && old.hostFromTarget === hostFromTarget && old.responseTimeoutMs === responseMs) {
    return { upstream: old, added, retired }
  }
  const upstream = new CompiledUpstream(
    name, pool.value.pool, pool.value.bulkhead, hostHeader, hostFromTarget, connectMs, responseMs, grpc,
    retry.value, hashKey.value, upstreamMetrics, health, passive.value, { pool, retry, hashKey, passive },
  )
  return { upstream, added, retired }
}
