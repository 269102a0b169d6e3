import { describe, expect, it } from 'vitest'
import { parseRoutePath, routePathProblem, type RoutePath, type RoutePathPolicy } from '../../src/config/route-path.js'
import { canonicalizeTarget, isPathRejection } from '../../src/http/canonical-path.js'

const DEFAULTS: RoutePathPolicy = { mergeSlashes: true, rejectSemicolon: true, allowEncodedSlash: false }
const LENIENT: RoutePathPolicy = { mergeSlashes: false, rejectSemicolon: false, allowEncodedSlash: true }

/** The canonical path a request for exactly this text gets, or null when it is refused with 400. */
function requestPath(path: string, policy: RoutePathPolicy): string | null {
  const result = canonicalizeTarget(path, 'GET', 'h', policy)
  if (isPathRejection(result)) return null
  if (result.hasEncodedSlash && !policy.allowEncodedSlash) return null
  return result.path
}

function parsed(path: string): RoutePath {
  const result = parseRoutePath(path)
  if (typeof result === 'string') throw new Error(result)
  return result
}

describe('route path grammar', () => {
  it.each([
    ['no leading slash', 'a/b', 'must be a path starting with /, got "a/b"'],
    ['a wildcard before the end', '/a/*/b', '"*" must be the last segment of the path, got "/a/*/b"'],
    ['a star inside a segment', '/files/*.jpg', '"*" must be a whole segment (/api/*), got "*.jpg" in "/files/*.jpg"; write %2A for a literal "*"'],
    ['an empty parameter name', '/a/:', 'parameter ":" needs a name of letters, digits and _ (not starting with a digit), e.g. :id'],
    ['a parameter name with a dot', '/a/:id.json', 'parameter ":id.json" needs a name of letters, digits and _ (not starting with a digit), e.g. :id'],
    ['a parameter name starting with a digit', '/a/:1st', 'parameter ":1st" needs a name of letters, digits and _ (not starting with a digit), e.g. :id'],
    ['a duplicate parameter name', '/a/:id/:id', 'parameter ":id" appears twice in "/a/:id/:id"'],
  ])('refuses %s (%j)', (_name, path, message) => {
    expect(routePathProblem(path, LENIENT)).toBe(message)
  })

  it('puts static segments in the canonical form requests are matched in', () => {
    expect(parsed('/%61dmin/[x]/a%2fb/%c3%a9/:id/*')).toEqual({
      segments: [
        { kind: 'static', label: 'admin' },
        { kind: 'static', label: '%5Bx%5D' },
        { kind: 'static', label: 'a%2Fb' },
        { kind: 'static', label: '%C3%A9' },
        { kind: 'param', name: 'id' },
      ],
      paramNames: ['id', '*'],
      hasWildcard: true,
    })
    expect(parsed('/')).toEqual({ segments: [{ kind: 'static', label: '' }], paramNames: [], hasWildcard: false })
    expect(parsed('/*')).toEqual({ segments: [], paramNames: ['*'], hasWildcard: true })
  })
})

