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

function queryValue(url: string, name: string): string | null {
  const q = url.indexOf('?')
  if (q < 0) return null
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=')
    const key = eq < 0 ? pair : pair.slice(0, eq)
    if (key === name) return eq < 0 ? '' : pair.slice(eq + 1)
  }
  return null
}
