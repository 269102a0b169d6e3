// Router: host index, then the path trie, then methods and headers (README.md "Matching").
//
// Decisions the README leaves open:
// - Host levels, most specific first: the exact host (case-insensitive; the request's port and one
//   trailing dot are ignored), then `*.example.com` wildcards, longest suffix first (a wildcard matches
//   `a.example.com` and `a.b.example.com`, never `example.com`), then routes without a host. A level is a
//   match only if one of its routes accepts the request (path, method and headers); otherwise the next,
//   less specific level is tried. So host levels backtrack exactly like trie branches do, and a host's
//   routes never hide the host-less routes for paths or methods they do not serve.
// - Within a level the trie decides (trie.ts): static > `:param` > `*` at each segment, with
//   backtracking, so a static branch whose routes all refuse the method does not hide a param branch
//   that accepts it.
// - At one endpoint (routes with the same path): routes whose methods include the request method (GET
//   includes HEAD; no methods = any) and whose headers all match (names case-insensitive, values exact;
//   a header sent as several values never matches) compete; higher priority wins, then the earlier entry.
// - 405: no route accepts the request, but some route matched host and path with its headers holding.
//   `allow` lists, sorted and joined with ", ", the methods of every such route (HEAD added next to GET).
//   Routes that fail only on headers are invisible: their requests get null (404).
// - Route paths: parsed by config/route-path.ts, the parser the config checks use, so static segments are
//   canonicalized like requests (`/%61dmin` is `/admin`). A path it refuses (a syntax error, or a segment
//   no canonical request contains, such as a dot segment) throws: the config checks report it first
//   (config/check.ts), for files and etcd items alike, so a table is never built from one.
//
// Build everything once per config version; match() only reads and allocates just the params object
// (routes without parameters return a result made at build time).

import { parseRoutePath } from '../config/route-path.js'
import { LabelTable, SegmentTrie, type EndpointPicker, type EndpointVisitor } from './trie.js'

export interface RouteSpec {
  readonly id: string
  readonly path: string
  readonly methods: readonly string[] | null // null = any
  readonly host: string | null
  readonly headers: Readonly<Record<string, string>> | null
  readonly priority: number
}

/**
 * A route: its value and parameters (canonical segment text, still percent-encoded; the wildcard rest,
 * without its leading '/', under `*`; treat as read-only: results of routes without parameters are
 * shared), or a 405 with its Allow value, or null (404).
 */
export type MatchResult<T> =
  | { readonly value: T; readonly params: Record<string, string> }
  | { readonly value: null; readonly allow: string }
  | null

type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>

const EMPTY_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>
const NO_HEADERS: RequestHeaders = Object.freeze({})
const NONE: readonly string[] = Object.freeze([])

class Candidate<T> {
  readonly value: T
  readonly priority: number
  readonly order: number
  /** Accepted methods (HEAD added next to GET), or null for any method. */
  readonly methods: ReadonlySet<string> | null
  readonly headerNames: readonly string[]
  readonly headerValues: readonly string[]
  readonly paramNames: readonly string[]
  /** The result of a route without parameters, made once. */
  readonly fixedResult: MatchResult<T>
  /** A parameter is named `__proto__`: a plain assignment would not create it. */
  readonly hasProtoParam: boolean

  constructor(value: T, spec: RouteSpec, order: number, paramNames: readonly string[]) {
    this.value = value
    this.priority = spec.priority
    this.order = order
    if (spec.methods === null) this.methods = null
    else {
      const methods = new Set(spec.methods.map((m) => m.toUpperCase()))
      if (methods.has('GET')) methods.add('HEAD') // RFC 9110 §9.3.2
      this.methods = methods
    }
    const headers = Object.entries(spec.headers ?? {})
    this.headerNames = headers.length === 0 ? NONE : headers.map(([name]) => name.toLowerCase())
    this.headerValues = headers.length === 0 ? NONE : headers.map(([, value]) => value)
    this.paramNames = paramNames
    this.fixedResult = paramNames.length === 0 ? Object.freeze({ value, params: EMPTY_PARAMS }) : null
    this.hasProtoParam = paramNames.includes('__proto__')
  }