describe('route paths no request can reach', () => {
  // [path, what the message must say]: whatever the policy, every request holding it is refused or changed.
  const never: Array<[string, RegExp]> = [
    ['/a/../b', /the segment "\.\." is a dot segment, and requests with one are refused with 400; write "\/b"$/],
    ['/a/./b', /the segment "\." is a dot segment.*; write "\/a\/b"$/],
    ['/a/..', /dot segment.*; write "\/"$/],
    ['/a/%2e%2E/b', /the segment "%2e%2E" is a dot segment.*; write "\/b"$/],
    ['/a/.%2E', /dot segment/],
    ['/a/..%2Fb', /the segment "\.\.%2Fb" is a dot segment, .*%2F ends a segment/],
    ['/a%2F./b', /dot segment.*%2F ends a segment/],
    ['/a?x=1', /"\?" starts the query string, and routes match the path only .*; remove "\?x=1", or write %3F for a literal "\?"$/],
    ['/caf\u00e9', /raw non-ASCII characters are refused with 400 .*; write "\/caf%C3%A9"$/],
    ['/\u{1F600}/:id', /write "\/%F0%9F%98%80\/:id"$/],
    ['/a#b', /"#" \(a fragment\) .*; write %23 for a literal "#"$/],
    ['/a b', /raw space .*; write %20$/],
    ['/a\tb', /control character U\+0009/],
    ['/a\u007f', /control character U\+007F/],
    ['/a\\b', /"\\" or %5C .* refused with 400/],
    ['/a%5c', /"\\" or %5C .* refused with 400/],
    ['/a%zz', /"%zz" is not % and two hex digits.*; write %25 for a literal "%"$/],
    ['/a%2', /"%2" is not % and two hex digits/],
    ['/a%00', /%00 encodes a control character/],
    ['/a%1f', /%1F encodes a control character/],
    ['/a%7F', /%7F encodes a control character/],
    ['/a/%C0%AE', /%C0 occurs only in overlong UTF-8/],
  ]

  it.each(never)('refuses %j under any policy', (path, message) => {
    for (const policy of [DEFAULTS, LENIENT]) {
      const problem = routePathProblem(path, policy)
      expect(problem).toMatch(/^can never match: /)
      expect(problem).toMatch(message)
    }
  })

  // The reason for the rule: a request for the path's own text never arrives at the router with that text.
  it.each(never)('agrees with the canonical path: a request for %j is refused or changed', (path) => {
    expect(requestPath(path, LENIENT)).not.toBe(path)
  })

  const byPolicy: Array<[string, Partial<RoutePathPolicy>, RegExp]> = [
    ['/a//b', { mergeSlashes: false }, /repeated slashes are merged .*; write "\/a\/b"$/],
    ['/a//:id', { mergeSlashes: false }, /no request path contains "\/\/"/],
    ['//a', { mergeSlashes: false }, /write "\/a"$/],
    ['/a;b', { rejectSemicolon: false }, /";" or %3B .* paths\.rejectSemicolon is true/],
    ['/a/%3bx', { rejectSemicolon: false }, /";" or %3B/],
    ['/a/%2F/b', { allowEncodedSlash: true }, /%2F \(an encoded "\/"\) .*set allowEncodedSlash: true on this route/],
    ['/a%2fb/*', { allowEncodedSlash: true }, /%2F/],
  ]

  it.each(byPolicy)('refuses %j by default, and accepts it with %j', (path, fix, message) => {
    expect(routePathProblem(path, DEFAULTS)).toMatch(message)
    expect(requestPath(path, DEFAULTS)).not.toBe(path)
    const fixed = { ...DEFAULTS, ...fix }
    expect(routePathProblem(path, fixed)).toBeNull()
    expect(requestPath(path.replace(/:id|\*/, 'x'), fixed)).toBe(path.replace(/:id|\*/, 'x').replace(/%2f|%3b/g, (e) => e.toUpperCase()))
  })

  const reachable = [
    '/', '/a', '/a/', '/a/:id', '/a/*', '/*', '/a//*' /* matches /a/ only */, '/a/%5Bslug%5D', '/[slug]', '/v1/things:batch',
    "/a!$&'()+,=@", '/a/:__proto__', '/caf%C3%A9', '/a%20b', '/a%23b', '/a%3Fb', '/a/...', '/a/.hidden', '/a/b.',
    '/a%25', '/a%252e%252e', '/%2A',
  ]
  it.each(reachable)('accepts %j with the default policy, and a request for it reaches its canonical form', (path) => {
    expect(routePathProblem(path, DEFAULTS)).toBeNull()
    const p = parsed(path)
    if (p.segments.some((s) => s.kind === 'param')) return
    // The request for the path itself (the wildcard's rest empty) arrives as the route's canonical form.
    const canonical = `/${p.segments.map((s) => (s.kind === 'static' ? s.label : '')).join('/')}`
    expect(requestPath(path.replace(/\/\*$/, '') || '/', DEFAULTS)).toBe(canonical)
  })
})
