// The local algorithms and the key store, driven by an injected clock (milliseconds as numbers): no timers,
// no sleeps. What the README's "Rate limiting" section promises, in numbers.
import { describe, expect, it } from 'vitest'
import { RequestKey } from '../../../src/http/request-key.js'
import { KeyStore } from '../../../src/policy/ratelimit/key-store.js'
import { LocalLimiter, type LocalAlgorithm } from '../../../src/policy/ratelimit/local-limiter.js'
import { SlidingWindow } from '../../../src/policy/ratelimit/sliding-window.js'
import { TokenBucket } from '../../../src/policy/ratelimit/token-bucket.js'
import { CounterCell } from '../../../src/telemetry/fast-metrics.js'

const noCount = { inc(): void {} }

function limiter(algorithm: LocalAlgorithm, store = new KeyStore(1000, () => 0)): LocalLimiter {
  return new LocalLimiter('l', algorithm, new RequestKey('route', '\u0000'), store, { allowed: new CounterCell({}), rejected: noCount })
}

/** One request of `key` at `nowMs`: true when admitted (and counted). */
function hit(l: LocalLimiter, nowMs: number, key = 'k'): boolean {
  const at = l.entryFor(key, nowMs)
  if (!l.algorithm.admits(l.store.numbers, at, nowMs)) return false
  l.algorithm.take(l.store.numbers, at)
  return true
}

function admittedAt(l: LocalLimiter, nowMs: number, tries: number, key = 'k'): number {
  let n = 0
  for (let i = 0; i < tries; i++) if (hit(l, nowMs, key)) n++
  return n
}

describe('token bucket', () => {
  it('admits exactly burst requests at once, then one per 1/rate', () => {
    const l = limiter(new TokenBucket(10, 1000, 25)) // 10/s, bucket of 25
    expect(admittedAt(l, 0, 100)).toBe(25)
    expect(admittedAt(l, 99, 10)).toBe(0) // 0.99 token
    expect(admittedAt(l, 100, 10)).toBe(1) // the first refilled token, at 1/rate
    expect(admittedAt(l, 1100, 100)).toBe(10) // one second refills rate tokens
  })

  it('never holds more than burst, however long the key was idle', () => {
    const l = limiter(new TokenBucket(10, 1000, 5))
    expect(admittedAt(l, 0, 5)).toBe(5)
    expect(admittedAt(l, 3_600_000, 100)).toBe(5)
  })

  it('lets a client hammering while limited back in on time: refused requests take nothing', () => {
    const l = limiter(new TokenBucket(1, 1000, 1))
    expect(hit(l, 0)).toBe(true)
    for (let t = 1; t < 1000; t += 10) expect(hit(l, t)).toBe(false)
    expect(hit(l, 1000)).toBe(true)
  })

  it('reports remaining, reset and Retry-After in the same numbers', () => {
    const tb = new TokenBucket(2, 1000, 4)
    const l = limiter(tb)
    expect(admittedAt(l, 0, 3)).toBe(3)
    const at = l.entryFor('k', 0)
    const n = l.store.numbers
    expect(tb.remaining(n, at)).toBe(1)
    expect(tb.resetMs(n, at)).toBe(1500) // 3 tokens at 2/s
    hit(l, 0)
    expect(tb.retryAfterMs(n, l.entryFor('k', 0))).toBe(500)
    expect(tb.policyHeader).toBe('2;w=1')
    expect(tb.limitHeader).toBe('4')
  })

  it('gives a refunded token back, never above burst', () => {
    const tb = new TokenBucket(1, 1000, 2)
    const l = limiter(tb)
    const at = l.entryFor('k', 0)
    const n = l.store.numbers
    tb.refund(n, at)
    expect(tb.remaining(n, at)).toBe(2)
    tb.take(n, at)
    tb.refund(n, at)
    expect(tb.remaining(n, at)).toBe(2)
  })
})

