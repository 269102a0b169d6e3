// Sliding-window counter (README "Rate limiting"): `limit` requests per `window`, where the previous fixed
// window still counts in proportion to how much of it the sliding window overlaps. A full previous window
// leaves no room at the boundary, so there is no double burst there, and only two numbers per key are kept.
// State on the KeyEntry: `a` the index of the current fixed window, `b` its count, `c` the previous count.
import type { KeyEntry } from './key-store.js'
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

  init(entry: KeyEntry, nowMs: number): void {
    entry.a = Math.floor(nowMs / this.windowMs)
    entry.b = 0
    entry.c = 0
  }

  refresh(entry: KeyEntry, nowMs: number): void {
    const index = Math.floor(nowMs / this.windowMs)
    if (index <= entry.a) return
    entry.c = index === entry.a + 1 ? entry.b : 0
    entry.b = 0
    entry.a = index
  }

  /** Requests counted now: the current window plus the previous one weighted by its overlap. */
  #estimate(entry: KeyEntry, nowMs: number): number {
    const elapsed = nowMs - entry.a * this.windowMs
    return entry.c * (1 - elapsed / this.windowMs) + entry.b
  }

  admits(entry: KeyEntry, nowMs: number): boolean {
    return this.#estimate(entry, nowMs) + 1 <= this.limit + EPSILON
  }

  take(entry: KeyEntry): void {
    entry.b += 1
  }

  refund(entry: KeyEntry): void {
    if (entry.b > 0) entry.b -= 1
  }

  remaining(entry: KeyEntry, nowMs: number): number {
    const left = Math.floor(this.limit - this.#estimate(entry, nowMs) + EPSILON)
    return left > 0 ? left : 0
  }

  /** Until nothing counts any more: the end of the next window when this one has requests. */
  resetMs(entry: KeyEntry, nowMs: number): number {
    if (entry.b > 0) return (entry.a + 2) * this.windowMs - nowMs
    if (entry.c > 0) return (entry.a + 1) * this.windowMs - nowMs
    return 0
  }

  /**
   * Until one more request fits. In this window the previous count fades linearly; if that is not enough,
   * in the next window this window's count becomes the previous one and fades in turn.
   */
  retryAfterMs(entry: KeyEntry, nowMs: number): number {
    if (this.admits(entry, nowMs)) return 0
    const w = this.windowMs
    const start = entry.a * w
    const room = this.limit - 1 - entry.b // what the previous window's share must fall to
    if (room >= 0 && entry.c > 0) {
      // c * (1 - (t - start) / w) <= room  <=>  t >= start + w * (1 - room / c)
      const t = start + w * (1 - room / entry.c)
      if (t < start + w) return Math.max(0, t - nowMs)
    }
    // Next window: b * (1 - (t - start - w) / w) <= limit - 1
    const next = start + w
    if (entry.b <= 0) return next - nowMs
    const t = next + w * (1 - (this.limit - 1) / entry.b)
    return Math.max(next, t) - nowMs
  }
}
