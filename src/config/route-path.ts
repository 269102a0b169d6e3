// The one parser of a route's `match.path`, shared by the config checks (check.ts, for files and etcd items
// alike) and the router (router/trie.ts), so that what `tollgate validate` accepts is what the router builds.
//
// Grammar: `/` then segments separated by `/`. A segment is
//   static    any text; `%XX` escapes allowed. Put in canonical form at parse time, the form requests are
//             matched in (src/http/canonical-path.ts): `%XX` of an unreserved character decoded (`%61` -> `a`),
//             other `%XX` upper-cased (`%2f` -> `%2F`), `"<>[]^`{|}` percent-encoded (`[` -> `%5B`).
//   `:name`   one non-empty segment; name of letters, digits and `_`, not starting with a digit, unique.
//   `*`       the rest of the path, possibly empty; only as the whole last segment. `%2A` is a literal `*`.
// An empty segment is allowed (`/` is one empty segment; `/a/` ends with one: a trailing slash counts).
//
// A path can also be valid and still never match, because it holds something no canonical request path
// contains: every request is canonicalized before matching, and a request that would contain it is refused
// with 400 instead (src/http/canonical-path.ts lists the rules; README.md "The canonical path" for users).
// Such a path is an error too, with what to write instead:
//   always      raw `?` (starts the query), raw `#`, raw space, control characters, raw non-ASCII, `\`;
//               malformed `%`, `%00`-`%1F`, `%7F`, `%5C`, `%C0`, `%C1`; a dot segment in any spelling, where
//               `%2F` also ends a segment (`/a/%2e%2E/b`, `/a/..%2Fb`).
//   by policy   `;` and `%3B` while paths.rejectSemicolon; `%2F` unless allowEncodedSlash (route or paths);
//               an empty segment before another segment while paths.mergeSlashes (no request has `//`).
// The first group makes parseRoutePath fail, as the router cannot hold such a segment; the second is
// policyProblem's, as the router does not know the policy and such a segment is harmless in its trie.

export type RouteSegment =
  | { readonly kind: 'static'; readonly label: string }
  | { readonly kind: 'param'; readonly name: string }

export interface RoutePath {
  /** Segments before the wildcard, if any; static labels in canonical form. */
  readonly segments: readonly RouteSegment[]
  /** Parameter names in path order; `*` last for a wildcard route. */
  readonly paramNames: readonly string[]
  readonly hasWildcard: boolean
}

/** The settings that decide which paths requests can have: `paths` and the route's `allowEncodedSlash`. */
export interface RoutePathPolicy {
  readonly mergeSlashes: boolean
  readonly rejectSemicolon: boolean
  readonly allowEncodedSlash: boolean
}

const NEVER = 'can never match:'
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const HEX_PAIR = /^[0-9A-Fa-f]{2}$/
const UNRESERVED_BYTE = /^[A-Za-z0-9\-._~]$/
const ENCODED_WHEN_RAW = '"<>[]^`{|}'

/** A parsed path, or why it is not a valid route path or can never match (whatever the policy). */
export function parseRoutePath(path: string): RoutePath | string {
  if (!path.startsWith('/')) return `must be a path starting with /, got ${JSON.stringify(path)}`
  const raw = rawCharacterProblem(path)
  if (raw !== null) return `${NEVER} ${raw}`
  const parts = path.slice(1).split('/')
  const segments: RouteSegment[] = []
  const paramNames: string[] = []
  let hasWildcard = false
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string
    if (part === '*') {
      if (i !== parts.length - 1) return `"*" must be the last segment of the path, got ${JSON.stringify(path)}`
      hasWildcard = true
      paramNames.push('*')
      break
    }
    if (part.includes('*')) return `"*" must be a whole segment (/api/*), got ${JSON.stringify(part)} in ${JSON.stringify(path)}; write %2A for a literal "*"`
    if (part.startsWith(':')) {
      const name = part.slice(1)
      if (!PARAM_NAME.test(name)) return `parameter ${JSON.stringify(part)} needs a name of letters, digits and _ (not starting with a digit), e.g. :id`
      if (paramNames.includes(name)) return `parameter ":${name}" appears twice in ${JSON.stringify(path)}`
      paramNames.push(name)
      segments.push({ kind: 'param', name })
      continue
    }
    const label = canonicalSegment(part)
    if (label.problem !== null) return `${NEVER} ${label.problem}`
    if (isDotSegment(label.text)) return `${NEVER} ${dotSegmentProblem(part, parts, i)}`
    segments.push({ kind: 'static', label: label.text })
  }
  return { segments, paramNames, hasWildcard }
}

