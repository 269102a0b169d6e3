// The one canonical path (README "The canonical path"; RFC 3986 §2–3, RFC 9112 §3.2).
//
// Every request target goes through canonicalizeTarget() exactly once, before matching. Matching, limits,
// every policy and the upstream all see the path it returns; the caller builds the upstream path from it by
// string concatenation (after `rewrite`), never with `new URL`, which would resolve `..` and `\` again.
//
// Policy, in the order a target meets it:
//
// Form of the target (RFC 9112 §3.2)
//   - origin-form `/path?query`: the normal case.
//   - `*` (asterisk-form): accepted only for OPTIONS; the result's path is `*` (the gateway answers 204).
//   - absolute-form `http://authority/path?query` (scheme `http` or `https`, any case): accepted only when
//     the authority equals the Host header, compared case-insensitively and byte for byte (so `h:80` is not
//     `h`); userinfo (`user@`) is refused. Its path is then canonicalized like an origin-form path; an empty
//     path becomes `/`. Anything else (authority-form, relative paths, other schemes) is refused.
//
// Refused with 400 anywhere in the target (path and query):
//   - `#` raw: a fragment never belongs in a request target (Envoy CVE-2021-32779). `%23` is data and stays.
//   - raw control characters (< 0x20, 0x7F), raw space and raw bytes >= 0x80 (llhttp already refuses most).
//
// Refused with 400 in the path:
//   - malformed `%` (truncated or not two hex digits).
//   - `%00`-`%1F` and `%7F` (NUL and control characters in encoded form).
//   - `\` raw and `%5C`: some upstreams (and `new URL`) read it as `/`.
//   - percent-encoded bytes >= 0x80 that are not well-formed UTF-8 (Unicode Table 3-7): overlong forms in
//     any length (`%C0%AE`, `%E0%80%AE`, `%F0%80%80%AE` are old spellings of `.`), surrogates (`%ED%A0%80`),
//     code points above U+10FFFF, stray or missing continuation bytes, a sequence cut by a raw character.
//     An upstream that decodes leniently would see `.`, `/` or `\` where the gateway saw data.
//   - `;` raw and `%3B` when policy.rejectSemicolon (servlet path parameters, `/admin;x=1/`).
//   - dot segments in any spelling: a segment that is `.` or `..` after unreserved characters are decoded
//     (`%2e` is unreserved, so `%2E%2e`, `.%2E` and `%2e.` are all `..`). For this check `%2F` also ends a
//     segment, so `..%2F` is refused too: an upstream that decodes `%2F` would otherwise see `../`.
//     `...`, `.hidden`, `b.` and `[...slug]` are ordinary segments.
//
// Rewritten (the canonical form), then matched and forwarded:
//   - `%XX` of an unreserved character (ALPHA DIGIT - . _ ~) is decoded: `/%61dmin` -> `/admin`.
//   - every other `%XX` keeps its encoding with upper-case hex: `%2f` -> `%2F`, `%c3%a9` -> `%C3%A9`.
//     Decoding happens once: `%25` stays `%25`, so a double-encoded `%252e` stays `%252e` (its `2e` is
//     plain text after `%25`, not an escape). An upstream that decodes twice is on its own.
//   - `%2F` stays encoded and sets hasEncodedSlash; the caller refuses it unless the matched route sets
//     allowEncodedSlash (then it is forwarded still encoded).
//   - raw characters that RFC 3986 never allows in a path (`"` `<` `>` `[` `]` `^` `` ` `` `{` `|` `}`)
//     are percent-encoded, so a raw and an encoded spelling match the same route: `/[x]` -> `/%5Bx%5D`.
//   - repeated raw slashes are merged when policy.mergeSlashes: `//a///b` -> `/a/b` (`%2F%2F` is not).
//   - nothing else changes: case is kept, sub-delims and `:` `@` stay as sent, encoded or not (RFC 3986
//     §2.2: encoding a reserved character changes its meaning), `%25` is not decoded.
// The query string (`?` and after) is passed on byte for byte.
//
// Hot path: one charCode scan, no regex; a target that needs no change is returned without copying.

