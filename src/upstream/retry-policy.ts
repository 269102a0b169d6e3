// `retry` of an upstream (README "Retries and timeouts"), compiled once per config: which failures and statuses are retried,
// how many extra attempts, the full-jitter exponential back-off (base, capped at 10x base), and the retry
// budget. The budget (Envoy's retry_budget, Finagle's RetryBudget): a request may start retrying only while
// the requests retrying now number fewer than max(3, budget% of the requests in flight to the upstream). A
// request holds its one slot from its first retry to its end (it has at most one retry in flight at a
// time), so the count is that of retries in progress; the policy object keeps it across reloads that leave
// `retry` unchanged.
import type { Retry } from '../config/schema.js'
import { fullJitterMs } from '../lib/backoff.js'
import { FAILURE_NAMES, FailureKind } from './outcome.js'

/** Retries always allowed at once, whatever the budget share (Envoy's min_retry_concurrency). */
const MIN_RETRY_CONCURRENCY = 3

export class RetryPolicy {
  readonly attempts: number
  readonly #failures: number // bit per FailureKind
  readonly #statuses: Uint8Array // index status - 500
  readonly #baseMs: number
  readonly #random: () => number
  readonly budgetPercent: number
  /** Requests holding a retry slot (acquireRetry() until releaseRetry()). */
  retrying = 0

  constructor(retry: Retry | undefined, random: () => number = Math.random) {
    this.attempts = retry?.attempts ?? 0
    this.#baseMs = retry === undefined ? 0 : retry.backoff
    this.#random = random
    this.budgetPercent = retry?.budget ?? 20
    let failures = 0
    const statuses = new Uint8Array(100)
    for (const on of retry?.on ?? []) {
      if (on === '5xx') statuses.fill(1)
      else if (typeof on === 'string') failures |= 1 << FAILURE_NAMES[on]!
      else statuses[on - 500] = 1
    }
    this.#failures = failures
    this.#statuses = statuses
  }

  /** `kind` is one `retry.on` names. Never a client-caused failure: those are not the upstream's. */
  onFailure(kind: FailureKind): boolean {
    return kind !== FailureKind.None && kind !== FailureKind.ClientCaused && (this.#failures & (1 << kind)) !== 0
  }

  onStatus(status: number): boolean {
    return status >= 500 && status < 600 && this.#statuses[status - 500] === 1
  }

  /** Hot path. Whether one more request may start retrying while `inflight` requests are in flight to the upstream. */
  withinBudget(inflight: number): boolean {
    return this.retrying < Math.max(MIN_RETRY_CONCURRENCY, (this.budgetPercent * inflight) / 100)
  }

  acquireRetry(): void {
    this.retrying++
  }

  releaseRetry(): void {
    if (this.retrying > 0) this.retrying--
  }

  /** Full jitter (AWS architecture blog, as Envoy): uniform in [0, min(10 x base, base x 2^(n-1))). */
  backoffMs(attemptsSoFar: number): number {
    if (this.#baseMs <= 0) return 0
    return Math.floor(fullJitterMs(attemptsSoFar - 1, this.#baseMs, this.#baseMs * 10, this.#random))
  }
}