  hasHeaders(headers: RequestHeaders): boolean {
    const names = this.headerNames
    for (let i = 0; i < names.length; i++) {
      if (headers[names[i] as string] !== this.headerValues[i]) return false
    }
    return true
  }
}

/** The routes that share one path (a trie terminal or wildcard). */
class Endpoint<T> {
  candidates: Array<Candidate<T>> = []
  hasHeaderConditions = false
  /**
   * Indexed by method id (Router#methodIds): the candidates accepting that method, any-method ones
   * included, in order of preference; id 0 stands for every method no route names. Only built when
   * some candidate has header conditions; otherwise the first of each list decides (firstByMethod).
   */
  byMethod: ReadonlyArray<ReadonlyArray<Candidate<T>>> = []
  firstByMethod: ReadonlyArray<Candidate<T> | null> = []
  /** The 405 answer when this endpoint alone matched and no header condition applies (shared). */
  methodNotAllowed: MatchResult<T> = null

  seal(methodIds: ReadonlyMap<string, number>, answers405: Map<string, MatchResult<T>>): void {
    const candidates = this.candidates
    candidates.sort((a, b) => b.priority - a.priority || a.order - b.order)
    this.hasHeaderConditions = candidates.some((c) => c.headerNames.length !== 0)
    const accepts = (c: Candidate<T>, m: string | null): boolean => c.methods === null || (m !== null && c.methods.has(m))
    const first: Array<Candidate<T> | null> = [candidates.find((c) => accepts(c, null)) ?? null]
    for (const [m, id] of methodIds) first[id] = candidates.find((c) => accepts(c, m)) ?? null
    this.firstByMethod = first
    if (this.hasHeaderConditions) {
      const byMethod: Array<ReadonlyArray<Candidate<T>>> = [candidates.filter((c) => accepts(c, null))]
      for (const [m, id] of methodIds) byMethod[id] = candidates.filter((c) => accepts(c, m))
      this.byMethod = byMethod
    }
    const named = new Set<string>()
    for (const c of candidates) for (const m of c.methods ?? []) named.add(m)
    const allow = joinMethods(named)
    let answer = answers405.get(allow)
    if (answer === undefined) answers405.set(allow, answer = Object.freeze({ value: null, allow }))
    this.methodNotAllowed = answer
  }
}

function joinMethods(methods: Iterable<string>): string {
  return [...methods].sort().join(', ')
}

/** Per-request state of one Router; match() is synchronous, so one instance serves every request. */
class Matcher<T> implements EndpointPicker<Endpoint<T>, Candidate<T>>, EndpointVisitor<Endpoint<T>> {
  methodId = 0
  headers: RequestHeaders = NO_HEADERS
  /** Endpoints that matched the path and had a candidate whose headers hold, but none for the method. */
  pathMatches = 0
  firstPathMatch: Endpoint<T> | null = null
  // 405 collection (rare path).
  allowed = new Set<string>()
  contributors = 0
  lastContributor: Endpoint<T> | null = null

  // Hot path.
  pick(endpoint: Endpoint<T>): Candidate<T> | null {
    if (!endpoint.hasHeaderConditions) {
      const first = endpoint.firstByMethod[this.methodId] as Candidate<T> | null
      if (first === null) this.#notePathMatch(endpoint) // an endpoint has at least one candidate
      return first
    }
    const list = endpoint.byMethod[this.methodId] as ReadonlyArray<Candidate<T>>
    const headers = this.headers
    for (let i = 0; i < list.length; i++) {
      const candidate = list[i] as Candidate<T>
      if (candidate.hasHeaders(headers)) return candidate
    }
    if (endpoint.candidates.some((c) => c.hasHeaders(headers))) this.#notePathMatch(endpoint)
    return null
  }

