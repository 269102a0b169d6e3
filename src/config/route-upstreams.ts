// The upstreams a route names: its `upstream` (one name or a weighted split), its splitRules, its mirror and
// its breaker's fallback. One place, so check.ts, the etcd item check and the table agree on what a route uses.
import type { PathSegment } from './validate-value.js'
import type { Route } from './schema.js'

/** One upstream name a route uses and where in the route it is written. */
export interface UpstreamReference {
  readonly name: string
  /** Relative to the route: ['upstream'], ['upstream', 1, 'upstream'], ['splitRules', 0, 'upstream']... */
  readonly path: readonly PathSegment[]
}

/** The split entries of a route: one entry of weight 1 for a plain `upstream: name`. */
export function splitEntries(route: Route): readonly { readonly upstream: string; readonly weight: number }[] {
  return typeof route.upstream === 'string' ? [{ upstream: route.upstream, weight: 1 }] : route.upstream
}

/**
 * Every upstream name the route uses, in file order, with where it is written. Safe on a route that failed
 * the schema (check.ts runs on those too): values that are not names are skipped.
 */
export function upstreamReferences(route: Route): UpstreamReference[] {
  const out: UpstreamReference[] = []
  const add = (name: unknown, path: readonly PathSegment[]): void => {
    if (typeof name === 'string') out.push({ name, path })
  }
  const r = route as Partial<Route>
  if (Array.isArray(r.upstream)) r.upstream.forEach((e, i) => add(e?.upstream, ['upstream', i, 'upstream']))
  else add(r.upstream, ['upstream'])
  if (Array.isArray(r.splitRules)) r.splitRules.forEach((rule, i) => add(rule?.upstream, ['splitRules', i, 'upstream']))
  add(r.mirror?.upstream, ['mirror', 'upstream'])
  const fallback = r.circuitBreaker?.fallback
  if (fallback !== undefined && fallback !== null && 'upstream' in fallback) add(fallback.upstream, ['circuitBreaker', 'fallback', 'upstream'])
  return out
}
