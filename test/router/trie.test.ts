import { describe, expect, it } from 'vitest'
import { Router, type MatchResult, type RouteSpec } from '../../src/router/router.js'
import { LabelTable } from '../../src/router/trie.js'

type Headers = Readonly<Record<string, string | string[] | undefined>>

interface RouteInput {
  readonly id: string
  readonly path: string
  readonly methods?: readonly string[]
  readonly host?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly priority?: number
}

function build(routes: readonly RouteInput[]): Router<string> {
  return new Router(routes.map((r) => ({
    spec: {
      id: r.id, path: r.path, methods: r.methods ?? null, host: r.host ?? null,
      headers: r.headers ?? null, priority: r.priority ?? 0,
    } satisfies RouteSpec,
    value: r.id,
  })))
}

/** 'id', 'id {params}', '405 <allow>' or '404'. */
function show(result: MatchResult<string>): string {
  if (result === null) return '404'
  if (result.value === null) return `405 ${result.allow}`
  return Object.keys(result.params).length === 0 ? result.value : `${result.value} ${JSON.stringify(result.params)}`
}

function run(router: Router<string>, method: string, path: string, host?: string, headers: Headers = {}): string {
  return show(router.match(method, host, path, headers))
}

describe('Router path matching', () => {
  const router = build([
    { id: 'static', path: '/a/b' },
    { id: 'param', path: '/a/:x' },
    { id: 'wild', path: '/a/*' },
    { id: 'deep-static', path: '/a/b/c' },
    { id: 'deep-param', path: '/a/:x/d' },
    { id: 'two-params', path: '/p/:first/q/:second' },
    { id: 'api', path: '/api/*' },
    { id: 'slash', path: '/t/' },
    { id: 'noslash', path: '/t' },
    { id: 'root', path: '/' },
    { id: 'Case', path: '/Case' },
    { id: 'file', path: '/f/:name' },
  ])
  const cases: Array<[string, string, string]> = [
    ['a static segment beats a param', '/a/b', 'static'],
    ['a param takes what static does not', '/a/z', 'param {"x":"z"}'],
    ['a wildcard takes the rest', '/a/z/y', 'wild {"*":"z/y"}'],
    ['the search backtracks from a static branch to a param branch', '/a/b/d', 'deep-param {"x":"b"}'],
    ['a deeper static match wins', '/a/b/c', 'deep-static'],
    ['the search backtracks to the wildcard when no deeper route fits', '/a/b/e', 'wild {"*":"b/e"}'],
    ['a param never matches an empty segment', '/a/', 'wild {"*":""}'],
    ['several params are captured in order', '/p/1/q/2', 'two-params {"first":"1","second":"2"}'],
    ['a trailing wildcard matches the bare prefix', '/api', 'api {"*":""}'],
    ['a trailing wildcard matches the prefix with a slash', '/api/', 'api {"*":""}'],
    ['a trailing wildcard matches everything below', '/api/v1/users/7', 'api {"*":"v1/users/7"}'],
    ['a trailing wildcard does not match a longer segment', '/apix', '404'],
    ['a trailing slash is significant (with slash)', '/t/', 'slash'],
    ['a trailing slash is significant (without slash)', '/t', 'noslash'],
    ['a trailing slash does not match a longer path', '/t/x', '404'],
    ['the root path matches the root route', '/', 'root'],
    ['paths are case-sensitive (exact case)', '/Case', 'Case'],
    ['paths are case-sensitive (other case)', '/case', '404'],
    ['params hold the canonical, still encoded text', '/f/a%2Fb%20c', 'file {"name":"a%2Fb%20c"}'],
    ['an unknown path is not found', '/nothing/here', '404'],
    ['an asterisk target is never routed', '*', '404'],
  ]
  it.each(cases)('%s (%s)', (_name, path, expected) => {
    expect(run(router, 'GET', path)).toBe(expected)
  })

  it('routes every path under a root wildcard, the root itself included', () => {
    const r = build([{ id: 'all', path: '/*' }, { id: 'x', path: '/x' }])
    expect(run(r, 'GET', '/')).toBe('all {"*":""}')
    expect(run(r, 'GET', '/x')).toBe('x')
    expect(run(r, 'GET', '/x/')).toBe('all {"*":"x/"}')
    expect(run(r, 'GET', '/y/z')).toBe('all {"*":"y/z"}')
  })

  it('prefers a route ending at a node over a wildcard with an empty rest', () => {
    const r = build([{ id: 'wild', path: '/api/*' }, { id: 'exact', path: '/api' }])
    expect(run(r, 'GET', '/api')).toBe('exact')
    expect(run(r, 'GET', '/api/')).toBe('wild {"*":""}')
  })

  it('lets different routes name the param at the same position differently', () => {
    const r = build([{ id: 'by-id', path: '/u/:id', methods: ['GET'] }, { id: 'by-name', path: '/u/:name', methods: ['PUT'] }])
    expect(run(r, 'GET', '/u/7')).toBe('by-id {"id":"7"}')
    expect(run(r, 'PUT', '/u/7')).toBe('by-name {"name":"7"}')
  })

  it('matches empty segments literally when slashes are not merged', () => {
    const r = build([{ id: 'double', path: '/a//b' }, { id: 'param', path: '/a/:x/b' }])
    expect(run(r, 'GET', '/a//b')).toBe('double')
    expect(run(r, 'GET', '/a/x/b')).toBe('param {"x":"x"}')
  })

  it('returns the same frozen result for a route without params', () => {
    const r = build([{ id: 'a', path: '/a' }])
    const first = r.match('GET', undefined, '/a', {})
    expect(first).toBe(r.match('GET', undefined, '/a', {}))
    expect(Object.isFrozen(first)).toBe(true)
  })

  it('finds static segments among many siblings (hashed tables)', () => {
    const routes: RouteInput[] = []
    for (let i = 0; i < 500; i++) routes.push({ id: `s${i}`, path: `/svc${i}/v1/:id` })
    routes.push({ id: 'fallback', path: '/:svc/v1/:id' })
    const r = build(routes)
    expect(r.size).toBe(501)
    for (let i = 0; i < 500; i += 7) expect(run(r, 'GET', `/svc${i}/v1/42`)).toBe(`s${i} {"id":"42"}`)
    expect(run(r, 'GET', '/svc500/v1/42')).toBe('fallback {"svc":"svc500","id":"42"}')
    expect(run(r, 'GET', '/svc1/v2/42')).toBe('404')
  })
})