  #notePathMatch(endpoint: Endpoint<T>): void {
    if (this.pathMatches++ === 0) this.firstPathMatch = endpoint
  }

  visit(endpoint: Endpoint<T>): void {
    let isContributor = false
    for (const candidate of endpoint.candidates) {
      if (candidate.methods === null || !candidate.hasHeaders(this.headers)) continue
      isContributor = true
      for (const m of candidate.methods) this.allowed.add(m)
    }
    if (isContributor) {
      this.contributors++
      this.lastContributor = endpoint
    }
  }
}

export class Router<T> {
  readonly size: number
  readonly #exactHosts = new LabelTable<HostLevel<T>>(true)
  readonly #wildcardHosts = new LabelTable<HostLevel<T>>(true) // labels like '.example.com'
  readonly #anyHost: SegmentTrie<Endpoint<T>> | null
  readonly #spans: Int32Array
  readonly #matcher = new Matcher<T>()
  /** Every method some route names (HEAD included with GET) → 1, 2, ...; other methods are 0. */
  readonly #methodIds = new Map<string, number>()

  /** Throws on a route path parseRoutePath refuses (config checks report those first: config/check.ts). */
  constructor(entries: ReadonlyArray<{ readonly spec: RouteSpec; readonly value: T }>) {
    this.size = entries.length
    let anyHost: SegmentTrie<Endpoint<T>> | null = null
    const tries: Array<SegmentTrie<Endpoint<T>>> = []
    const endpoints: Array<Endpoint<T>> = []
    const createEndpoint = (): Endpoint<T> => {
      const endpoint = new Endpoint<T>()
      endpoints.push(endpoint)
      return endpoint
    }
    const paramNames = new Map<string, readonly string[]>() // shared arrays: fewer cold loads per match
    entries.forEach(({ spec, value }, order) => {
      const parsed = parseRoutePath(spec.path)
      if (typeof parsed === 'string') throw new Error(`route ${spec.id}: match.path: ${parsed}`)
      const namesKey = parsed.paramNames.join('/')
      let names = paramNames.get(namesKey)
      if (names === undefined) paramNames.set(namesKey, names = parsed.paramNames.length === 0 ? NONE : parsed.paramNames)
      let trie: SegmentTrie<Endpoint<T>>
      if (spec.host === null) trie = anyHost ??= newTrie(tries)
      else {
        const host = spec.host.toLowerCase().replace(/\.$/, '')
        const table = host.startsWith('*.') ? this.#wildcardHosts : this.#exactHosts
        const label = host.startsWith('*.') ? host.slice(1) : host
        let level = table.peek(label)
        if (level === undefined) table.add(level = new HostLevel(label, newTrie(tries)))
        trie = level.trie
      }
      trie.endpoint(parsed, createEndpoint).candidates.push(new Candidate(value, spec, order, names))
    })
    for (const endpoint of endpoints) {
      for (const c of endpoint.candidates) {
        for (const m of c.methods ?? []) if (!this.#methodIds.has(m)) this.#methodIds.set(m, this.#methodIds.size + 1)
      }
    }
    const answers405 = new Map<string, MatchResult<T>>()
    for (const endpoint of endpoints) endpoint.seal(this.#methodIds, answers405)
    for (const trie of tries) trie.seal()
    this.#exactHosts.seal()
    this.#wildcardHosts.seal()
    this.#anyHost = anyHost
    this.#spans = new Int32Array(2 * tries.reduce((max, t) => Math.max(max, t.maxParams), 1))
  }

  /** Hot path. path is the canonical path (http/canonical-path.ts); host the raw Host header. */
  match(method: string, host: string | undefined, path: string, headers: RequestHeaders): MatchResult<T> {
    const matcher = this.#matcher
    matcher.methodId = this.#methodIds.get(method) ?? 0
    matcher.headers = headers
    matcher.pathMatches = 0
    const found = this.#find(host, path)
    if (found !== null) {
      if (found.fixedResult !== null) return found.fixedResult
      const names = found.paramNames
      const spans = this.#spans
      const params: Record<string, string> = {}
      for (let i = 0; i < names.length; i++) params[names[i] as string] = path.slice(spans[2 * i], spans[2 * i + 1])
      if (found.hasProtoParam) setProtoParam(params, names, path, spans)
      return { value: found.value, params }
    }
    if (matcher.pathMatches === 0) return null
    const only = matcher.firstPathMatch as Endpoint<T> // set by pick() during #find
    matcher.firstPathMatch = null
    // One endpoint without header conditions: its Allow list was made at build time.
    if (matcher.pathMatches === 1 && !only.hasHeaderConditions) return only.methodNotAllowed
    return this.#methodNotAllowed(host, path)
  }

  #find(host: string | undefined, path: string): Candidate<T> | null {
    const matcher = this.#matcher
    const spans = this.#spans
    if (host !== undefined && (this.#exactHosts.size !== 0 || this.#wildcardHosts.size !== 0)) {
      const end = hostNameEnd(host)
      if (end > 0) {
        const exact = this.#exactHosts.get(host, 0, end)
        if (exact !== null) {
          const found = exact.trie.find(path, matcher, spans)
          if (found !== null) return found
        }
        if (this.#wildcardHosts.size !== 0) {
          // Longest suffix first: '.b.example.com' before '.example.com'.
          for (let dot = host.indexOf('.', 1); dot > 0 && dot < end; dot = host.indexOf('.', dot + 1)) {
            const wildcard = this.#wildcardHosts.get(host, dot, end)
            if (wildcard === null) continue
            const found = wildcard.trie.find(path, matcher, spans)
            if (found !== null) return found
          }
        }
      }
    }
    return this.#anyHost === null ? null : this.#anyHost.find(path, matcher, spans)
  }

  // Rare path: visit every endpoint that matched host and path, in the same order as #find.
  #methodNotAllowed(host: string | undefined, path: string): MatchResult<T> {
    const matcher = this.#matcher
    matcher.allowed.clear()
    matcher.contributors = 0
    matcher.lastContributor = null
    if (host !== undefined) {
      const end = hostNameEnd(host)
      if (end > 0) {
        this.#exactHosts.get(host, 0, end)?.trie.collect(path, matcher)
        for (let dot = host.indexOf('.', 1); dot > 0 && dot < end; dot = host.indexOf('.', dot + 1)) {
          this.#wildcardHosts.get(host, dot, end)?.trie.collect(path, matcher)
        }
      }
    }
    this.#anyHost?.collect(path, matcher)
    const last = matcher.lastContributor as Endpoint<T> | null // set by visit() during collect()
    const result: MatchResult<T> = matcher.contributors === 1 && last !== null && !last.hasHeaderConditions
      ? last.methodNotAllowed
      : { value: null, allow: joinMethods(matcher.allowed) }
    matcher.allowed.clear()
    matcher.lastContributor = null
    return result
  }
}

/** The routes of one host (exact) or host suffix (wildcard, label '.example.com'). */
class HostLevel<T> {
  constructor(readonly label: string, readonly trie: SegmentTrie<Endpoint<T>>) {}
}

/** Rare path: define a `__proto__` parameter as an own property (assignment would set the prototype). */
function setProtoParam(params: Record<string, string>, names: readonly string[], path: string, spans: Int32Array): void {
  const i = names.indexOf('__proto__')
  const value = path.slice(spans[2 * i], spans[2 * i + 1])
  Object.defineProperty(params, '__proto__', { value, enumerable: true, writable: true, configurable: true })
}

function newTrie<E>(tries: Array<SegmentTrie<E>>): SegmentTrie<E> {
  const trie = new SegmentTrie<E>()
  tries.push(trie)
  return trie
}

/**
 * End of the host name in a Host header value: before the port and one trailing dot. 0 when there is no
 * name a route could name (empty, or an IPv6 literal: route hosts are DNS names).
 */
function hostNameEnd(host: string): number {
  if (host.charCodeAt(0) === 0x5b) return 0 // '[' IPv6 literal
  let end = host.indexOf(':')
  if (end < 0) end = host.length
  if (end > 0 && host.charCodeAt(end - 1) === 0x2e) end--
  return end
}