export interface PathPolicy {
  readonly mergeSlashes: boolean
  readonly rejectSemicolon: boolean
}

export interface CanonicalTarget {
  /** The canonical path, or `*` for `OPTIONS *`. */
  readonly path: string
  /** `''` or `?...`, exactly as received. */
  readonly query: string
  /** The path contains `%2F`; refuse it unless the matched route allows encoded slashes. */
  readonly hasEncodedSlash: boolean
}

export interface PathRejection {
  readonly rejected: true
  readonly reason: string
}

function rejection(reason: string): PathRejection {
  return Object.freeze({ rejected: true as const, reason })
}

// Refusals are values, made once: nothing is allocated for a refused request.
export const REJECT_MALFORMED_PERCENT = rejection('malformed percent-encoding')
export const REJECT_CONTROL_CHAR = rejection('control character, space or NUL in the request target')
export const REJECT_NON_ASCII = rejection('raw non-ASCII byte in the request target')
export const REJECT_BACKSLASH = rejection('backslash in the path')
export const REJECT_OVERLONG_UTF8 = rejection('overlong or invalid UTF-8 in the percent-encoded path')
export const REJECT_DOT_SEGMENT = rejection('dot segment in the path')
export const REJECT_SEMICOLON = rejection('semicolon in the path')
export const REJECT_FRAGMENT = rejection("'#' in the request target")
export const REJECT_FOREIGN_AUTHORITY = rejection('absolute-form target whose authority is not the Host header')
export const REJECT_ASTERISK = rejection("'*' target with a method other than OPTIONS")
export const REJECT_NOT_ORIGIN_FORM = rejection('request target is neither origin-form nor absolute-form')

/** Every reason, for tests and documentation. */
export const PATH_REJECTIONS: readonly PathRejection[] = Object.freeze([
  REJECT_MALFORMED_PERCENT, REJECT_CONTROL_CHAR, REJECT_NON_ASCII, REJECT_BACKSLASH, REJECT_OVERLONG_UTF8,
  REJECT_DOT_SEGMENT, REJECT_SEMICOLON, REJECT_FRAGMENT, REJECT_FOREIGN_AUTHORITY, REJECT_ASTERISK,
  REJECT_NOT_ORIGIN_FORM,
])

const ASTERISK_TARGET: CanonicalTarget = Object.freeze({ path: '*', query: '', hasEncodedSlash: false })

export function isPathRejection(result: CanonicalTarget | PathRejection): result is PathRejection {
  return (result as PathRejection).rejected === true
}

// Character classes of the raw target, indexed by char code (< 128).
const PLAIN = 0
const SLASH = 1
const PERCENT = 2
const DOT = 3
const QUESTION = 4
const HASH = 5
const BACKSLASH = 6
const CONTROL = 7
const SEMICOLON = 8
const ENCODE = 9

const CLASS = new Uint8Array(128)
for (let c = 0; c < 0x21; c++) CLASS[c] = CONTROL // controls and space
CLASS[0x7f] = CONTROL
CLASS[0x2f] = SLASH
CLASS[0x25] = PERCENT
CLASS[0x2e] = DOT
CLASS[0x3f] = QUESTION
CLASS[0x23] = HASH
CLASS[0x5c] = BACKSLASH
CLASS[0x3b] = SEMICOLON
for (const ch of '"<>[]^`{|}') CLASS[ch.charCodeAt(0)] = ENCODE

// Hex digit values; 255 = not a hex digit. Indexed by char code (< 128).
const HEX = new Uint8Array(128).fill(255)
for (let d = 0; d < 10; d++) HEX[0x30 + d] = d
for (let d = 0; d < 6; d++) {
  HEX[0x41 + d] = 10 + d
  HEX[0x61 + d] = 10 + d
}

// RFC 3986 §2.3 unreserved: ALPHA DIGIT - . _ ~
const UNRESERVED = new Uint8Array(256)
for (let c = 0x30; c <= 0x39; c++) UNRESERVED[c] = 1
for (let c = 0x41; c <= 0x5a; c++) UNRESERVED[c] = 1
for (let c = 0x61; c <= 0x7a; c++) UNRESERVED[c] = 1
for (const ch of '-._~') UNRESERVED[ch.charCodeAt(0)] = 1

