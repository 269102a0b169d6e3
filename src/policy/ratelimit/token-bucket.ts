// Token bucket (README "Rate limiting"): `rate` tokens per `period` flow into a bucket of `burst` tokens; a
// request takes one. Exactly `burst` requests pass at once, then one per 1/rate. The state of a key is two
// numbers on its KeyEntry: `a` tokens, `b` the time they were counted. Time comes in as an argument (the
// request's one clock reading), so the class needs no timer and the tests no fake clock.
import type { KeyEntry } from './key-store.js'
import type { LocalAlgorithm } from './local-limiter.js'

export class TokenBucket implements LocalAlgorithm {
  readonly ratePerMs: number
  readonly burst: number
  /** From empty to full: after this long untouched a key's state is worth nothing. */
  readonly idleAfterMs: number
  readonly limitHeader: string
  readonly policyHeader: string

  constructor(rate: number, periodMs: number, burst: number) {
    this.ratePerMs = rate / periodMs
    this.burst = burst
    this.idleAfterMs = burst / this.ratePerMs
    this.limitHeader = String(Math.floor(burst))
    this.policyHeader = `${trimNumber(rate)};w=${trimNumber(periodMs / 1000)}`
  }

  init(entry: KeyEntry, nowMs: number): void {
    entry.a = this.burst
    entry.b = nowMs
  }

  refresh(entry: KeyEntry, nowMs: number): void {
    const elapsed = nowMs - entry.b
    if (elapsed <= 0) return
    const tokens = entry.a + elapsed * this.ratePerMs
    entry.a = tokens < this.burst ? tokens : this.burst
    entry.b = nowMs
  }

  admits(entry: KeyEntry): boolean {
    return entry.a >= 1
  }

  take(entry: KeyEntry): void {
    entry.a -= 1
  }

  refund(entry: KeyEntry): void {
    const tokens = entry.a + 1
    entry.a = tokens < this.burst ? tokens : this.burst
  }

  remaining(entry: KeyEntry): number {
    return Math.floor(entry.a)
  }

  resetMs(entry: KeyEntry): number {
    return (this.burst - entry.a) / this.ratePerMs
  }

  retryAfterMs(entry: KeyEntry): number {
    return entry.a >= 1 ? 0 : (1 - entry.a) / this.ratePerMs
  }
}

/** 0.5 -> "0.5", 2 -> "2": header numbers without trailing zeros. */
export function trimNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toFixed(3)))
}
