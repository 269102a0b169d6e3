// A route's `auth: { type: basic }` (README "Authentication") as a step of its pipeline, where key auth
// stands: `Authorization: Basic base64(user:password)` (RFC 7617), the password checked against the
// consumer's bcrypt or argon2 hash. The consumer is the user name. Missing: 401 missing; malformed, unknown
// user or wrong password: 401 invalid (which one is not said); both with `Basic realm="tollgate"`.
// forward.ts strips Authorization before forwarding.
//
// Password hashes are slow on purpose (~50-100 ms at sensible costs). @node-rs/bcrypt and @node-rs/argon2
// verify on libuv's thread pool, so the event loop keeps serving while one runs (bcryptjs, pure JS, would
// hold the loop for the whole hash); both ship prebuilt binaries. The request suspends meanwhile.
// A success is cached for CACHE_TTL_MS under the SHA-256 of the header value (user and password together;
// the password is never kept), so a keep-alive client sending the same credentials pays the hash once a
// minute, not per request. A failure is never cached as a success, and an unknown user is checked against
// a dummy hash so that the answer takes as long as for a known one (no user enumeration by timing).
//
// The two libraries are native: they are imported on the first verification, so that a gateway without
// basic-auth routes never loads them (nor fails on a platform without their prebuilt binary).
import { performance } from 'node:perf_hooks'
import { hash } from 'node:crypto'
import { INVALID_CREDENTIALS, MISSING_CREDENTIALS } from '../../errors.js'
import { Next, type StepContext } from '../../http/request-step.js'
import type { AuthFailureCounters, AuthStep, CredentialStrip } from './auth-step.js'

/** Verified credentials are trusted again without a hash for at most this long. */
export const CACHE_TTL_MS = 60_000
export const CACHE_MAX_ENTRIES = 10_000

export const BASIC_CHALLENGE = 'Basic realm="tollgate", charset="UTF-8"'
const CHALLENGE_HEADERS: readonly string[] = Object.freeze(['www-authenticate', BASIC_CHALLENGE])

/** bcrypt (cost 10) of a random string nobody knows: what an unknown user's password is checked against. */
const DUMMY_BCRYPT = '$2b$10$tteEXdNf1a7vS/smXJSsE.0iaXbe5FAft7Ai4mytZrpYr/0mv6YZm'

interface Hashers {
  readonly bcrypt: (password: string, hash: string) => Promise<boolean>
  readonly argon2: (hash: string, password: string) => Promise<boolean>
}

let hashers: Promise<Hashers> | null = null

function loadHashers(): Promise<Hashers> {
  hashers ??= Promise.all([import('@node-rs/bcrypt'), import('@node-rs/argon2')])
    .then(([b, a]) => ({ bcrypt: (password, h) => b.verify(password, h), argon2: (h, password) => a.verify(h, password) }))
  return hashers
}

interface CachedCredentials {
  readonly consumer: string
  readonly untilMs: number
}

export class BasicAuthStep implements AuthStep {
  readonly strip: CredentialStrip
  /** User name -> password hash. */
  readonly #hashes: ReadonlyMap<string, string>
  readonly #counters: Pick<AuthFailureCounters, 'missing' | 'invalid'>
  /** sha256 hex of the Authorization value -> its consumer. */
  readonly #cache = new Map<string, CachedCredentials>()

  constructor(strip: CredentialStrip, consumers: Readonly<Record<string, { readonly passwordHash: string }>>, counters: Pick<AuthFailureCounters, 'missing' | 'invalid'>) {
    this.strip = strip
    this.#hashes = new Map(Object.entries(consumers).map(([name, c]) => [name, c.passwordHash]))
    this.#counters = counters
  }

  /** Verifications started (hash runs), for tests and the bench. */
  verifications = 0

  run(ctx: StepContext): Next {
    const header = ctx.req.headers.authorization
    if (header === undefined || !isBasic(header)) {
      this.#counters.missing.inc()
      ctx.refuse(MISSING_CREDENTIALS, false, CHALLENGE_HEADERS)
      return Next.Done
    }
    const digest = hash('sha256', header, 'hex')
    const hit = this.#cache.get(digest)
    if (hit !== undefined) {
      if (hit.untilMs > ctx.startMs) {
        ctx.consumer = hit.consumer
        return Next.Continue
      }
      this.#cache.delete(digest)
    }
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) {
      this.#counters.invalid.inc()
      ctx.refuse(INVALID_CREDENTIALS, false, CHALLENGE_HEADERS)
      return Next.Done
    }
    void this.#verify(ctx, digest, decoded.slice(0, colon), decoded.slice(colon + 1))
    return Next.Suspend
  }

  /** The slow path: the hash runs on the thread pool, then the request resumes or is refused. Never throws. */
  async #verify(ctx: StepContext, digest: string, user: string, password: string): Promise<void> {
    const stored = this.#hashes.get(user)
    let ok = false
    this.verifications++
    try {
      const target = stored ?? DUMMY_BCRYPT
      const h = await loadHashers()
      ok = target.startsWith('$argon2') ? await h.argon2(target, password) : await h.bcrypt(password, target)
    } catch {
      ok = false // a hash the library refuses (or a library that did not load): nobody gets in with it
    }
    if (ctx.finished) return
    if (!ok || stored === undefined) {
      this.#counters.invalid.inc()
      ctx.refuse(INVALID_CREDENTIALS, false, CHALLENGE_HEADERS)
      return
    }
    const cache = this.#cache
    if (cache.size >= CACHE_MAX_ENTRIES) cache.delete(cache.keys().next().value!)
    cache.set(digest, { consumer: user, untilMs: performance.now() + CACHE_TTL_MS })
    ctx.consumer = user
    ctx.resume()
  }
}

/** `Basic ` (case-insensitive scheme) followed by something. */
function isBasic(header: string): boolean {
  return header.length > 6 && header.charCodeAt(5) === 0x20 && header.slice(0, 5).toLowerCase() === 'basic'
}
