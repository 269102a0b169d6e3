// Sliding-window counter (README "Rate limiting"): `limit` requests per `window`, where the previous fixed
// window still counts in proportion to how much of it the sliding window overlaps. A full previous window
// leaves no room at the boundary, so there is no double burst there, and only two numbers per key are kept.
// State in its record of the KeyStore: A the index of the current fixed window, B its count, C the previous
// count.
import { A, B, C } from './key-store.js'
import type { LocalAlgorithm } from './local-limiter.js'
import { trimNumber } from './token-bucket.js'

/** Float slack: 0.1 + 0.2 must not refuse the request that exactly fills the limit. */
const EPSILON = 1e-9

export class SlidingWindow implements LocalAlgorithm {
  readonly limit: number
  readonly windowMs: number
  /** A key untouched for two windows counts nothing. */
  readonly idleAfterMs: number
  readonly limitHeader: string
  readonly policyHeader: string

  constructor(limit: number, windowMs: number) {
    this.limit = limit
    this.windowMs = windowMs
    this.idleAfterMs = 2 * windowMs
    this.limitHeader = String(Math.floor(limit))
    this.policyHeader = `${trimNumber(limit)};w=${trimNumber(windowMs / 1000)}`
  }

  init(n: Float64Array, at: number, nowMs: number): void {
    n[at + A] = Math.floor(nowMs / this.windowMs)
    n[at + B] = 0
    n[at + C] = 0
  }

  refresh(n: Float64Array, at: number, nowMs: number): void {
    const index = Math.floor(nowMs / this.windowMs)
    const current = n[at + A]!
    if (index <= current) return
    n[at + C] = index === current + 1 ? n[at + B]! : 0
    n[at + B] = 0
    n[at + A] = index
  }

  // admits() and remaining() each work out the requests counted now (the current window plus the previous one
  // weighted by its overlap) in their own body. As a method of its own it stayed a call from the rate-limit
  // step's optimised code (bench scenario limits, perf record: 15 of the step's 39 samples on that call).

  admits(n: Float64Array, at: number, nowMs: number): boolean {
    const w = this.windowMs
    const counted = n[at + C]! * (1 - (nowMs - n[at + A]! * w) / w) + n[at + B]!
    return counted + 1 <= this.limit + EPSILON
  }

  take(n: Float64Array, at: number): void {
    n[at + B] = n[at + B]! + 1
  }

  refund(n: Float64Array, at: number): void {
    const count = n[at + B]!
    if (count > 0) n[at + B] = count - 1
  }

  remaining(n: Float64Array, at: number, nowMs: number): number {
    const w = this.windowMs
    const counted = n[at + C]! * (1 - (nowMs - n[at + A]! * w) / w) + n[at + B]!
    const left = Math.floor(this.limit - counted + EPSILON)
    return left > 0 ? left : 0
  }

  /** Until nothing counts any more: the end of the next window when this one has requests. */
  resetMs(n: Float64Array, at: number, nowMs: number): number {
    if (n[at + B]! > 0) return (n[at + A]! + 2) * this.windowMs - nowMs
    if (n[at + C]! > 0) return (n[at + A]! + 1) * this.windowMs - nowMs
    return 0
  }

  /**
   * Until one more request fits. In this window the previous count fades linearly; if that is not enough,
   * in the next window this window's count becomes the previous one and fades in turn.
   */
  retryAfterMs(n: Float64Array, at: number, nowMs: number): number {
    if (this.admits(n, at, nowMs)) return 0
    const w = this.windowMs
    const start = n[at + A]! * w
    const count = n[at + B]!
    const previous = n[at + C]!
    const room = this.limit - 1 - count // what the previous window's share must fall to
    if (room >= 0 && previous > 0) {
      // previous * (1 - (t - start) / w) <= room  <=>  t >= start + w * (1 - room / previous)
      const t = start + w * (1 - room / previous)
      if (t < start + w) return Math.max(0, t - nowMs)
    }
    // Next window: count * (1 - (t - start - w) / w) <= limit - 1
    const next = start + w
    if (count <= 0) return next - nowMs
    const t = next + w * (1 - (this.limit - 1) / count)
    return Math.max(next, t) - nowMs
  }
}
