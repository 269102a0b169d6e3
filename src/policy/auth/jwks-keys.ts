// The keys of a route's `auth.jwt.jwks` URL (README "Authentication"): fetched when a config first names
// the URL, and again when a token names a `kid` the set does not hold (a key rotation), at most once per
// 30 s (SPEC §11) so a stream of made-up kids cannot turn the gateway into a load generator against the
// identity provider. A fetch that fails, times out or brings something that is not a JWKS keeps the last
// good set in use.
//
// One set per URL per process (JwksKeys.for): routes that share an identity provider share its keys and
// its refresh budget, and a reload that rebuilds a route's auth step (another issuer, another leeway)
// keeps the keys, so it survives an IdP outage too. The map only grows by URLs a config named.
//
// Why not jose's createRemoteJWKSet: it also reloads when its cache age passes, and when that reload fails
// the verification fails, although the old keys are still at hand; SPEC wants them kept during an outage.
// jose's createLocalJWKSet does the key selection (kid, alg, use, key_ops) on the set we hold.
//
// The config load never waits for the network (it is synchronous, and a reload must not hang on an
// identity provider): a request that comes before the first fetch ends waits for it; while no set was ever
// fetched, a request may start a new fetch every 5 s rather than 30 s, so that a gateway started during an
// IdP outage serves as soon as the IdP is back. Until then its tokens get 401 invalid_token (Envoy's
// jwt_authn answers 401 "Jwks remote fetch is failed" the same way).
//
// An outage is visible (README "Authentication"): the first failed fetch after a good one (or the first
// fetch ever) is one warn line, the first success after failures one info line, through the reporter the
// gateway installs (reportTo); the fetches in between say nothing, so a stream of unknown kids during an
// outage cannot flood the log. /status shows each JWT route's set: keys in use, last good fetch, last error.
import { performance } from 'node:perf_hooks'
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput } from 'jose'

/** SPEC §11: refreshes on an unknown kid at most this often. */
export const JWKS_REFRESH_INTERVAL_MS = 30_000
/** While no set was ever fetched: a request may start a fetch this often. */
const JWKS_FIRST_RETRY_MS = 5_000
const JWKS_FETCH_TIMEOUT_MS = 5_000
/** A JWKS bigger than this is refused (an IdP publishes a few keys, a few KiB). */
const JWKS_MAX_BYTES = 512 * 1024

type KeyResolver = ReturnType<typeof createLocalJWKSet>

const sets = new Map<string, JwksKeys>()

/** Where fetch failures and recoveries are told (src/lifecycle/gateway.ts: the process's log). */
export interface JwksReporter {
  warn(fields: Record<string, unknown>, message: string): void
  info(fields: Record<string, unknown>, message: string): void
}

let reporter: JwksReporter | null = null

/** What /status shows of a set (src/admin/status.ts). */
export interface JwksStatus {
  readonly url: string
  /** Keys in the set in use; 0 before the first good fetch. */
  readonly keys: number
  /** Their kid values (null for a key without one). */
  readonly kids: readonly (string | null)[]
  /** Wall-clock time of the last good fetch, ISO 8601; null: none yet. */
  readonly lastFetchAt: string | null
  /** Why the last fetch failed; null when it succeeded. */
  readonly lastError: string | null
  readonly lastErrorAt: string | null
}

export class JwksKeys {
  /** The set of `url`, made (and its first fetch started) on first use. */
  /** The process's reporter; null: failures are only kept in lastError. */
  static reportTo(r: JwksReporter | null): void {
    reporter = r
  }

  /** The set of `url` if a route made it in this process (the cluster primary builds none). */
  static peek(url: string): JwksKeys | undefined {
    return sets.get(url)
  }

  static for(url: string): JwksKeys {
    let set = sets.get(url)
    if (set === undefined) {
      set = new JwksKeys(url)
      sets.set(url, set)
    }
    return set
  }