describe('sliding window', () => {
  it('admits exactly limit requests in a window', () => {
    const l = limiter(new SlidingWindow(10, 1000))
    expect(admittedAt(l, 0, 50)).toBe(10)
    expect(admittedAt(l, 999, 50)).toBe(0)
  })

  it('has no double burst across a window boundary: the previous window still counts by its overlap', () => {
    const l = limiter(new SlidingWindow(10, 1000))
    expect(admittedAt(l, 900, 50)).toBe(10) // all at the end of window 0
    expect(admittedAt(l, 1000, 50)).toBe(0) // window 1 starts: the previous 10 count fully
    expect(admittedAt(l, 1500, 50)).toBe(5) // half of the previous window left: 5 count
    expect(admittedAt(l, 2000, 50)).toBe(5) // window 2: the 5 of window 1 count fully
    // A fixed window would have let 20 through in 100 ms around t=1000.
  })

  it('forgets a window two windows old', () => {
    const l = limiter(new SlidingWindow(3, 1000))
    expect(admittedAt(l, 0, 10)).toBe(3)
    expect(admittedAt(l, 2000, 10)).toBe(3)
  })

  it('lets a client hammering while limited back in on time: refused requests use no slot', () => {
    const sw = new SlidingWindow(2, 1000)
    const l = limiter(sw)
    expect(admittedAt(l, 500, 2)).toBe(2)
    // Limited until the two requests of window 0 fade to one: at t = 1000 + 1000 * (1 - 1/2) = 1500.
    const refused = l.entryFor('k', 600)
    expect(sw.retryAfterMs(l.store.numbers, refused, 600)).toBe(900)
    for (let t = 600; t < 1500; t += 25) expect(hit(l, t)).toBe(false)
    expect(hit(l, 1500)).toBe(true)
  })

  it('says when the quota is full again and what the policy is', () => {
    const sw = new SlidingWindow(100, 60_000)
    const l = limiter(sw)
    hit(l, 1000)
    const at = l.entryFor('k', 1000)
    expect(sw.remaining(l.store.numbers, at, 1000)).toBe(99)
    expect(sw.resetMs(l.store.numbers, at, 1000)).toBe(119_000) // the end of the next window
    expect(sw.policyHeader).toBe('100;w=60')
  })
})

describe('key store', () => {
  it('keeps at most maxKeys keys and evicts the one idle the longest, never an active key', () => {
    const store = new KeyStore(100, () => 0)
    const l = limiter(new TokenBucket(1, 1000, 3), store)
    let now = 0
    // One client at its limit, hit between every batch of 50 new keys: 10,000 keys pass through 100 slots.
    expect(admittedAt(l, now, 3, 'active')).toBe(3)
    for (let batch = 0; batch < 200; batch++) {
      for (let i = 0; i < 50; i++) hit(l, now, `k${batch}-${i}`)
      expect(store.size).toBeLessThanOrEqual(100)
      expect(hit(l, now, 'active')).toBe(false) // still limited: its entry was never evicted
      now += 1
    }
    expect(store.size).toBe(100)
    expect(l.size).toBe(100)
  })

  it('drops a key once its bucket is full again, and the key starts over with a full bucket', () => {
    const store = new KeyStore(1000, () => 0)
    const tb = new TokenBucket(10, 1000, 5) // full after 500 ms
    const l = limiter(tb, store)
    for (let i = 0; i < 20; i++) hit(l, 0, `k${i}`)
    expect(store.size).toBe(20)
    expect(store.sweep(499)).toBe(0)
    expect(store.sweep(500)).toBe(20)
    expect(store.size).toBe(0)
    expect(l.size).toBe(0)
    expect(admittedAt(l, 500, 100, 'k0')).toBe(5)
  })

  it('sweeps idle keys but keeps the ones in use', () => {
    const store = new KeyStore(1000, () => 0)
    const l = limiter(new SlidingWindow(10, 1000), store) // idle after two windows
    hit(l, 0, 'old')
    hit(l, 1500, 'recent')
    expect(store.sweep(2000)).toBe(1)
    expect(l.peek('old')).toBe(-1)
    expect(l.peek('recent')).toBeGreaterThanOrEqual(0)
  })

  it('evicts down to a lower maxKeys at once', () => {
    const store = new KeyStore(50, () => 0)
    const l = limiter(new TokenBucket(1, 1000, 1), store)
    for (let i = 0; i < 50; i++) hit(l, i, `k${i}`)
    store.setMaxKeys(10)
    expect(store.size).toBe(10)
    expect(l.peek('k49')).toBeGreaterThanOrEqual(0) // the most recent stay
    expect(l.peek('k0')).toBe(-1)
  })

  it('a closed limiter leaves no keys in the store', () => {
    const store = new KeyStore(100, () => 0)
    const a = limiter(new TokenBucket(1, 1000, 1), store)
    const b = limiter(new TokenBucket(1, 1000, 1), store)
    for (let i = 0; i < 10; i++) { hit(a, 0, `a${i}`); hit(b, 0, `b${i}`) }
    a.close()
    expect(store.size).toBe(10)
    expect(b.size).toBe(10)
  })
})