// `%XX` with upper-case hex, for every byte.
const ESCAPED: readonly string[] = Array.from({ length: 256 }, (_, b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
const DECODED: readonly string[] = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b))

/** Canonicalize a request target (`req.url` as received) or say why it is refused. See the header comment. */
export function canonicalizeTarget(
  target: string,
  method: string,
  host: string | undefined,
  policy: PathPolicy,
): CanonicalTarget | PathRejection {
  const first = target.charCodeAt(0) // NaN for ''
  if (first === 0x2f) return canonicalizePath(target, 0, policy)
  if (first === 0x2a && target.length === 1) return method === 'OPTIONS' ? ASTERISK_TARGET : REJECT_ASTERISK
  const start = absoluteFormPathStart(target)
  if (start < 0) return REJECT_NOT_ORIGIN_FORM
  const authorityStart = target.charCodeAt(4) === 0x3a ? 7 : 8 // 'http://' or 'https://'
  if (!isSameAuthority(target, authorityStart, start, host)) return REJECT_FOREIGN_AUTHORITY
  return canonicalizePath(target, start, policy)
}

/** For `http://authority...` or `https://authority...`: the index where the path (or query) starts; else -1. */
function absoluteFormPathStart(target: string): number {
  // 'h' 't' 't' 'p', any case, then '://' or 's://'.
  if ((target.charCodeAt(0) | 0x20) !== 0x68 || (target.charCodeAt(1) | 0x20) !== 0x74 ||
      (target.charCodeAt(2) | 0x20) !== 0x74 || (target.charCodeAt(3) | 0x20) !== 0x70) return -1
  let i = 4
  if ((target.charCodeAt(i) | 0x20) === 0x73) i++
  if (target.charCodeAt(i) !== 0x3a || target.charCodeAt(i + 1) !== 0x2f || target.charCodeAt(i + 2) !== 0x2f) return -1
  i += 3
  const len = target.length
  while (i < len) {
    const c = target.charCodeAt(i)
    if (c === 0x2f || c === 0x3f || c === 0x23) break
    i++
  }
  return i
}

function isSameAuthority(target: string, start: number, end: number, host: string | undefined): boolean {
  if (host === undefined || end === start || end - start !== host.length) return false
  for (let i = start; i < end; i++) {
    const a = target.charCodeAt(i)
    if (a === 0x40) return false // userinfo
    const b = host.charCodeAt(i - start)
    if (a !== b && (lowerAscii(a) !== lowerAscii(b))) return false
  }
  return true
}

function lowerAscii(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c
}

function isDotSegment(segmentLength: number, dots: number): boolean {
  return segmentLength !== 0 && segmentLength === dots && segmentLength <= 2
}

