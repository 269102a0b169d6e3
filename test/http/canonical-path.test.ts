import { describe, expect, it } from 'vitest'
import {
  canonicalizeTarget, isPathRejection, PATH_REJECTIONS, REJECT_ASTERISK, REJECT_BACKSLASH, REJECT_CONTROL_CHAR,
  REJECT_DOT_SEGMENT, REJECT_FOREIGN_AUTHORITY, REJECT_FRAGMENT, REJECT_MALFORMED_PERCENT, REJECT_NON_ASCII,
  REJECT_NOT_ORIGIN_FORM, REJECT_OVERLONG_UTF8, REJECT_SEMICOLON,
  type PathPolicy, type PathRejection,
} from '../../src/http/canonical-path.js'

const strict: PathPolicy = { mergeSlashes: true, rejectSemicolon: true }
const lenient: PathPolicy = { mergeSlashes: false, rejectSemicolon: false }

function canonical(target: string, policy: PathPolicy = strict, method = 'GET') {
  return canonicalizeTarget(target, method, 'api.example.com', policy)
}

describe('canonicalizeTarget refuses', () => {
  const cases: Array<[string, string, PathRejection]> = [
    ['a truncated escape', '/a%2', REJECT_MALFORMED_PERCENT],
    ['a lone percent sign', '/a%', REJECT_MALFORMED_PERCENT],
    ['an escape with a non-hex digit', '/a%2g', REJECT_MALFORMED_PERCENT],
    ['an escape with non-hex letters', '/a%zz/b', REJECT_MALFORMED_PERCENT],
    ['an escape cut by the query', '/a%4?x', REJECT_MALFORMED_PERCENT],
    ['an encoded NUL', '/a%00b', REJECT_CONTROL_CHAR],
    ['an encoded control character', '/a%0Ab', REJECT_CONTROL_CHAR],
    ['an encoded unit separator', '/a%1fb', REJECT_CONTROL_CHAR],
    ['an encoded DEL', '/a%7F', REJECT_CONTROL_CHAR],
    ['a raw control character', '/a\x01b', REJECT_CONTROL_CHAR],
    ['a raw tab', '/a\tb', REJECT_CONTROL_CHAR],
    ['a raw DEL', '/a\x7f', REJECT_CONTROL_CHAR],
    ['a raw space', '/a b', REJECT_CONTROL_CHAR],
    ['a raw control character in the query', '/a?x=\x00', REJECT_CONTROL_CHAR],
    ['a raw non-ASCII character', '/caf\u00e9', REJECT_NON_ASCII],
    ['a raw non-ASCII character in the query', '/a?q=\u00e9', REJECT_NON_ASCII],
    ['a raw backslash', '/a\\b', REJECT_BACKSLASH],
    ['a backslash traversal', '/public\\..\\admin', REJECT_BACKSLASH],
    ['an encoded backslash', '/a%5Cb', REJECT_BACKSLASH],
    ['an encoded backslash in lower case', '/a%5cb', REJECT_BACKSLASH],
    ['an overlong dot', '/a/%C0%AE%C0%AE/b', REJECT_OVERLONG_UTF8],
    ['an overlong backslash', '/a%c1%9cb', REJECT_OVERLONG_UTF8],
    ['a raw dot-dot segment', '/public/../admin', REJECT_DOT_SEGMENT],
    ['a raw dot segment', '/a/./b', REJECT_DOT_SEGMENT],
    ['a dot-dot segment at the end', '/a/..', REJECT_DOT_SEGMENT],
    ['a dot segment at the end', '/a/.', REJECT_DOT_SEGMENT],
    ['a dot segment at the start', '/./a', REJECT_DOT_SEGMENT],
    ['a dot segment before the query', '/a/..?x=1', REJECT_DOT_SEGMENT],
    ['an encoded dot-dot segment', '/public/%2e%2e/admin', REJECT_DOT_SEGMENT],
    ['an upper-case encoded dot-dot segment', '/public/%2E%2E/admin', REJECT_DOT_SEGMENT],
    ['a mixed-case encoded dot-dot segment', '/public/%2E%2e/admin', REJECT_DOT_SEGMENT],
    ['a half-encoded dot-dot segment', '/public/.%2E/admin', REJECT_DOT_SEGMENT],
    ['a half-encoded dot-dot segment, other half', '/public/%2e./admin', REJECT_DOT_SEGMENT],
    ['an encoded dot segment', '/a/%2e/b', REJECT_DOT_SEGMENT],
    ['reply-from GHSA-2q7r-29rg-6m5h', '/ho/%2E%2E/hi', REJECT_DOT_SEGMENT],
    ['a dot-dot before an encoded slash', '/public/..%2fadmin', REJECT_DOT_SEGMENT],
    ['a dot-dot after an encoded slash', '/public/a%2F..', REJECT_DOT_SEGMENT],
    ['Traefik StripPrefix case: an encoded dot segment after merging', '/api%2F%2e/admin', REJECT_DOT_SEGMENT],
    ['a raw semicolon', '/admin;x=1/y', REJECT_SEMICOLON],
    ['an encoded semicolon', '/admin%3bx=1', REJECT_SEMICOLON],
    ['a fragment', '/a#b', REJECT_FRAGMENT],
    ['a fragment after the query', '/a?x=1#b', REJECT_FRAGMENT],
    ['a fragment-only path suffix', '/#', REJECT_FRAGMENT],
    ['an absolute-form target for another host', 'http://internal-vhost/admin', REJECT_FOREIGN_AUTHORITY],
    ['an absolute-form target with a different port', 'http://api.example.com:8080/a', REJECT_FOREIGN_AUTHORITY],
    ['an absolute-form target with userinfo', 'http://u@api.example.com/a', REJECT_FOREIGN_AUTHORITY],
    ['an absolute-form target with an empty authority', 'http:///a', REJECT_FOREIGN_AUTHORITY],
    ['an authority-form target', 'api.example.com:443', REJECT_NOT_ORIGIN_FORM],
    ['a relative target', 'a/b', REJECT_NOT_ORIGIN_FORM],
    ['an empty target', '', REJECT_NOT_ORIGIN_FORM],
    ['another scheme', 'ftp://api.example.com/a', REJECT_NOT_ORIGIN_FORM],
    ['a scheme without slashes', 'http:/a', REJECT_NOT_ORIGIN_FORM],
    ['a star followed by more', '*/a', REJECT_NOT_ORIGIN_FORM],
  ]
  it.each(cases)('%s (%j)', (_name, target, reason) => {
    expect(canonical(target)).toBe(reason)
  })

  it('refuses an absolute-form target when the request has no Host header', () => {
    expect(canonicalizeTarget('http://api.example.com/a', 'GET', undefined, strict)).toBe(REJECT_FOREIGN_AUTHORITY)
  })

  it('refuses an absolute-form target whose path is refused', () => {
    expect(canonical('http://api.example.com/a/../b')).toBe(REJECT_DOT_SEGMENT)
  })

  it("refuses '*' for every method but OPTIONS", () => {
    for (const method of ['GET', 'HEAD', 'POST', 'DELETE']) expect(canonical('*', strict, method)).toBe(REJECT_ASTERISK)
  })

  it('refuses with frozen values, each with its own reason', () => {
    for (const r of PATH_REJECTIONS) {
      expect(Object.isFrozen(r)).toBe(true)
      expect(r.rejected).toBe(true)
    }
    expect(new Set(PATH_REJECTIONS.map((r) => r.reason)).size).toBe(PATH_REJECTIONS.length)
  })
})