describe('Router methods, headers and priority', () => {
  it('answers HEAD with a route that allows GET', () => {
    const r = build([{ id: 'get', path: '/a', methods: ['GET'] }])
    expect(run(r, 'HEAD', '/a')).toBe('get')
  })

  it('answers 405 with the sorted Allow list, HEAD next to GET', () => {
    const r = build([
      { id: 'get', path: '/a', methods: ['PUT', 'GET'] },
      { id: 'del', path: '/a', methods: ['DELETE'] },
    ])
    expect(run(r, 'POST', '/a')).toBe('405 DELETE, GET, HEAD, PUT')
    expect(run(r, 'POST', '/b')).toBe('404')
  })

  it('lets a route without methods take any method', () => {
    const r = build([{ id: 'any', path: '/a' }])
    for (const m of ['GET', 'POST', 'PATCH', 'PROPFIND']) expect(run(r, m, '/a')).toBe('any')
  })

  it('backtracks to a param branch that accepts the method before answering 405', () => {
    const r = build([
      { id: 'me', path: '/u/me', methods: ['GET'] },
      { id: 'user', path: '/u/:id', methods: ['DELETE'] },
    ])
    expect(run(r, 'DELETE', '/u/me')).toBe('user {"id":"me"}')
    expect(run(r, 'GET', '/u/me')).toBe('me')
    expect(run(r, 'GET', '/u/7')).toBe('405 DELETE')
    expect(run(r, 'POST', '/u/me')).toBe('405 DELETE, GET, HEAD')
  })

  it('backtracks to a wildcard that accepts the method', () => {
    const r = build([{ id: 'get', path: '/s/x', methods: ['GET'] }, { id: 'any', path: '/s/*' }])
    expect(run(r, 'POST', '/s/x')).toBe('any {"*":"x"}')
  })

  it('picks the highest priority, then the earliest route', () => {
    const r = build([
      { id: 'first', path: '/a' },
      { id: 'second', path: '/a' },
      { id: 'low', path: '/b', priority: -1 },
      { id: 'high', path: '/b', priority: 5 },
      { id: 'mid', path: '/b', priority: 1 },
    ])
    expect(run(r, 'GET', '/a')).toBe('first')
    expect(run(r, 'GET', '/b')).toBe('high')
  })

  it('never lets priority override the trie order', () => {
    const r = build([{ id: 'param', path: '/a/:x', priority: 100 }, { id: 'static', path: '/a/b' }])
    expect(run(r, 'GET', '/a/b')).toBe('static')
  })

  it('prefers a higher-priority route for its methods and falls back for others', () => {
    const r = build([
      { id: 'general', path: '/a' },
      { id: 'writes', path: '/a', methods: ['POST', 'PUT'], priority: 1 },
    ])
    expect(run(r, 'POST', '/a')).toBe('writes')
    expect(run(r, 'GET', '/a')).toBe('general')
  })

  it('matches headers exactly, with names in any case', () => {
    const r = build([
      { id: 'canary', path: '/a', headers: { 'X-Canary': '1' }, priority: 1 },
      { id: 'stable', path: '/a' },
    ])
    expect(run(r, 'GET', '/a', undefined, { 'x-canary': '1' })).toBe('canary')
    expect(run(r, 'GET', '/a', undefined, { 'x-canary': '2' })).toBe('stable')
    expect(run(r, 'GET', '/a', undefined, { 'x-canary': '1 ' })).toBe('stable')
    expect(run(r, 'GET', '/a', undefined, {})).toBe('stable')
    expect(run(r, 'GET', '/a', undefined, { 'x-canary': ['1', '1'] })).toBe('stable')
  })

  it('treats a path whose routes fail only on headers as not found', () => {
    const r = build([{ id: 'canary', path: '/a', headers: { 'x-canary': '1' }, methods: ['GET'] }])
    expect(run(r, 'GET', '/a')).toBe('404')
    expect(run(r, 'POST', '/a')).toBe('404')
    expect(run(r, 'POST', '/a', undefined, { 'x-canary': '1' })).toBe('405 GET, HEAD')
  })

  it('lists only the methods of routes whose headers hold in a 405', () => {
    const r = build([
      { id: 'canary', path: '/a', headers: { 'x-canary': '1' }, methods: ['PUT'] },
      { id: 'get', path: '/a', methods: ['GET'] },
    ])
    expect(run(r, 'POST', '/a')).toBe('405 GET, HEAD')
    expect(run(r, 'POST', '/a', undefined, { 'x-canary': '1' })).toBe('405 GET, HEAD, PUT')
  })
})