// Hot path: one scan of the path, then of the query. `out` is built only once something changes;
// target[copied, i) is the part not yet appended to it.
function canonicalizePath(target: string, start: number, policy: PathPolicy): CanonicalTarget | PathRejection {
  const len = target.length
  const mergeSlashes = policy.mergeSlashes
  const rejectSemicolon = policy.rejectSemicolon
  let out = ''
  let isChanged = false
  let copied = start
  let hasEncodedSlash = false
  let segmentLength = 0 // characters of the current segment, after decoding unreserved ones
  let dots = 0          // how many of them are '.'
  let isAfterSlash = false
  // UTF-8 of the percent-encoded bytes: continuation bytes still due, and the range of the next one.
  let utf8Need = 0
  let utf8Low = 0x80
  let utf8High = 0xbf
  let i = start
  for (; i < len; i++) {
    const c = target.charCodeAt(i)
    if (c >= 0x80) return REJECT_NON_ASCII
    if (utf8Need !== 0 && c !== 0x25) return REJECT_OVERLONG_UTF8 // a sequence cut short
    switch (CLASS[c]) {
      case PLAIN:
        segmentLength++
        isAfterSlash = false
        continue
      case DOT:
        segmentLength++
        dots++
        isAfterSlash = false
        continue
      case SLASH:
        if (isDotSegment(segmentLength, dots)) return REJECT_DOT_SEGMENT
        if (isAfterSlash && mergeSlashes) {
          out += target.slice(copied, i)
          copied = i + 1
          isChanged = true
          continue
        }
        isAfterSlash = true
        segmentLength = 0
        dots = 0
        continue
      case PERCENT: {
        if (i + 2 >= len) return REJECT_MALFORMED_PERCENT
        const c1 = target.charCodeAt(i + 1)
        const c2 = target.charCodeAt(i + 2)
        const h1 = c1 < 0x80 ? HEX[c1] ?? 255 : 255
        const h2 = c2 < 0x80 ? HEX[c2] ?? 255 : 255
        if (h1 === 255 || h2 === 255) return REJECT_MALFORMED_PERCENT
        const b = (h1 << 4) | h2
        if (b < 0x20 || b === 0x7f) return REJECT_CONTROL_CHAR
        if (b === 0x5c) return REJECT_BACKSLASH
        if (b === 0x3b && rejectSemicolon) return REJECT_SEMICOLON
        if (utf8Need !== 0) {
          if (b < utf8Low || b > utf8High) return REJECT_OVERLONG_UTF8
          utf8Need--
          utf8Low = 0x80
          utf8High = 0xbf
        } else if (b >= 0x80) {
          // Lead byte (Unicode Table 3-7). C0, C1 and F5-FF never occur; E0, ED, F0 and F4 narrow the next
          // byte to exclude overlong forms, surrogates and code points above U+10FFFF.
          if (b < 0xc2 || b > 0xf4) return REJECT_OVERLONG_UTF8
          utf8Need = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3
          if (b === 0xe0) utf8Low = 0xa0
          else if (b === 0xed) utf8High = 0x9f
          else if (b === 0xf0) utf8Low = 0x90
          else if (b === 0xf4) utf8High = 0x8f
        }
        isAfterSlash = false
        if (UNRESERVED[b] === 1) {
          out += target.slice(copied, i) + DECODED[b]
          copied = i + 3
          isChanged = true
          segmentLength++
          if (b === 0x2e) dots++
        } else {
          if (b === 0x2f) {
            // An encoded slash ends a segment for the dot-segment check (see the header comment).
            if (isDotSegment(segmentLength, dots)) return REJECT_DOT_SEGMENT
            hasEncodedSlash = true
            segmentLength = 0
            dots = 0
          } else {
            segmentLength++
          }
          if (c1 >= 0x61 || c2 >= 0x61) { // lower-case hex digit
            out += target.slice(copied, i) + ESCAPED[b]
            copied = i + 3
            isChanged = true
          }
        }
        i += 2
        continue
      }
      case QUESTION:
        break
      case HASH:
        return REJECT_FRAGMENT
      case BACKSLASH:
        return REJECT_BACKSLASH
      case CONTROL:
        return REJECT_CONTROL_CHAR
      case SEMICOLON:
        if (rejectSemicolon) return REJECT_SEMICOLON
        segmentLength++
        isAfterSlash = false
        continue
      default: // ENCODE
        out += target.slice(copied, i) + ESCAPED[c]
        copied = i + 1
        isChanged = true
        segmentLength++
        isAfterSlash = false
        continue
    }
    break // '?'
  }
  if (utf8Need !== 0) return REJECT_OVERLONG_UTF8
  if (isDotSegment(segmentLength, dots)) return REJECT_DOT_SEGMENT

  const queryStart = i
  for (let j = queryStart + 1; j < len; j++) {
    const c = target.charCodeAt(j)
    if (c === 0x23) return REJECT_FRAGMENT
    if (c <= 0x20 || c === 0x7f) return REJECT_CONTROL_CHAR
    if (c >= 0x80) return REJECT_NON_ASCII
  }

  let path: string
  if (isChanged) path = out + target.slice(copied, queryStart)
  else if (start === 0 && queryStart === len) path = target
  else path = target.slice(start, queryStart)
  if (path === '') path = '/' // absolute-form with an empty path
  const query = queryStart === len ? '' : target.slice(queryStart)
  return { path, query, hasEncodedSlash }
}
