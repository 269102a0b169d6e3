// Config upstream list, sticky and splitRules -> a route's CompiledSplit (README "Traffic splitting"): the
// upstreams it may choose, and the TrafficSplit step that chooses one per request and runs that upstream's
// admission. The split holds no state worth keeping (its deck reshuffles), so it is rebuilt whenever its
// settings, an upstream it names or the route's breaker changes; the upstreams themselves (pools, health,
// retries) and the breaker are their own components and stay across reloads (reuse.ts).
import type { Route } from '../config/schema.js'
import { RequestKey } from '../http/request-key.js'
import type { RequestStep } from '../http/request-step.js'
import { BreakerStep } from '../policy/breaker/breaker-step.js'
import { TrafficSplit, type SplitRuleSpec } from '../upstream/traffic-split.js'
import type { CompiledBreaker } from './compiled-breaker.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import { settingsKey } from './reuse.js'

export class CompiledSplit {
  constructor(
    /** The choices: the weighted list in order, then upstreams only splitRules name. */
    readonly upstreams: readonly CompiledUpstream[],
    readonly step: TrafficSplit,
    /** The settings it was built from (reuse.ts) and the breaker whose admission it runs. */
    readonly key: string,
    readonly breaker: CompiledBreaker | null,
  ) {}
}

/**
 * The route's split, or null for a route with one upstream and no splitRules (its admission step is then
 * the breaker's or the bulkhead's, as before). `primary` is the route's upstream (its first weighted one).
 */
export function compileSplit(
  route: Route, upstreams: ReadonlyMap<string, CompiledUpstream>, primary: CompiledUpstream, breaker: CompiledBreaker | null, old: CompiledSplit | null,
): CompiledSplit | null {
  if (typeof route.upstream === 'string' && (route.splitRules === undefined || route.splitRules.length === 0)) return null
  const names: string[] = []
  const weights: number[] = []
  if (typeof route.upstream === 'string') {
    names.push(route.upstream)
    weights.push(1)
  } else {
    for (const e of route.upstream) {
      names.push(e.upstream)
      weights.push(e.weight)
    }
  }
  const rules: SplitRuleSpec[] = []
  for (const rule of route.splitRules ?? []) {
    let choice = names.indexOf(rule.upstream)
    if (choice < 0) {
      choice = names.push(rule.upstream) - 1
      weights.push(0)
    }
    rules.push(Object.freeze({
      headers: Object.entries(rule.match.headers ?? {}).map(([n, v]) => [n.toLowerCase(), v] as const),
      cookies: Object.entries(rule.match.cookies ?? {}),
      choice,
    }))
  }
  const chosen = names.map((n) => {
    const u = upstreams.get(n)
    if (u === undefined) throw new Error(`route ${route.id}: upstream ${n} is not defined (load.ts should have rejected this)`)
    return u
  })
  const key = settingsKey({ upstream: route.upstream, sticky: route.sticky ?? null, splitRules: route.splitRules ?? null })
  if (old !== null && old.key === key && old.breaker === breaker && old.upstreams.length === chosen.length && old.upstreams.every((u, i) => u === chosen[i])) return old
  // Each choice is admitted like a route of its own: the route's breaker (one per route, SPEC §10), then the
  // chosen upstream's bulkhead.
  const admissions: RequestStep[] = chosen.map((u) => {
    if (breaker === null) return u.bulkhead
    if (u === primary) return breaker.step
    return new BreakerStep(breaker.breaker, u.bulkhead, breaker.step.fallback)
  })
  const sticky = route.sticky === undefined ? null : new RequestKey(route.sticky)
  return new CompiledSplit(chosen, new TrafficSplit(weights, rules, sticky, admissions), key, breaker)
}

/** The route's upstream when it has one name; for a split, its first upstream with a weight above 0. */
export function primaryUpstreamName(route: Route): string {
  if (typeof route.upstream === 'string') return route.upstream
  return (route.upstream.find((e) => e.weight > 0) ?? route.upstream[0]!).upstream
}
