// A route's `auth: { type: key }` (README "Authentication") as a step of its pipeline (src/proxy/pipeline.ts),
// after the access list and before the limiters: the API key from a header (or, when configured, a query
// parameter), hashed with SHA-256 and looked up among the consumers' keyHash values. Found: the consumer's
// name is the request's consumer (a limiter key, and the forwardConsumer header). Missing or unknown: 401
// UNAUTHORIZED with WWW-Authenticate, never forwarded, counted by reason. The key itself is never logged,
// never echoed, and forward.ts strips it (credentialStrip) before the request goes upstream.
//
// A Map keyed by the hex digest, not a compare per consumer: the lookup runs on the digest of the key, so
// its timing tells an attacker about SHA-256 outputs, not about the stored keys (the usual argument for
// comparing digests).
import { hash } from 'node:crypto'
import { INVALID_KEY, MISSING_KEY } from '../../errors.js'
import { Next, type StepContext } from '../../http/request-step.js'
import { queryValue } from '../../http/request-key.js'
import type { AuthFailureCounters, AuthStep, CredentialStrip } from './auth-step.js'

/**
 * The challenge of every 401 here: Kong's key-auth scheme name (`Key realm="kong"`; since Kong 3.6 on every
 * key-auth 401, Kong/kong#11794), with our realm. RFC 9110 §11.6.1 wants a challenge on every 401.
 */
export const KEY_CHALLENGE = 'Key realm="tollgate"'
const CHALLENGE_HEADERS: readonly string[] = Object.freeze(['www-authenticate', KEY_CHALLENGE])

export class KeyAuthStep implements AuthStep {
  readonly strip: CredentialStrip
  /** sha256 hex digest of a key -> consumer name. */
  readonly #consumers: ReadonlyMap<string, string>
  readonly #counters: Pick<AuthFailureCounters, 'missing' | 'invalid'>

  constructor(strip: CredentialStrip, consumers: Readonly<Record<string, { readonly keyHash: string }>>, counters: Pick<AuthFailureCounters, 'missing' | 'invalid'>) {
    this.strip = strip
    const map = new Map<string, string>()
    // keyHash is "sha256:" + lower-case hex (the schema's pattern); check.ts refuses one hash for two consumers.
    for (const [name, c] of Object.entries(consumers)) map.set(c.keyHash.slice(7), name)
    this.#consumers = map
    this.#counters = counters
  }

  /** The consumer of a key, or null. */
  consumerOf(key: string): string | null {
    return this.#consumers.get(hash('sha256', key, 'hex')) ?? null
  }

  run(ctx: StepContext): Next {
    const key = this.#keyOf(ctx)
    if (key === null) {
      this.#counters.missing.inc()
      ctx.refuse(MISSING_KEY, false, CHALLENGE_HEADERS)
      return Next.Done
    }
    const consumer = this.consumerOf(key)
    if (consumer === null) {
      this.#counters.invalid.inc()
      ctx.refuse(INVALID_KEY, false, CHALLENGE_HEADERS)
      return Next.Done
    }
    ctx.consumer = consumer
    return Next.Continue
  }

  /** The header first, then the query parameter (percent-decoded); an empty value is no key. */
  #keyOf(ctx: StepContext): string | null {
    const v = ctx.req.headers[this.strip.keyHeader]
    if (typeof v === 'string' && v !== '') return v
    if (Array.isArray(v)) return v.join(', ') // sent twice: matches no consumer, so 401 invalid
    const name = this.strip.queryParam
    if (name === null) return null
    const raw = queryValue(ctx.req.url ?? '', name)
    if (raw === null || raw === '') return null
    if (raw.indexOf('%') < 0 && raw.indexOf('+') < 0) return raw
    try {
      return decodeURIComponent(raw.replaceAll('+', ' '))
    } catch {
      return raw // broken escapes: hashed as sent, so it matches no consumer
    }
  }
}

/**
 * `query` (`?a=1&api_key=k&b=2`) without every `name` parameter, the others keeping their order and bytes;
 * '' when none is left. Per request on routes with `key.query`, only when the query holds the name.
 */
export function stripQueryParam(query: string, name: string): string {
  if (query.indexOf(name) < 0) return query
  let out = ''
  let i = 1 // after '?'
  while (i <= query.length) {
    let end = query.indexOf('&', i)
    if (end < 0) end = query.length
    const isName = query.startsWith(name, i) && (i + name.length === end || query.charCodeAt(i + name.length) === 0x3d)
    if (!isName) out += (out === '' ? '?' : '&') + query.slice(i, end)
    i = end + 1
  }
  return out
}
