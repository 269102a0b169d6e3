// The per-request routing work, per call: Router.match at 1k and 10k routes and canonicalizeTarget.
// Run by micro-bench.ts in its own process, timed by batches.ts.
import { canonicalizeTarget, isPathRejection, type PathPolicy } from '../../src/http/canonical-path.js'
import type { Router } from '../../src/router/router.js'
import { MICRO_HOST, REWRITTEN_TARGET, TYPICAL_TARGET } from './micro-routes.js'
import { operation, type Operation } from './batches.js'

const POLICY: PathPolicy = { mergeSlashes: true, rejectSemicolon: true }
const NO_HEADERS = Object.freeze({})

/** `paths` must hold 1024 paths (the index is masked). */
function lookup<T>(key: string, label: string, router: Router<T>, paths: readonly string[], method = 'GET', mustHit = false): Operation {
  return operation(key, label, (i) => (router.match(method, MICRO_HOST, paths[i & 1023]!, NO_HEADERS) === null ? 0 : 1), mustHit)
}

function canonicalize(key: string, label: string, target: string): Operation {
  return operation(key, label, () => {
    const r = canonicalizeTarget(target, 'GET', MICRO_HOST, POLICY)
    return isPathRejection(r) ? 0 : r.path.length
  })
}

/** Routers built by buildRouteTable from the small and the large table, and 1024 request paths for each. */
export interface CallInputs<T> {
  readonly small: Router<T>
  readonly large: Router<T>
  readonly smallPaths: readonly string[]
  readonly largePaths: readonly string[]
  readonly smallLabel: string
  readonly largeLabel: string
}

/** The routing operations, to be timed by measureOperations (batches.ts) with the others. */
export function routerOperations<T>(inputs: CallInputs<T>): Operation[] {
  const { small, large, smallPaths, largePaths, smallLabel, largeLabel } = inputs
  // The collection route of each service: static, no parameters object to build.
  const staticPaths = largePaths.map((p) => p.replace(/\/v\d\/.*/, '/v1/items'))
  const missPaths = largePaths.map((p) => p.replace(/\/v\d\//, '/v9/'))
  const rawTargets = largePaths.map((p) => `${p}?limit=10`)
  return [
    // Must match: paths that fit no route of the tables would time the miss path under the hit's label.
    lookup('lookup1k', `Router.match, ${smallLabel} routes (param-heavy mix)`, small, smallPaths, 'GET', true),
    lookup('lookup10k', `Router.match, ${largeLabel} routes (param-heavy mix)`, large, largePaths, 'GET', true),
    lookup('lookup10kStatic', `Router.match, ${largeLabel} routes, static route`, large, staticPaths),
    lookup('lookup10kMiss', `Router.match, ${largeLabel} routes, miss (404)`, large, missPaths),
    lookup('lookup10k405', `Router.match, ${largeLabel} routes, wrong method (405)`, large, staticPaths, 'PATCH'),
    canonicalize('canonicalizeTypical', `canonicalizeTarget ${TYPICAL_TARGET}`, TYPICAL_TARGET),
    canonicalize('canonicalizeRewritten', `canonicalizeTarget ${REWRITTEN_TARGET}`, REWRITTEN_TARGET),
    operation('canonicalizePlusMatch10k', `canonicalizeTarget + Router.match, ${largeLabel} routes`, (i) => {
      const r = canonicalizeTarget(rawTargets[i & 1023]!, 'GET', MICRO_HOST, POLICY)
      if (isPathRejection(r)) return 0
      return large.match('GET', MICRO_HOST, r.path, NO_HEADERS) === null ? 0 : 1
    }),
  ]
}
