// `hashKey` of a hash-balanced upstream, parsed once: client-ip | path | header:<name> | query:<name>.
import type { IncomingMessage } from 'node:http'

const enum Source { ClientIp, Path, Header, Query }

export class HashKey {
  readonly #source: Source
  readonly #name: string

  constructor(spec: string) {
    if (spec === 'client-ip') { this.#source = Source.ClientIp; this.#name = '' }
    else if (spec === 'path') { this.#source = Source.Path; this.#name = '' }
    else if (spec.startsWith('header:')) { this.#source = Source.Header; this.#name = spec.slice(7).toLowerCase() }
    else if (spec.startsWith('query:')) { this.#source = Source.Query; this.#name = spec.slice(6) }
    else throw new TypeError(`hashKey: expected client-ip, path, header:<name> or query:<name>, got ${JSON.stringify(spec)}`)
  }

  /** The request's key, or null when it has none (the balancer then falls back to round-robin). */
  valueOf(req: IncomingMessage, canonicalPath: string, clientIp: string): string | null {
    switch (this.#source) {
      case Source.ClientIp: return clientIp
      case Source.Path: return canonicalPath
      case Source.Header: {
        const v = req.headers[this.#name]
        return v === undefined ? null : Array.isArray(v) ? v.join(',') : v
      }
      case Source.Query: return queryValue(req.url ?? '', this.#name)
    }
  }
}

/**
 * The first `name=value` of the query string, raw (not percent-decoded); `name` alone gives ''. Hot path:
 * scans the URL in place and allocates only the returned value.
 */
function queryValue(url: string, name: string): string | null {
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
