// Differential test: our canonicalizer + Router against find-my-way (the router inside fastify) on the same
// randomly generated route table and request paths. For every request the outcome must be the same route,
// or our side refused the path (400: canonicalizeTarget, or %2F with allowEncodedSlash off). Never a
// different route.
//
// Known semantic differences, handled explicitly:
// 1. `/p/*` matches the bare `/p` here (README.md "Matching"), not in find-my-way: each wildcard route is also
//    registered as static `/p` in find-my-way, after every real route, so a real `/p` route keeps its
//    precedence (here a route ending at a node beats a wildcard with an empty rest).
// 2. A `:param` never matches an empty segment here; find-my-way binds it to "" (`/a/` → `/a/:x`). Requests
//    that find-my-way answers with an empty param are not compared (they are counted and bounded).
// 3. find-my-way has one tree per method and no "any" or implicit HEAD: a route without methods is
//    registered for every tested method, a GET route for HEAD too; for the same path and method only the
//    route we would pick (highest priority, then earliest) is registered.
// 4. Encoded characters: find-my-way decodes params, we keep the canonical encoded text (and encode raw
//    `[`, `{`, ...), so params are compared only for paths without either. Routes are compared for all.
// 5. Dot segments, ';', '#', '\', malformed '%' and '%2F' are refused here and matched as text there:
//    a refusal is an accepted outcome.
import FindMyWay from 'find-my-way'
import { describe, expect, it } from 'vitest'
import { canonicalizeTarget, isPathRejection } from '../../src/http/canonical-path.js'
import { Router, type RouteSpec } from '../../src/router/router.js'

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'PATCH'
const METHODS: readonly Method[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']
const ROUTE_METHODS: readonly Method[] = ['GET', 'POST', 'PUT', 'DELETE']
const POLICY = { mergeSlashes: true, rejectSemicolon: true }
// Paths whose params differ in spelling only (difference 4): escapes, and raw characters we encode.
const ENCODED_HERE = /[%"<>[\]^`{|}]/

/** mulberry32: small, seeded, good enough to pick test data. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = ['api', 'v1', 'v2', 'users', 'orders', 'items', 'a', 'b', 'c', 'admin', 'public', 'files', 'x-y', 'a.b', '_z', '~t', 'Users', 'me', '42']

interface GeneratedRoute {
  readonly spec: RouteSpec
  /** Template parts: static text, `:name` or `*`. */
  readonly parts: readonly string[]
}

function generateRoutes(rand: () => number, count: number, withRootWildcard: boolean): GeneratedRoute[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
  const routes: GeneratedRoute[] = []
  for (let i = 0; i < count; i++) {
    const depth = 1 + Math.floor(rand() * 4)
    const parts: string[] = []
    let params = 0
    for (let d = 0; d < depth; d++) {
      const r = rand()
      if (d === depth - 1 && d > 0 && r < 0.12) parts.push('*')
      else if (r < (d === 0 ? 0.03 : 0.3)) parts.push(`:p${params++}`)
      else parts.push(pick(WORDS))
    }
    if (parts[parts.length - 1] !== '*' && rand() < 0.08) parts.push('') // trailing slash
    const isRootWildcard = withRootWildcard && i === Math.floor(count / 2)
    if (isRootWildcard) parts.splice(0, parts.length, '*')
    let methods: Method[] | null = null
    if (isRootWildcard || rand() < 0.7) {
      methods = ROUTE_METHODS.filter(() => rand() < 0.4)
      if (methods.length === 0) methods = [pick(ROUTE_METHODS)]
    }
    const priority = rand() < 0.2 ? Math.floor(rand() * 3) - 1 : 0
    routes.push({
      spec: { id: `r${i}`, path: '/' + parts.join('/'), methods, host: null, headers: null, priority },
      parts,
    })
  }
  return routes
}

/** Paths from the templates with random values, near misses, encodings, '//', dots and noise. */
function generatePaths(rand: () => number, routes: readonly GeneratedRoute[], count: number): string[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
  const value = (): string => pick(['7', 'abc', 'me', 'users', 'a.b', '...', '.x', 'x.', 'A%42', '%7euser', 'caf%c3%a9', 'x%2fy', 'x%20y', 'x;y', '..', '%2e%2e', '.', '', 'a%zz', '[id]', 'v1'])
  const encodeOne = (s: string): string => {
    if (s.length === 0) return s
    const i = Math.floor(rand() * s.length)
    const hex = s.charCodeAt(i).toString(16)
    return s.slice(0, i) + '%' + (rand() < 0.5 ? hex : hex.toUpperCase()) + s.slice(i + 1)
  }
  const paths: string[] = []
  while (paths.length < count) {
    const route = pick(routes)
    let segments = route.parts.map((p) => {
      if (p === '*') return Array.from({ length: Math.floor(rand() * 3) }, value).join('/')
      if (p.startsWith(':')) return value()
      return rand() < 0.1 ? encodeOne(p) : p
    })
    if (route.parts[route.parts.length - 1] === '*' && rand() < 0.3) segments = segments.slice(0, -1) // bare prefix
    const r = rand()
    if (r < 0.08) segments.splice(Math.floor(rand() * (segments.length + 1)), 0, pick(WORDS))
    else if (r < 0.14) segments.splice(Math.floor(rand() * segments.length), 1)
    else if (r < 0.2) segments.push('')
    else if (r < 0.25) segments = segments.map((s) => (rand() < 0.3 ? s.toUpperCase() : s))
    else if (r < 0.3) segments.splice(Math.floor(rand() * (segments.length + 1)), 0, pick(['.', '..', '%2e', '.%2E', '%2E%2e']))
    let path = '/' + segments.join('/')
    if (rand() < 0.08) path = path.replace('/', '//')
    if (rand() < 0.05) path += pick(['/', '//', '#frag', '\\x', ';jsessionid=1'])
    if (rand() < 0.1) path += pick(['?x=1', '?x=../../a', '?a=%2F&b'])
    paths.push(path)
  }
  return paths
}

function buildFindMyWay(routes: readonly GeneratedRoute[]): FindMyWay.Instance<FindMyWay.HTTPVersion.V1> {
  const fmw = FindMyWay({ ignoreDuplicateSlashes: true })
  const taken = new Set<string>()
  const register = (method: Method, path: string, id: string): void => {
    const key = `${method} ${path.replace(/:[A-Za-z0-9_]+/g, ':')}`
    if (taken.has(key)) return
    taken.add(key)
    fmw.on(method, path, () => undefined, { id })
  }
  // Our order of preference at one endpoint: priority, then the file order.
  const ordered = [...routes].sort((a, b) => b.spec.priority - a.spec.priority || Number(a.spec.id.slice(1)) - Number(b.spec.id.slice(1)))
  const methodsOf = (route: GeneratedRoute): Method[] => {
    const methods = (route.spec.methods ?? METHODS) as readonly Method[]
    return methods.includes('GET') && !methods.includes('HEAD') ? [...methods, 'HEAD'] : [...methods]
  }
  for (const route of ordered) for (const m of methodsOf(route)) register(m, route.spec.path, route.spec.id)
  // Difference 1: `/p/*` also answers `/p`, below every real `/p` route.
  for (const route of ordered) {
    if (route.parts[route.parts.length - 1] !== '*' || route.parts.length === 1) continue
    const bare = '/' + route.parts.slice(0, -1).join('/')
    for (const m of methodsOf(route)) register(m, bare, route.spec.id)
  }
  return fmw
}

interface Tally {
  compared: number
  routed: number
  methodNotAllowed: number
  notFound: number
  refused: number
  emptyParamSkipped: number
}

function runDifferential(seed: number, routeCount: number, pathCount: number): Tally {
  const rand = prng(seed)
  const routes = generateRoutes(rand, routeCount, seed % 2 === 0)
  const router = new Router(routes.map((r) => ({ spec: r.spec, value: r.spec.id })))
  const fmw = buildFindMyWay(routes)
  const paths = generatePaths(rand, routes, pathCount)
  const tally: Tally = { compared: 0, routed: 0, methodNotAllowed: 0, notFound: 0, refused: 0, emptyParamSkipped: 0 }
  for (const raw of paths) {
    for (const method of METHODS) {
      const where = `seed ${seed}: ${method} ${raw}`
      const canonical = canonicalizeTarget(raw, method, 'gw.test', POLICY)
      if (isPathRejection(canonical) || canonical.hasEncodedSlash) {
        tally.refused++
        continue
      }
      const theirs = fmw.find(method, raw)
      if (theirs !== null && Object.entries(theirs.params).some(([k, v]) => k !== '*' && v === '')) {
        tally.emptyParamSkipped++
        continue
      }
      tally.compared++
      const ours = router.match(method, 'gw.test', canonical.path, {})
      const theirId = theirs === null ? null : (theirs.store as { id: string }).id
      if (ours === null || ours.value === null) {
        expect(theirId, where).toBe(null)
        if (ours === null) tally.notFound++
        else {
          tally.methodNotAllowed++
          // Every method we list in Allow must be one that routes this path.
          for (const m of ours.allow.split(', ')) expect(fmw.find(m as Method, raw), `${where} Allow ${m}`).not.toBe(null)
        }
        continue
      }
      tally.routed++
      expect(ours.value, where).toBe(theirId)
      if (!ENCODED_HERE.test(raw) && theirs !== null) {
        const expected: Record<string, string | undefined> = { ...theirs.params }
        if (!('*' in expected) && ours.params['*'] === '') expected['*'] = '' // difference 1: the bare prefix
        expect(ours.params, where).toEqual(expected)
      }
    }
  }
  return tally
}

describe('Router against find-my-way', () => {
  it.each([1, 2, 3, 20260501])('routes every path like find-my-way or refuses it (seed %i)', (seed) => {
    const envSeed = process.env.ROUTER_DIFF_SEED
    const tally = runDifferential(envSeed === undefined ? seed : Number(envSeed), 300, 3000)
    if (process.env.ROUTER_DIFF_VERBOSE !== undefined) console.log(seed, tally)
    // The run is not vacuous: most requests are compared, and many of them reach a route.
    expect(tally.compared).toBeGreaterThan(tally.refused)
    expect(tally.routed).toBeGreaterThan(tally.compared / 4)
    expect(tally.methodNotAllowed).toBeGreaterThan(tally.compared / 50)
    if (seed % 2 === 1) expect(tally.notFound).toBeGreaterThan(tally.compared / 50) // else `/*` takes all
    expect(tally.emptyParamSkipped).toBeLessThan(tally.compared / 5)
  })
})