describe('Router hosts', () => {
  const router = build([
    { id: 'exact', path: '/x', host: 'api.example.com' },
    { id: 'exact-only', path: '/only-exact', host: 'api.example.com' },
    { id: 'wild', path: '/x', host: '*.example.com' },
    { id: 'wild-deep', path: '/x', host: '*.eu.example.com' },
    { id: 'any', path: '/x' },
    { id: 'any-y', path: '/y' },
    { id: 'exact-get', path: '/m', host: 'api.example.com', methods: ['GET'] },
    { id: 'any-post', path: '/m', methods: ['POST'] },
  ])
  const cases: Array<[string, string, string | undefined, string]> = [
    ['an exact host beats a wildcard and no host', '/x', 'api.example.com', 'exact'],
    ['host matching ignores case', '/x', 'API.Example.COM', 'exact'],
    ['host matching ignores the port', '/x', 'api.example.com:8443', 'exact'],
    ['host matching ignores one trailing dot', '/x', 'api.example.com.', 'exact'],
    ['a wildcard matches another subdomain', '/x', 'www.example.com', 'wild'],
    ['a wildcard matches several levels', '/x', 'a.b.example.com', 'wild'],
    ['the longest wildcard suffix wins', '/x', 'paris.eu.example.com', 'wild-deep'],
    ['a wildcard host ignores case and port', '/x', 'WWW.EXAMPLE.COM:80', 'wild'],
    ['a wildcard does not match the apex', '/x', 'example.com', 'any'],
    ['a wildcard does not match a name merely ending the same', '/x', 'badexample.com', 'any'],
    ['an unknown host falls to routes without a host', '/x', 'other.test', 'any'],
    ['a missing Host falls to routes without a host', '/x', undefined, 'any'],
    ['an IPv6 literal falls to routes without a host', '/x', '[::1]:8080', 'any'],
    ['a more specific host without the path falls back', '/y', 'api.example.com', 'any-y'],
    ['a host-specific route is invisible to other hosts', '/only-exact', 'www.example.com', '404'],
    ['a host-specific route serves its host', '/only-exact', 'api.example.com', 'exact-only'],
  ]
  it.each(cases)('%s (%s on %s)', (_name, path, host, expected) => {
    expect(run(router, 'GET', path, host)).toBe(expected)
  })

  it('falls back to a less specific host level that accepts the method', () => {
    expect(run(router, 'POST', '/m', 'api.example.com')).toBe('any-post')
    expect(run(router, 'GET', '/m', 'api.example.com')).toBe('exact-get')
    expect(run(router, 'DELETE', '/m', 'api.example.com')).toBe('405 GET, HEAD, POST')
    expect(run(router, 'GET', '/m', 'other.test')).toBe('405 POST')
  })

  it('indexes many hosts', () => {
    const routes: RouteInput[] = []
    for (let i = 0; i < 100; i++) routes.push({ id: `h${i}`, path: '/', host: `h${i}.example.com` })
    for (let i = 0; i < 20; i++) routes.push({ id: `w${i}`, path: '/', host: `*.w${i}.example.com` })
    const r = build(routes)
    expect(run(r, 'GET', '/', 'H42.example.com')).toBe('h42')
    expect(run(r, 'GET', '/', 'a.w7.example.com')).toBe('w7')
    expect(run(r, 'GET', '/', 'w7.example.com')).toBe('404')
  })
})

