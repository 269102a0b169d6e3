// One limiter of one route, counted in this process: its algorithm (token-bucket.ts or sliding-window.ts),
// its key (http/request-key.ts, shared with hashKey) and its keys' state in the gateway's KeyStore.
// Built once per config; a reload whose settings for it are unchanged keeps the object, and so its state.
import type { RequestKey } from '../../http/request-key.js'
import type { KeyStore } from './key-store.js'

/**
 * What a limiter counts with. Every method reads or writes one key's numbers, `n[at + A]` etc. (key-store.ts:
 * `n` is the store's `numbers`, `at` the key's record); time comes in as nowMs.
 */
export interface LocalAlgorithm {
  readonly idleAfterMs: number
  /** RateLimit-Limit and RateLimit-Policy of this limiter, made once. */
  readonly limitHeader: string
  readonly policyHeader: string
  /** A new key: a full quota. */
  init(n: Float64Array, at: number, nowMs: number): void
  /** Brings the key's numbers to nowMs (refill, window rotation). Counts nothing. */
  refresh(n: Float64Array, at: number, nowMs: number): void
  admits(n: Float64Array, at: number, nowMs: number): boolean
  take(n: Float64Array, at: number): void
  /** Gives back what take() took (another limiter refused the request). */
  refund(n: Float64Array, at: number): void
  remaining(n: Float64Array, at: number, nowMs: number): number
  resetMs(n: Float64Array, at: number, nowMs: number): number
  retryAfterMs(n: Float64Array, at: number, nowMs: number): number
}

/** Counts of one limiter's decisions (tollgate_ratelimit_decisions_total), bound when the table is built. */
export interface DecisionCounters {
  /** A local limiter counts its admitted requests itself (LocalLimiter.admitted) and is a source of this cell. */
  readonly allowed: { inc(): void, addSource(read: () => number): void, dropSource(read: () => number): void }
  readonly rejected: { inc(): void }
}

export class LocalLimiter {
  /** Its id in the store. */
  readonly #owner: number
  #isClosed = false
  /**
   * The last key looked up, its record and the store's generation then: the same key again (one hot key,
   * `route` keys, a keep-alive connection's address) skips hashing it, which is most of a lookup's work
   * when the record is in the CPU's cache (token bucket, one hot key,
   * bench/micro/limiter-bench.ts under load: 35-43 ns a decision without, 11-14 ns with; the Map before: 16-18 ns).
   */
  #lastKey = ''
  #lastAt = -1
  #lastGeneration = -1
  /**
   * Requests this limiter admitted (its `allowed` count in tollgate_ratelimit_decisions_total, which reads it at
   * scrape time): a field of this object, which the request path reads anyway, where incrementing the metric's
   * cell read one more object out of the CPU's cache per limiter and request.
   */
  admitted = 0
  readonly #readAdmitted = (): number => this.admitted

  constructor(
    readonly name: string,
    readonly algorithm: LocalAlgorithm,
    readonly key: RequestKey,
    readonly store: KeyStore,
    readonly counters: DecisionCounters,
  ) {
    this.#owner = store.register(algorithm.idleAfterMs)
    counters.allowed.addSource(this.#readAdmitted)
  }

  /**
   * Hot path: the record of the key (its offset in store.numbers, read after this call: a new key may grow
   * the store), brought to nowMs; a new key starts with a full quota.
   */
  entryFor(keyValue: string, nowMs: number): number {
    const store = this.store
    if (keyValue !== this.#lastKey || store.generation !== this.#lastGeneration) return this.#lookUp(keyValue, nowMs)
    const at = this.#lastAt
    store.touch(at, nowMs)
    this.algorithm.refresh(store.numbers, at, nowMs)
    return at
  }

  /**
   * entryFor of a key other than the last one, out of line: entryFor stays small enough for the rate-limit
   * step's optimised code to take in whole with the algorithms' methods (V8 inlines up to a budget of code size).
   */
  #lookUp(keyValue: string, nowMs: number): number {
    const store = this.store
    let at = store.find(this.#owner, keyValue)
    if (at < 0) {
      at = store.add(this.#owner, keyValue, nowMs)
      this.algorithm.init(store.numbers, at, nowMs)
    } else {
      store.touch(at, nowMs)
      this.algorithm.refresh(store.numbers, at, nowMs)
    }
    this.#lastKey = keyValue
    this.#lastAt = at
    this.#lastGeneration = store.generation
    return at
  }

  /** The record of a key if the store still holds it, else -1 (refunds; tests). */
  peek(keyValue: string): number {
    return this.store.find(this.#owner, keyValue)
  }

  /** Keys this limiter holds. */
  get size(): number {
    return this.store.keysOf(this.#owner)
  }

  /** The limiter went away (reload): its keys leave the store. */
  close(): void {
    if (this.#isClosed) return
    this.#isClosed = true
    this.store.unregister(this.#owner)
    this.counters.allowed.dropSource(this.#readAdmitted)
  }
}