describe('canonicalizeTarget accepts and normalizes', () => {
  const cases: Array<[string, string, PathPolicy, string, string, boolean]> = [
    // name, target, policy, path, query, hasEncodedSlash
    ['a plain path', '/api/v1/users/42', strict, '/api/v1/users/42', '', false],
    ['the root', '/', strict, '/', '', false],
    ['encoded unreserved letters', '/%61dmin/x', strict, '/admin/x', '', false],
    ['every unreserved kind', '/%41%7a%30%2D%5F%7E', strict, '/Az0-_~', '', false],
    ['an encoded dot inside a segment', '/a%2eb', strict, '/a.b', '', false],
    ['lower-case hex upper-cased', '/caf%c3%a9', strict, '/caf%C3%A9', '', false],
    ['an encoded slash kept, upper-cased', '/a%2fb', strict, '/a%2Fb', '', true],
    ['an encoded slash kept', '/a%2Fb', strict, '/a%2Fb', '', true],
    ['encoded slashes not merged', '/a%2F%2Fb', strict, '/a%2F%2Fb', '', true],
    ['an encoded percent kept', '/a%25b', strict, '/a%25b', '', false],
    ['a double-encoded dot kept as is (decoded once)', '/public/%252e%252e/admin', strict, '/public/%252e%252e/admin', '', false],
    ['a double-encoded slash kept as is', '/a%252fb', strict, '/a%252fb', '', false],
    ['an encoded hash kept', '/a%23b', strict, '/a%23b', '', false],
    ['an encoded question mark kept', '/a%3fb', strict, '/a%3Fb', '', false],
    ['repeated slashes merged', '//a///b', strict, '/a/b', '', false],
    ['a leading double slash merged', '//evil.example/x', strict, '/evil.example/x', '', false],
    ['a trailing double slash merged', '/a//', strict, '/a/', '', false],
    ['repeated slashes kept when mergeSlashes is off', '//a///b', lenient, '//a///b', '', false],
    ['a semicolon kept when rejectSemicolon is off', '/a;b=1', lenient, '/a;b=1', '', false],
    ['an encoded semicolon kept when rejectSemicolon is off', '/a%3bb', lenient, '/a%3Bb', '', false],
    ['the query untouched', '/a?x=../../a', strict, '/a', '?x=../../a', false],
    ['the query untouched, escapes and all', '/%61?q=%2e%2E%00%zz;\\//', strict, '/a', '?q=%2e%2E%00%zz;\\//', false],
    ['an empty query', '/a?', strict, '/a', '?', false],
    ['raw brackets encoded', '/[...slug]', strict, '/%5B...slug%5D', '', false],
    ['other raw characters RFC 3986 forbids encoded', '/a"<>^`{|}', strict, '/a%22%3C%3E%5E%60%7B%7C%7D', '', false],
    ['sub-delims, colon and at kept', "/a!$&'()*+,=:@b", strict, "/a!$&'()*+,=:@b", '', false],
    ['three dots as a segment', '/a/.../b', strict, '/a/.../b', '', false],
    ['dots inside a segment', '/a/...b', strict, '/a/...b', '', false],
    ['a hidden file', '/a/.hidden', strict, '/a/.hidden', '', false],
    ['a trailing dot in a name', '/a/b.', strict, '/a/b.', '', false],
    ['an encoded triple dot', '/a/%2e%2e%2e', strict, '/a/...', '', false],
    ['case kept', '/ADMIN/x', strict, '/ADMIN/x', '', false],
    ['an absolute-form target for this host', 'http://api.example.com/a/b?x=1', strict, '/a/b', '?x=1', false],
    ['an absolute-form target, host case ignored', 'HTTP://API.Example.com/a', strict, '/a', '', false],
    ['an https absolute-form target', 'https://api.example.com/a', strict, '/a', '', false],
    ['an absolute-form target with an empty path', 'http://api.example.com', strict, '/', '', false],
    ['an absolute-form target with only a query', 'http://api.example.com?x=1', strict, '/', '?x=1', false],
    ['an absolute-form target, canonicalized', 'http://api.example.com//%61/%2f', strict, '/a/%2F', '', true],
  ]
  it.each(cases)('%s (%j)', (_name, target, policy, path, query, hasEncodedSlash) => {
    expect(canonical(target, policy)).toEqual({ path, query, hasEncodedSlash })
  })

  it("answers 'OPTIONS *' with the path '*'", () => {
    expect(canonical('*', strict, 'OPTIONS')).toEqual({ path: '*', query: '', hasEncodedSlash: false })
  })

  it('compares an absolute-form authority with the Host header port included', () => {
    expect(canonicalizeTarget('http://a.example:8080/x', 'GET', 'A.example:8080', strict)).toEqual({ path: '/x', query: '', hasEncodedSlash: false })
  })

  it('returns the target itself when it needs no change', () => {
    const target = '/api/v1/users/12345/orders'
    const result = canonical(target)
    expect(isPathRejection(result)).toBe(false)
    if (!isPathRejection(result)) expect(result.path).toBe(target)
  })

  it('is idempotent: a canonical path canonicalizes to itself', () => {
    for (const target of ['/%61dmin//x', '/caf%c3%a9/%2f', '/[a]/{b}', '/a/.../%7e']) {
      const once = canonical(target)
      if (isPathRejection(once)) throw new Error(`refused ${target}`)
      expect(canonical(once.path)).toEqual(once)
    }
  })
})
