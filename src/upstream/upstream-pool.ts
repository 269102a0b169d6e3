// The targets of one upstream, its balancer and its bulkhead (maxConcurrent). A pool is immutable apart
// from counters: a reload builds a new one with withTargets(), which reuses the Target objects of
// unchanged URLs (their dispatcher, inflight and health carry over) and shares the in-flight counter,
// so requests still running on the old pool release into the same count the new one admits against.
import { createBalancer, type Balancer, type BalancerKind } from './balancer.js'
import { Target } from './target.js'

export type OnAllUnhealthy = 'route-all' | 'fail'

export interface TargetSpec {
  readonly url: string
  readonly weight: number
}

/** Settings a reload may change besides the targets; omitted ones keep the current value. */
export interface PoolSettings {
  readonly balancer?: BalancerKind
  readonly maxConcurrent?: number | null
  readonly onAllUnhealthy?: OnAllUnhealthy
}

export interface ReconciledPool {
  readonly pool: UpstreamPool
  /** Targets created for URLs the previous pool did not have: give them a dispatcher. */
  readonly added: Target[]
  /** Targets of the previous pool whose URL is gone: once the new pool serves, mark them closing and close their dispatcher. */
  readonly removed: Target[]
}

/** In-flight requests of one upstream, shared by every generation of its pool. */
interface InflightCount {
  value: number
}

export class UpstreamPool {
  readonly name: string
  readonly balancerKind: BalancerKind
  readonly targets: readonly Target[]
  readonly maxConcurrent: number | null
  readonly onAllUnhealthy: OnAllUnhealthy
  readonly #balancer: Balancer
  readonly #random: () => number
  #inflight: InflightCount

  /** `targets` must have distinct urls. `random` (default Math.random) is injectable for tests. */
  constructor(
    name: string,
    balancerKind: BalancerKind,
    targets: readonly Target[],
    maxConcurrent: number | null,
    onAllUnhealthy: OnAllUnhealthy,
    random: () => number = Math.random,
  ) {
    const seen = new Set<string>()
    for (const target of targets) {
      if (seen.has(target.url)) throw new TypeError(`upstream ${name}: target ${target.url} is listed twice.`)
      seen.add(target.url)
    }
    this.name = name
    this.balancerKind = balancerKind
    this.targets = Object.freeze([...targets])
    this.maxConcurrent = maxConcurrent
    this.onAllUnhealthy = onAllUnhealthy
    this.#balancer = createBalancer(balancerKind, this.targets, random)
    this.#random = random
    this.#inflight = { value: 0 }
  }

  /** A pool of fresh targets; a spec repeating an earlier url is ignored. */
  static fromSpecs(
    name: string,
    specs: ReadonlyArray<TargetSpec>,
    balancerKind: BalancerKind,
    maxConcurrent: number | null,
    onAllUnhealthy: OnAllUnhealthy,
    random?: () => number,
  ): UpstreamPool {
    const empty = new UpstreamPool(name, balancerKind, [], maxConcurrent, onAllUnhealthy, random)
    return empty.withTargets(specs).pool
  }

  /** Requests admitted by tryAcquire() and not yet released, across reloads. */
  get inflight(): number {
    return this.#inflight.value
  }

  /** True when no target is both healthy and not closing: picks ignore health ('route-all') or fail. */
  get isPanicking(): boolean {
    return !this.#hasHealthyTarget()
  }

  /** Hot path. Admits one request, or returns false at maxConcurrent (the caller answers 503 OVERLOADED). */
  tryAcquire(): boolean {
    const count = this.#inflight
    if (this.maxConcurrent !== null && count.value >= this.maxConcurrent) return false
    count.value++
    return true
  }

  /** Hot path. Ends a request admitted by tryAcquire(), on whichever pool generation admitted it. */
  release(): void {
    if (this.#inflight.value > 0) this.#inflight.value--
  }

  /**
   * Hot path. The target for the next attempt, skipping `tried[0..triedCount)`; null when none is left
   * (503 NO_HEALTHY_UPSTREAM on a first attempt). When no target at all is healthy, 'route-all' picks
   * among every target not closing and not tried (panic); 'fail' returns null. Healthy targets that
   * were all tried do not trigger panic: a retry is not sent to a target known to be down.
   */
  pick(tried: readonly Target[], triedCount: number, hashValue: string | null): Target | null {
    const target = this.#balancer.pick(tried, triedCount, hashValue, false)
    if (target !== null || this.onAllUnhealthy === 'fail' || this.#hasHealthyTarget()) return target
    return this.#balancer.pick(tried, triedCount, hashValue, true)
  }

  /**
   * The next generation of this pool for a reload. Targets whose normalised url is unchanged are the
   * same objects (a changed weight is applied to them); others are created or reported removed. Nothing
   * is closed or marked here, so a reload that is rejected later leaves this pool untouched (apart from
   * weights, which the balancers built before keep their own copy of).
   */
  withTargets(specs: ReadonlyArray<TargetSpec>, settings: PoolSettings = {}): ReconciledPool {
    const current = new Map<string, Target>()
    for (const target of this.targets) current.set(target.url, target)
    const targets: Target[] = []
    const added: Target[] = []
    const kept = new Set<Target>()
    const seen = new Set<string>()
    for (const spec of specs) {
      const fresh = new Target(spec.url, spec.weight)
      if (seen.has(fresh.url)) continue
      seen.add(fresh.url)
      const existing = current.get(fresh.url)
      if (existing === undefined) {
        targets.push(fresh)
        added.push(fresh)
      } else {
        if (existing.weight !== spec.weight) existing.reweight(spec.weight)
        targets.push(existing)
        kept.add(existing)
      }
    }
    const removed = this.targets.filter((target) => !kept.has(target))
    const pool = new UpstreamPool(
      this.name,
      settings.balancer ?? this.balancerKind,
      targets,
      settings.maxConcurrent === undefined ? this.maxConcurrent : settings.maxConcurrent,
      settings.onAllUnhealthy ?? this.onAllUnhealthy,
      this.#random,
    )
    pool.#inflight = this.#inflight
    return { pool, added, removed }
  }

  #hasHealthyTarget(): boolean {
    const targets = this.targets
    for (let i = 0; i < targets.length; i++) if (targets[i]!.healthy && !targets[i]!.closing) return true
    return false
  }
}
