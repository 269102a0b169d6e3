// A route's `auth: { type: jwt }` (README "Authentication") as a step of its pipeline, where key auth
// stands: after the access list, before the limiters. The token comes from `Authorization: Bearer`; jose
// checks its signature with the route's algorithms only (`alg: none` is never one, and HMAC and public-key
// algorithms never share a route: config/auth-keys.ts), then `iss`, `aud`, `exp` and `nbf` with the
// leeway. The consumer is the `sub` claim; a token without one (or with one a header cannot carry) is
// invalid. Missing: 401 with `Bearer realm="tollgate"`; bad or expired: 401 with error="invalid_token"
// (RFC 6750 §3.1), counted as invalid or expired. forward.ts strips Authorization before forwarding.
//
// Verification results are cached per Authorization value: a repeated token costs one Map lookup, done
// synchronously in run(). A miss suspends the request (Next.Suspend) while jose verifies (its API is
// async), then resumes or refuses it, as the Redis limiter does. Only successes are cached, each until the
// token's exp (plus the leeway) or CACHE_TTL_MS, whichever comes first: a key rotated out on the IdP side
// stops a cached token within CACHE_TTL_MS. The cache holds at most CACHE_MAX_ENTRIES; when full the
// oldest entry goes (insertion order, no bookkeeping per hit).
import { performance } from 'node:perf_hooks'
import { errors, jwtVerify, type JWTVerifyOptions, type JWTVerifyGetKey } from 'jose'
import type { KeyObject } from 'node:crypto'
import { EXPIRED_TOKEN, INVALID_TOKEN, MISSING_TOKEN } from '../../errors.js'
import { Next, type StepContext } from '../../http/request-step.js'
import type { AuthFailureCounters, AuthStep, CredentialStrip } from './auth-step.js'

/** A verified token is trusted again without a signature check for at most this long. */
export const CACHE_TTL_MS = 5 * 60_000
/** Verified tokens kept; ~1 KiB each for a typical RS256 token. */
export const CACHE_MAX_ENTRIES = 10_000

const REALM = 'Bearer realm="tollgate"'
const MISSING_HEADERS: readonly string[] = Object.freeze(['www-authenticate', REALM])
const INVALID_HEADERS: readonly string[] = Object.freeze(['www-authenticate', `${REALM}, error="invalid_token", error_description="the token is not valid"`])
const EXPIRED_HEADERS: readonly string[] = Object.freeze(['www-authenticate', `${REALM}, error="invalid_token", error_description="the token has expired"`])

/** A consumer name goes into a request header: visible ASCII and inner spaces, bounded. */
const SUB_PATTERN = /^[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?$/

/** What a route verifies a token against. */
export interface JwtVerification {
  /** An HMAC secret, a public key, or a JWKS's key resolution (jwks-keys.ts). */
  readonly key: Uint8Array | KeyObject | JWTVerifyGetKey
  readonly algorithms: readonly string[]
  readonly issuer?: string
  readonly audience?: string | readonly string[]
  readonly leewayMs: number
}

interface CachedToken {
  readonly consumer: string
  /** performance.now() after which the entry is no longer trusted. */
  readonly untilMs: number
}

export class JwtAuthStep implements AuthStep {
  readonly strip: CredentialStrip
  readonly #key: Uint8Array | KeyObject | JWTVerifyGetKey
  readonly #options: JWTVerifyOptions
  readonly #leewayMs: number
  readonly #counters: AuthFailureCounters
  /** Authorization header value -> its verified consumer. */
  readonly #cache = new Map<string, CachedToken>()

  constructor(strip: CredentialStrip, verification: JwtVerification, counters: AuthFailureCounters) {
    this.strip = strip
    this.#key = verification.key
    this.#leewayMs = verification.leewayMs
    this.#options = Object.freeze({
      algorithms: [...verification.algorithms],
      ...(verification.issuer === undefined ? {} : { issuer: verification.issuer }),
      ...(verification.audience === undefined ? {} : { audience: typeof verification.audience === 'string' ? verification.audience : [...verification.audience] }),
      clockTolerance: verification.leewayMs / 1000,
    })
    this.#counters = counters
  }

  /** Entries in the verification cache (tests, bench). */
  get cacheSize(): number {
    return this.#cache.size
  }

  run(ctx: StepContext): Next {
    const header = ctx.req.headers.authorization
    if (header === undefined || header.length < 8 || !isBearer(header)) {
      this.#counters.missing.inc()
      ctx.refuse(MISSING_TOKEN, false, MISSING_HEADERS)
      return Next.Done
    }
    const hit = this.#cache.get(header)
    if (hit !== undefined) {
      if (hit.untilMs > ctx.startMs) {
        ctx.consumer = hit.consumer
        return Next.Continue
      }
      this.#cache.delete(header)
    }
    void this.#verify(ctx, header)
    return Next.Suspend
  }

  /** The slow path: jose verifies, then the request resumes or is refused. Never throws. */
  async #verify(ctx: StepContext, header: string): Promise<void> {
    const token = header.slice(7).trim()
    let consumer: string | null = null
    let expired = false
    let untilWallMs = 0
    try {
      // The overloads of jwtVerify differ by key kind; both take what #key holds.
      const { payload } = await jwtVerify(token, this.#key as Uint8Array, this.#options)
      if (typeof payload.sub === 'string' && SUB_PATTERN.test(payload.sub)) {
        consumer = payload.sub
        untilWallMs = typeof payload.exp === 'number' ? payload.exp * 1000 + this.#leewayMs : Infinity
      }
    } catch (err) {
      expired = err instanceof errors.JWTExpired
    }
    if (ctx.finished) return
    if (consumer === null) {
      if (expired) {
        this.#counters.expired.inc()
        ctx.refuse(EXPIRED_TOKEN, false, EXPIRED_HEADERS)
      } else {
        this.#counters.invalid.inc()
        ctx.refuse(INVALID_TOKEN, false, INVALID_HEADERS)
      }
      return
    }
    const nowWallMs = Date.now()
    const untilMs = performance.now() + Math.min(untilWallMs - nowWallMs, CACHE_TTL_MS)
    const cache = this.#cache
    if (cache.size >= CACHE_MAX_ENTRIES) cache.delete(cache.keys().next().value!)
    cache.set(header, { consumer, untilMs })
    ctx.consumer = consumer
    ctx.resume()
  }
}

/** `Bearer ` (the scheme is case-insensitive, RFC 9110 §11.1) followed by something. */
function isBearer(header: string): boolean {
  return (header.charCodeAt(0) | 0x20) === 0x62 && header.charCodeAt(6) === 0x20 &&
    (header.startsWith('Bearer') || header.slice(0, 6).toLowerCase() === 'bearer')
}
