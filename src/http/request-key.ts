// Request keys, parsed once per config: `hashKey` of a hash-balanced upstream (one part) and the `key` of a
// rate limit (one or more parts joined by commas). Parts: client-ip | path | route | header:<name> |
// query:<name> | cookie:<name> (sticky splits only) | consumer (the route's authenticated consumer, src/policy/auth/; limiters only) | client-cert (limiters only: the verified client certificate's subject, client-cert.ts). A hash key with a part missing is null (the balancer falls back); a limiter key uses a
// stand-in for the missing part instead, so requests without the header share one bucket and leaving the
// header out is never a way around the limit.
import type { IncomingMessage } from 'node:http'
import { clientCertSubject } from './client-cert.js'
import { cookieValue } from './cookie.js'

const enum Source { ClientIp, Path, Route, Header, Query, Consumer, ClientCert, Cookie }

interface Part {
  readonly source: Source
  readonly name: string
}

/** What a key is read from, per request. The client IP is passed in already resolved (client-ip.ts). */

export class RequestKey {
  readonly #parts: readonly Part[]
  /** Some part needs the client IP (the caller resolves X-Forwarded-For only then). */
  readonly needsClientIp: boolean
  /**
   * The source of a key of one part that needs nothing of the request (client-ip, route), else -1: answered
   * without reading the parts (bench scenario limits, perf record: valueOf's parts list, its part and the call
   * of partValue were ~0.03 us a request for each of its two limiters, keyed by client-ip and route).
   */
  readonly #only: Source | -1

  /** The value of a missing part; null: a request with a part missing has no key. */
  readonly #missing: string | null

  constructor(spec: string, missing: string | null = null) {
    this.#parts = spec.split(',').map(parsePart)
    this.#missing = missing
    this.needsClientIp = this.#parts.some((p) => p.source === Source.ClientIp)
    const only = this.#parts.length === 1 ? this.#parts[0]!.source : -1
    this.#only = only === Source.ClientIp || only === Source.Route ? only : -1
  }

  /**
   * The request's key, or null when a part is missing (hashKey: the balancer falls back to round-robin).
   * Parts are joined by U+0000, which no header value, path or address contains.
   */
  valueOf(req: IncomingMessage, canonicalPath: string, clientIp: string, routeId = '', consumer: string | null = null): string | null {
    const only = this.#only
    if (only === Source.ClientIp) return clientIp
    if (only === Source.Route) return routeId
    const parts = this.#parts
    if (parts.length === 1) return partValue(parts[0]!, req, canonicalPath, clientIp, routeId, consumer) ?? this.#missing
    let out = ''
    for (let i = 0; i < parts.length; i++) {
      const v = partValue(parts[i]!, req, canonicalPath, clientIp, routeId, consumer) ?? this.#missing
      if (v === null) return null
      out += i === 0 ? v : '\u0000' + v
    }
    return out
  }
}

function parsePart(spec: string): Part {
  if (spec === 'client-ip') return { source: Source.ClientIp, name: '' }
  if (spec === 'path') return { source: Source.Path, name: '' }
  if (spec === 'route') return { source: Source.Route, name: '' }
  if (spec === 'consumer') return { source: Source.Consumer, name: '' }
  if (spec === 'client-cert') return { source: Source.ClientCert, name: '' }
  if (spec.startsWith('header:')) return { source: Source.Header, name: spec.slice(7).toLowerCase() }
  if (spec.startsWith('query:')) return { source: Source.Query, name: spec.slice(6) }
  if (spec.startsWith('cookie:')) return { source: Source.Cookie, name: spec.slice(7) }
  throw new TypeError(`request key: expected client-ip, path, route, consumer, client-cert, header:<name>, query:<name> or cookie:<name>, got ${JSON.stringify(spec)}`)
}

function partValue(part: Part, req: IncomingMessage, canonicalPath: string, clientIp: string, routeId: string, consumer: string | null): string | null {
  switch (part.source) {
    case Source.Consumer: return consumer
    case Source.ClientIp: return clientIp
    case Source.Path: return canonicalPath
    case Source.Route: return routeId
    case Source.Header: {
      const v = req.headers[part.name]
      return v === undefined ? null : Array.isArray(v) ? v.join(',') : v
    }
    case Source.Query: return queryValue(req.url ?? '', part.name)
    case Source.ClientCert: return clientCertSubject(req.socket)
    case Source.Cookie: {
      const v = req.headers.cookie
      return cookieValue(v, part.name)
    }
  }
}

/**
 * The first `name=value` of the query string, raw (not percent-decoded); `name` alone gives ''. Hot path:
 * scans the URL in place and allocates only the returned value.
 */
export function queryValue(url: string, name: string): string | null {
  let i = url.indexOf('?')
  if (i < 0) return null
  const n = name.length
  while (i < url.length) {
    const start = i + 1 // first character of this pair
    let end = url.indexOf('&', start)
    if (end < 0) end = url.length
    if (url.startsWith(name, start)) {
      const after = start + n
      if (after === end) return ''
      if (url.charCodeAt(after) === 0x3d) return url.slice(after + 1, end) // '='
    }
    i = end
  }
  return null
}
