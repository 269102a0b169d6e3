// One limiter of one route, counted in this process: its algorithm (token-bucket.ts or sliding-window.ts),
// its key (http/request-key.ts, shared with hashKey) and its keys' state in the gateway's KeyStore.
// Built once per config; a reload whose settings for it are unchanged keeps the object, and so its state.
import type { RequestKey } from '../../http/request-key.js'
import { KeyEntry, type EntryOwner, type KeyStore } from './key-store.js'

/** What a limiter counts with. Every method reads or writes one key's numbers; time comes in as nowMs. */
export interface LocalAlgorithm {
  readonly idleAfterMs: number
  /** RateLimit-Limit and RateLimit-Policy of this limiter, made once. */
  readonly limitHeader: string
  readonly policyHeader: string
  /** A new key: a full quota. */
  init(entry: KeyEntry, nowMs: number): void
  /** Brings the key's numbers to nowMs (refill, window rotation). Counts nothing. */
  refresh(entry: KeyEntry, nowMs: number): void
  admits(entry: KeyEntry, nowMs: number): boolean
  take(entry: KeyEntry): void
  /** Gives back what take() took (another limiter refused the request). */
  refund(entry: KeyEntry): void
  remaining(entry: KeyEntry, nowMs: number): number
  resetMs(entry: KeyEntry, nowMs: number): number
  retryAfterMs(entry: KeyEntry, nowMs: number): number
}

/** Counts of one limiter's decisions (tollgate_ratelimit_decisions_total), bound when the table is built. */
export interface DecisionCounters {
  readonly allowed: { inc(): void }
  readonly rejected: { inc(): void }
}

export class LocalLimiter implements EntryOwner {
  readonly #entries = new Map<string, KeyEntry>()
  readonly idleAfterMs: number

  constructor(
    readonly name: string,
    readonly algorithm: LocalAlgorithm,
    readonly key: RequestKey,
    readonly store: KeyStore,
    readonly counters: DecisionCounters,
  ) {
    this.idleAfterMs = algorithm.idleAfterMs
    store.register(this)
  }

  /** Hot path: the key's entry, brought to nowMs; a new key starts with a full quota. */
  entryFor(keyValue: string, nowMs: number): KeyEntry {
    let entry = this.#entries.get(keyValue)
    if (entry === undefined) {
      entry = this.store.add(keyValue, this, nowMs)
      this.#entries.set(keyValue, entry)
      this.algorithm.init(entry, nowMs)
    } else {
      this.store.touch(entry, nowMs)
      this.algorithm.refresh(entry, nowMs)
    }
    return entry
  }

  /** The entry of a key if the store still holds it (refunds; tests). */
  peek(keyValue: string): KeyEntry | undefined {
    return this.#entries.get(keyValue)
  }

  /** Keys this limiter holds. */
  get size(): number {
    return this.#entries.size
  }

  forget(entry: KeyEntry): void {
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key)
  }

  /** The limiter went away (reload): its keys leave the store. */
  close(): void {
    for (const entry of this.#entries.values()) this.store.remove(entry)
    this.#entries.clear()
  }
}
