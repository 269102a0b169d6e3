// Target selection for one upstream. Hot path: pick() runs once per attempt of every request, so it
// allocates nothing: weights and per-target state live in typed arrays built with the balancer, and
// retries pass the targets already tried as a caller-owned array plus a count.
//
// A target is eligible when it is not closing, not among the tried ones and healthy (unless the caller
// asks to ignore health: UpstreamPool's panic mode). A balancer is built per target set and config
// version; the Target objects (inflight, health) are shared with older balancers of the same upstream.
import type { Target } from './target.js'

export type BalancerKind = 'round-robin' | 'least-request' | 'random' | 'hash'

export interface Balancer {
  readonly kind: BalancerKind
  /**
   * An eligible target, or null when there is none. `tried[0..triedCount)` are skipped (the array is
   * owned and reused by the caller). `hashValue` is the request's hash key for `hash`, null when the
   * request has none; other kinds ignore it.
   */
  pick(tried: readonly Target[], triedCount: number, hashValue: string | null, ignoreHealth?: boolean): Target | null
}

/** Builds the balancer of one upstream; `random` (default Math.random) is injectable for tests. */
export function createBalancer(kind: BalancerKind, targets: readonly Target[], random: () => number = Math.random): Balancer {
  switch (kind) {
    case 'round-robin': return new RoundRobinBalancer(targets)
    case 'least-request': return new LeastRequestBalancer(targets, random)
    case 'random': return new RandomBalancer(targets, random)
    case 'hash': return new HashBalancer(targets)
  }
}

function isEligible(target: Target, tried: readonly Target[], triedCount: number, ignoreHealth: boolean): boolean {
  if (target.closing || (!ignoreHealth && !target.healthy)) return false
  for (let i = 0; i < triedCount; i++) if (tried[i] === target) return false
  return true
}

function copyWeights(targets: readonly Target[]): Float64Array {
  const weights = new Float64Array(targets.length)
  for (let i = 0; i < targets.length; i++) weights[i] = targets[i]!.weight
  return weights
}

/**
 * Smooth weighted round-robin (nginx): every pick adds each eligible target's weight to its current
 * weight, takes the largest (first on ties) and subtracts the eligible total from it. Over any run of
 * sum(weights) picks with a stable eligible set, each target gets exactly its weight, spread out:
 * 5:1:1 gives a a b a c a a. Invariant: the current weights of the eligible targets sum to 0 after a pick.
 */
class RoundRobinBalancer implements Balancer {
  readonly kind = 'round-robin'
  readonly #targets: readonly Target[]
  readonly #weights: Float64Array
  readonly #current: Float64Array

  constructor(targets: readonly Target[]) {
    this.#targets = targets
    this.#weights = copyWeights(targets)
    this.#current = new Float64Array(targets.length)
  }

  pick(tried: readonly Target[], triedCount: number, _hashValue: string | null, ignoreHealth = false): Target | null {
    const targets = this.#targets
    const weights = this.#weights
    const current = this.#current
    let best = -1
    let total = 0
    for (let i = 0; i < targets.length; i++) {
      if (!isEligible(targets[i]!, tried, triedCount, ignoreHealth)) continue
      const weight = weights[i]!
      current[i]! += weight
      total += weight
      if (best === -1 || current[i]! > current[best]!) best = i
    }
    if (best === -1) return null
    current[best]! -= total
    return targets[best]!
  }
}

/** Index of an eligible target drawn with probability weight/total; `skip` is left out; -1 if none. */
function drawWeighted(
  targets: readonly Target[], weights: Float64Array, total: number, skip: number, r: number,
  tried: readonly Target[], triedCount: number, ignoreHealth: boolean,
): number {
  let remaining = r * total
  let last = -1
  for (let i = 0; i < targets.length; i++) {
    if (i === skip || !isEligible(targets[i]!, tried, triedCount, ignoreHealth)) continue
    remaining -= weights[i]!
    last = i
    if (remaining < 0) return i
  }
  return last // only reached through floating-point rounding with r close to 1
}

function eligibleWeight(targets: readonly Target[], weights: Float64Array, tried: readonly Target[], triedCount: number, ignoreHealth: boolean): number {
  let total = 0
  for (let i = 0; i < targets.length; i++) {
    if (isEligible(targets[i]!, tried, triedCount, ignoreHealth)) total += weights[i]!
  }
  return total
}

/** What the two random-draw balancers share: the targets, their weights, and the random source. */
abstract class RandomDrawBalancer {
  protected readonly targets: readonly Target[]
  protected readonly weights: Float64Array
  protected readonly random: () => number

  constructor(targets: readonly Target[], random: () => number) {
    this.targets = targets
    this.weights = copyWeights(targets)
    this.random = random
  }
}

/** Weighted random. */
class RandomBalancer extends RandomDrawBalancer implements Balancer {
  readonly kind = 'random'