  readonly url: string
  /** The last good set's resolver; null until a fetch succeeds. */
  #keys: KeyResolver | null = null
  /** The fetch in flight, shared by every request that waits for it. */
  #fetching: Promise<void> | null = null
  /** performance.now() of the last fetch started (the 5 s rule while no set was fetched). */
  #lastFetchMs = -Infinity
  /** performance.now() of the last refresh for an unknown kid: the 30 s rule counts attempts, failed ones too. */
  #lastRefreshMs = -Infinity
  /** Why the last fetch failed, or null after a success (for tests and status). */
  lastError: string | null = null
  /** Fetches started, successful or not. */
  fetches = 0
  /** Date.now() of the last good fetch, and of the last failed one; null: none. */
  #lastFetchAt: number | null = null
  #lastErrorAt: number | null = null
  #kids: readonly (string | null)[] = []
  /** The last fetch failed (a failure was reported): the next success is reported as a recovery. */
  #failing = false

  /** The 30 s of SPEC §11; tests give a shorter one rather than wait. */
  readonly #refreshIntervalMs: number

  constructor(url: string, options: { fetchNow?: boolean; refreshIntervalMs?: number } = {}) {
    this.url = url
    this.#refreshIntervalMs = options.refreshIntervalMs ?? JWKS_REFRESH_INTERVAL_MS
    // Bound so that jose may call it as a plain function: one closure per step, not per request.
    this.getKey = this.getKey.bind(this)
    if (options.fetchNow !== false) void this.refresh()
  }

  /** Key resolution for jose's jwtVerify: the set's key for the token's kid and alg. */
  async getKey(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    if (this.#keys === null && this.#fetching !== null) await this.#fetching
    if (this.#keys === null) {
      if (performance.now() - this.#lastFetchMs >= JWKS_FIRST_RETRY_MS) await this.refresh()
      if (this.#keys === null) throw new errors.JWKSNoMatchingKey(`no key set from ${this.url} yet: ${this.lastError ?? 'never fetched'}`)
    }
    try {
      return await this.#keys(header, token)
    } catch (err) {
      // An unknown kid (a rotation on the IdP side): one fresh look, rate-limited.
      if (!(err instanceof errors.JWKSNoMatchingKey) || performance.now() - this.#lastRefreshMs < this.#refreshIntervalMs) throw err
      this.#lastRefreshMs = performance.now()
      await this.refresh()
      const keys = this.#keys as KeyResolver // still the last good set if the refresh failed
      return await keys(header, token)
    }
  }

  /** Fetches the set now (or joins the fetch in flight); a failure keeps the last good set. */
  refresh(): Promise<void> {
    if (this.#fetching !== null) return this.#fetching
    this.#lastFetchMs = performance.now()
    this.fetches++
    const p = this.#fetch().finally(() => { this.#fetching = null })
    this.#fetching = p
    return p
  }

  async #fetch(): Promise<void> {
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } })
      if (!res.ok) throw new Error(`HTTP ${res.status}`)
      const text = await res.text()
      if (text.length > JWKS_MAX_BYTES) throw new Error(`the set is larger than ${JWKS_MAX_BYTES} bytes`)
      const set = JSON.parse(text) as JSONWebKeySet
      this.#keys = createLocalJWKSet(set) // throws on something that is not a JWKS: the old set stays
      this.#kids = set.keys.map((k) => typeof k.kid === 'string' ? k.kid : null)
      this.#lastFetchAt = Date.now()
      this.lastError = null
      if (this.#failing) {
        this.#failing = false
        reporter?.info({ jwks: this.url, keys: this.#kids.length }, 'jwks: fetched again; its keys are in use')
      }
    } catch (err) {
      this.lastError = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
      this.#lastErrorAt = Date.now()
      if (!this.#failing) {
        this.#failing = true
        const kept = this.#keys === null ? 'no keys yet: its tokens get 401 until a fetch succeeds'
          : `the last good keys (${this.#kids.length}) stay in use`
        reporter?.warn({ jwks: this.url, error: this.lastError }, `jwks: fetch failed (${this.lastError}); ${kept}`)
      }
    }
  }

  status(): JwksStatus {
    const iso = (ms: number | null): string | null => ms === null ? null : new Date(ms).toISOString()
    return {
      url: this.url, keys: this.#kids.length, kids: this.#kids,
      lastFetchAt: iso(this.#lastFetchAt), lastError: this.lastError, lastErrorAt: iso(this.lastError === null ? null : this.#lastErrorAt),
    }
  }
}
