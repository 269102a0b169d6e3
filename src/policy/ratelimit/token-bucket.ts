// Token bucket (README "Rate limiting"): `rate` tokens per `period` flow into a bucket of `burst` tokens; a
// request takes one. Exactly `burst` requests pass at once, then one per 1/rate. The state of a key is two
// numbers in its record of the KeyStore: A the tokens, B the time they were counted. Time comes in as an argument (the
// request's one clock reading), so the class needs no timer and the tests no fake clock.
import { A, B } from './key-store.js'
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

  init(n: Float64Array, at: number, nowMs: number): void {
    n[at + A] = this.burst
    n[at + B] = nowMs
  }

  refresh(n: Float64Array, at: number, nowMs: number): void {
    const elapsed = nowMs - n[at + B]!
    if (elapsed <= 0) return
    const tokens = n[at + A]! + elapsed * this.ratePerMs
    n[at + A] = tokens < this.burst ? tokens : this.burst
    n[at + B] = nowMs
  }

  admits(n: Float64Array, at: number): boolean {
    return n[at + A]! >= 1
  }

  take(n: Float64Array, at: number): void {
    n[at + A] = n[at + A]! - 1
  }

  refund(n: Float64Array, at: number): void {
    const tokens = n[at + A]! + 1
    n[at + A] = tokens < this.burst ? tokens : this.burst
  }

  remaining(n: Float64Array, at: number): number {
    return Math.floor(n[at + A]!)
  }

  resetMs(n: Float64Array, at: number): number {
    return (this.burst - n[at + A]!) / this.ratePerMs
  }

  retryAfterMs(n: Float64Array, at: number): number {
    const tokens = n[at + A]!
    return tokens >= 1 ? 0 : (1 - tokens) / this.ratePerMs
  }
}

/** 0.5 -> "0.5", 2 -> "2": header numbers without trailing zeros. */
export function trimNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toFixed(3)))
}