/** Why a parsed path can never match under this policy (see the header comment), or null. */
export function policyProblem(parsed: RoutePath, path: string, policy: RoutePathPolicy): string | null {
  const { segments } = parsed
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as RouteSegment
    if (segment.kind !== 'static') continue
    const label = segment.label
    if (policy.mergeSlashes && label === '' && i < segments.length - 1) {
      return `${NEVER} repeated slashes are merged before matching (paths.mergeSlashes is true), so no request ` +
        `path contains "//"; write ${JSON.stringify(path.replace(/\/{2,}/g, '/'))}`
    }
    if (policy.rejectSemicolon && (label.includes(';') || label.includes('%3B'))) {
      return `${NEVER} requests with ";" or %3B in the path are refused with 400 while paths.rejectSemicolon is true ` +
        '(the default); remove it, or set paths.rejectSemicolon: false'
    }
    if (!policy.allowEncodedSlash && label.includes('%2F')) {
      return `${NEVER} requests with %2F (an encoded "/") in the path are refused with 400 unless the route allows it; ` +
        'set allowEncodedSlash: true on this route, or write "/"'
    }
  }
  return null
}

/** Everything wrong with a route path under this policy: a syntax error or why it can never match; or null. */
export function routePathProblem(path: string, policy: RoutePathPolicy): string | null {
  const parsed = parseRoutePath(path)
  return typeof parsed === 'string' ? parsed : policyProblem(parsed, path, policy)
}

/** A character no canonical path holds raw and that no escape hatch of the grammar explains, or null. */
function rawCharacterProblem(path: string): string | null {
  for (let i = 0; i < path.length; i++) {
    const ch = path[i] as string
    const c = ch.charCodeAt(0)
    if (ch === '?') {
      return `"?" starts the query string, and routes match the path only (the query passes unchanged); ` +
        `remove ${JSON.stringify(path.slice(i))}, or write %3F for a literal "?"`
    }
    if (ch === '#') return 'requests with "#" (a fragment) are refused with 400; write %23 for a literal "#"'
    if (ch === ' ') return 'requests with a raw space are refused with 400; write %20'
    if (c < 0x20 || c === 0x7f) {
      return `requests with control character U+${c.toString(16).toUpperCase().padStart(4, '0')} in the path are refused with 400, raw or encoded; remove it`
    }
    if (c >= 0x80) {
      return `requests with raw non-ASCII characters are refused with 400 (clients send them percent-encoded as UTF-8); write ${JSON.stringify(encodeNonAscii(path))}`
    }
    if (ch === '\\') return 'requests with "\\" or %5C in the path are refused with 400 (some servers read it as "/"); remove it'
  }
  return null
}

/** `/café` -> `/caf%C3%A9`: the spelling clients send. */
function encodeNonAscii(path: string): string {
  let out = ''
  for (const ch of path) {
    if (ch.charCodeAt(0) < 0x80) out += ch
    else for (const b of new TextEncoder().encode(ch)) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** The canonical spelling of one static segment (raw characters already checked), or why requests never hold it. */
function canonicalSegment(segment: string): { readonly text: string; readonly problem: string | null } {
  let text = ''
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i] as string
    const c = ch.charCodeAt(0)
    if (ch === '%') {
      const hex = segment.slice(i + 1, i + 3)
      if (!HEX_PAIR.test(hex)) {
        return { text, problem: `${JSON.stringify(segment.slice(i, i + 3))} is not % and two hex digits, and requests with a malformed escape are refused with 400; write %25 for a literal "%"` }
      }
      const b = Number.parseInt(hex, 16)
      const escape = `%${hex.toUpperCase()}`
      if (b < 0x20 || b === 0x7f) return { text, problem: `${escape} encodes a control character, and requests with one are refused with 400; remove it` }
      if (b === 0x5c) return { text, problem: 'requests with "\\" or %5C in the path are refused with 400 (some servers read it as "/"); remove it' }
      if (b === 0xc0 || b === 0xc1) return { text, problem: `${escape} occurs only in overlong UTF-8, and requests with it are refused with 400; write the character's shortest UTF-8 encoding` }
      const decoded = String.fromCharCode(b)
      text += UNRESERVED_BYTE.test(decoded) ? decoded : escape
      i += 2
    } else if (ENCODED_WHEN_RAW.includes(ch)) {
      text += `%${c.toString(16).toUpperCase()}`
    } else {
      text += ch
    }
  }
  return { text, problem: null }
}

/** `.` or `..` once unreserved escapes are decoded, `%2F` also ending a segment (as for requests). */
function isDotSegment(label: string): boolean {
  for (const part of label.split('%2F')) if (part === '.' || part === '..') return true
  return false
}

function dotSegmentProblem(raw: string, parts: readonly string[], index: number): string {
  const problem = `the segment ${JSON.stringify(raw)} is a dot segment, and requests with one are refused with 400`
  if (raw.includes('%2F') || raw.includes('%2f')) return `${problem} (%2F ends a segment for this check); remove it`
  // RFC 3986 §5.2.4: what a client resolving the path would ask for instead.
  const kept: string[] = []
  for (const [i, part] of parts.entries()) {
    const label = i === index ? raw : part
    if (isDotSegment(canonicalSegment(label).text)) {
      if (canonicalSegment(label).text === '..') kept.pop()
      if (i === parts.length - 1) kept.push('')
    } else kept.push(label)
  }
  return `${problem}; write ${JSON.stringify(`/${kept.join('/')}`)}`
}