  pick(tried: readonly Target[], triedCount: number, _hashValue: string | null, ignoreHealth = false): Target | null {
    const total = eligibleWeight(this.targets, this.weights, tried, triedCount, ignoreHealth)
    if (total <= 0) return null
    const i = drawWeighted(this.targets, this.weights, total, -1, this.random(), tried, triedCount, ignoreHealth)
    return i === -1 ? null : this.targets[i]!
  }
}

/**
 * Power of two choices: draw two distinct eligible targets (weighted), send to the one with the lower
 * inflight/weight; on a tie the first draw wins, so an idle upstream is spread by weight.
 */
class LeastRequestBalancer extends RandomDrawBalancer implements Balancer {
  readonly kind = 'least-request'

  pick(tried: readonly Target[], triedCount: number, _hashValue: string | null, ignoreHealth = false): Target | null {
    const targets = this.targets
    const weights = this.weights
    const total = eligibleWeight(targets, weights, tried, triedCount, ignoreHealth)
    if (total <= 0) return null
    const a = drawWeighted(targets, weights, total, -1, this.random(), tried, triedCount, ignoreHealth)
    if (a === -1) return null
    const rest = total - weights[a]!
    if (rest <= 0) return targets[a]!
    const b = drawWeighted(targets, weights, rest, a, this.random(), tried, triedCount, ignoreHealth)
    if (b === -1) return targets[a]!
    // inflight[b]/weight[b] < inflight[a]/weight[a], without dividing.
    return targets[b]!.inflight * weights[a]! < targets[a]!.inflight * weights[b]! ? targets[b]! : targets[a]!
  }
}

/** Virtual nodes per unit of weight, and the most points a ring may hold. */
const VNODES_PER_WEIGHT = 160
const MAX_RING_POINTS = 1 << 16

/**
 * 32-bit FNV-1a over UTF-16 code units, then murmur3's fmix32 finaliser: FNV alone maps `host#1`,
 * `host#2`, ... to evenly spaced values, which clusters the ring.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Consistent hashing. The ring holds VNODES_PER_WEIGHT × weight points per target, at hash32(`url#i`),
 * sorted; a key goes to the first point clockwise from hash32(key) whose target is eligible. Points
 * depend only on each target's own url and weight, so adding or removing one of N targets moves about
 * 1/N of the keys, and keys of an ineligible target go to the next target on the ring while the others
 * stay put. Above MAX_RING_POINTS every target gets proportionally fewer points (at least one); since
 * point i of a target does not depend on its count, shrinking only drops each target's last points.
 * Requests without a key are spread by smooth weighted round-robin.
 */
class HashBalancer implements Balancer {
  readonly kind = 'hash'
  readonly #targets: readonly Target[]
  readonly #points: Uint32Array     // sorted hashes
  readonly #owners: Uint32Array     // #owners[k]: index in #targets of the point #points[k]
  readonly #fallback: RoundRobinBalancer

  constructor(targets: readonly Target[]) {
    this.#targets = targets
    this.#fallback = new RoundRobinBalancer(targets)
    let totalWeight = 0
    for (const target of targets) totalWeight += target.weight
    const scale = Math.min(1, MAX_RING_POINTS / (VNODES_PER_WEIGHT * Math.max(totalWeight, 1)))
    const hashes: number[] = []
    const owners: number[] = []
    for (let t = 0; t < targets.length; t++) {
      const target = targets[t]!
      const count = Math.max(1, Math.round(VNODES_PER_WEIGHT * target.weight * scale))
      for (let i = 0; i < count; i++) {
        hashes.push(hash32(`${target.url}#${i}`))
        owners.push(t)
      }
    }
    // Ties (rare) are broken by url so the ring does not depend on the order targets are listed in.
    const order = hashes.map((_, k) => k)
    order.sort((x, y) => hashes[x]! - hashes[y]! || compareText(targets[owners[x]!]!.url, targets[owners[y]!]!.url))
    this.#points = new Uint32Array(order.length)
    this.#owners = new Uint32Array(order.length)
    for (let k = 0; k < order.length; k++) {
      this.#points[k] = hashes[order[k]!]!
      this.#owners[k] = owners[order[k]!]!
    }
  }

  pick(tried: readonly Target[], triedCount: number, hashValue: string | null, ignoreHealth = false): Target | null {
    if (hashValue === null) return this.#fallback.pick(tried, triedCount, null, ignoreHealth)
    const points = this.#points
    const n = points.length
    if (n === 0) return null
    const h = hash32(hashValue)
    // First point >= h (binary search), wrapping to 0 past the end.
    let lo = 0
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid]! < h) lo = mid + 1
      else hi = mid
    }
    for (let step = 0, k = lo === n ? 0 : lo; step < n; step++, k = k + 1 === n ? 0 : k + 1) {
      const target = this.#targets[this.#owners[k]!]!
      if (isEligible(target, tried, triedCount, ignoreHealth)) return target
    }
    return null
  }
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
