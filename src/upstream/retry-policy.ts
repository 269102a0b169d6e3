// `retry` of an upstream (SPEC §2), compiled once per config: which failures and statuses are retried,
// how many extra attempts, and the full-jitter exponential back-off (base, capped at 10x base).
import type { Retry } from '../config/schema.js'
import { parseDurationMs } from '../config/units.js'

/** Failure kinds, as named in `retry.on`. */
export const FailureKind = { None: 0, ConnectFailure: 1, Reset: 2, Timeout: 3 } as const
export type FailureKind = (typeof FailureKind)[keyof typeof FailureKind]

export class RetryPolicy {
  readonly attempts: number
  readonly #failures: number // bit per FailureKind
  readonly #statuses: Uint8Array // index status - 500
  readonly #baseMs: number
  readonly #random: () => number

  constructor(retry: Retry | undefined, random: () => number = Math.random) {
    this.attempts = retry?.attempts ?? 0
    this.#baseMs = retry === undefined ? 0 : parseDurationMs(retry.backoff)
    this.#random = random
    let failures = 0
    const statuses = new Uint8Array(100)
    for (const on of retry?.on ?? []) {
      if (on === 'connect-failure') failures |= 1 << FailureKind.ConnectFailure
      else if (on === 'reset') failures |= 1 << FailureKind.Reset
      else if (on === 'timeout') failures |= 1 << FailureKind.Timeout
      else if (on === '5xx') statuses.fill(1)
      else statuses[on - 500] = 1
    }
    this.#failures = failures
    this.#statuses = statuses
  }

  onFailure(kind: FailureKind): boolean {
    return kind !== FailureKind.None && (this.#failures & (1 << kind)) !== 0
  }

  onStatus(status: number): boolean {
    return status >= 500 && status < 600 && this.#statuses[status - 500] === 1
  }

  /** Full jitter (AWS architecture blog, as Envoy): uniform in [0, min(10 x base, base x 2^(n-1))). */
  backoffMs(attemptsSoFar: number): number {
    if (this.#baseMs <= 0) return 0
    const ceiling = Math.min(this.#baseMs * 10, this.#baseMs * 2 ** Math.max(0, attemptsSoFar - 1))
    return Math.floor(this.#random() * ceiling)
  }
}