// The grammar and every refusal are tested on their own in test/config/route-path.test.ts; here, that the
// router holds to what that parser says.
describe('route paths', () => {
  it.each([
    ['a syntax error', '/a/*/b'],
    ['a dot segment', '/a/../b'],
    ['a query', '/a?x=1'],
    ['a non-ASCII character', '/caf\u00e9'],
  ])('refuses a path the route-path parser refuses (%s) when the router is built', (_name, path) => {
    expect(() => build([{ id: 'r', path }, { id: 'live', path: '/live' }])).toThrow(/^route r: match\.path: /)
  })

  it('puts static segments in canonical form, as requests are', () => {
    const r = build([
      { id: 'admin', path: '/%61dmin' },
      { id: 'slash', path: '/a%2fb' },
      { id: 'slug', path: '/[slug]/{x}' },
    ])
    expect(run(r, 'GET', '/admin')).toBe('admin')
    expect(run(r, 'GET', '/a%2Fb')).toBe('slash')
    expect(run(r, 'GET', '/%5Bslug%5D/%7Bx%7D')).toBe('slug')
  })

  it('captures a parameter named __proto__ as an own property', () => {
    const r = build([{ id: 'proto', path: '/a/:__proto__' }])
    const result = r.match('GET', undefined, '/a/x', {})
    if (result === null || result.value === null) throw new Error('no match')
    expect(Object.getOwnPropertyDescriptor(result.params, '__proto__')?.value).toBe('x')
    expect(Object.getPrototypeOf(result.params)).toBe(Object.prototype)
  })
})

describe('LabelTable', () => {
  interface Item { readonly label: string; readonly n: number }

  it('finds labels inside a longer string, linear and hashed alike', () => {
    for (const count of [3, 300]) {
      const table = new LabelTable<Item>(false)
      for (let i = 0; i < count; i++) table.add({ label: `seg${i}`, n: i })
      table.add({ label: '', n: -1 })
      table.seal()
      expect(table.get('/x/seg2/y', 3, 7)?.n).toBe(2)
      expect(table.get('/x/seg2/y', 3, 6)).toBe(null)
      expect(table.get('/x//y', 3, 3)?.n).toBe(-1)
      expect(table.get('/x/SEG2/y', 3, 7)).toBe(null)
      expect(table.get('/x/seg99999/y', 3, 11)).toBe(null)
    }
  })

  it('ignores ASCII case when folded', () => {
    for (const count of [2, 50]) {
      const table = new LabelTable<Item>(true)
      for (let i = 0; i < count; i++) table.add({ label: `host${i}.example.com`, n: i })
      table.seal()
      expect(table.get('HOST1.EXAMPLE.COM:80', 0, 17)?.n).toBe(1)
      expect(table.get('host1.example.org', 0, 17)).toBe(null)
    }
  })

  it('refuses duplicate labels and upper-case labels in a folded table', () => {
    const table = new LabelTable<Item>(true)
    table.add({ label: 'a', n: 1 })
    expect(() => table.add({ label: 'a', n: 2 })).toThrow(/duplicate/)
    expect(() => table.add({ label: 'B', n: 2 })).toThrow(/lower-case/)
  })
})
