// The key store's table (src/policy/ratelimit/key-store.ts): records that grow, move back when a key before
// them goes, and are found again by key and limiter, checked against a plain Map of what was counted.
// Driven by an injected clock and a seeded sequence: no timers, the same run every time.
import type { IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { RequestKey } from '../../../src/http/request-key.js'
import type { QuotaSource, StepContext } from '../../../src/http/request-step.js'
import { KeyStore } from '../../../src/policy/ratelimit/key-store.js'
import { LocalLimiter, type LocalAlgorithm } from '../../../src/policy/ratelimit/local-limiter.js'
import { RateLimitStep } from '../../../src/policy/ratelimit/ratelimit-step.js'
import { SlidingWindow } from '../../../src/policy/ratelimit/sliding-window.js'
import { TokenBucket } from '../../../src/policy/ratelimit/token-bucket.js'
import { CounterCell } from '../../../src/telemetry/fast-metrics.js'

const noCount = { inc(): void {} }

function limiter(algorithm: LocalAlgorithm, store: KeyStore, key = 'route'): LocalLimiter {
  return new LocalLimiter('l', algorithm, new RequestKey(key, '\u0000'), store, { allowed: new CounterCell({}), rejected: noCount })
}

function hit(l: LocalLimiter, nowMs: number, key: string): boolean {
  const at = l.entryFor(key, nowMs)
  if (!l.algorithm.admits(l.store.numbers, at, nowMs)) return false
  l.algorithm.take(l.store.numbers, at)
  return true
}

/** Keys of every kind the table holds: short, 26 characters (the most kept inline), longer, non-Latin-1, empty, shared prefixes. */
function keyOf(i: number): string {
  switch (i % 6) {
    case 0: return `10.${(i >> 8) & 255}.${i & 255}.${i % 7}`
    case 1: return `k${i}`.padEnd(26, 'x')
    case 2: return `a-long-api-key-value-that-will-not-fit-${i}`
    case 3: return `\u00e9\u20ac${i}` // é is Latin-1, € is not
    case 4: return i === 4 ? '' : `ffff:ffff:ffff:${(i % 65536).toString(16)}::/64`
    default: return `k${i}`.padEnd(27, 'x')
  }
}

describe('key store table', () => {
  it('finds every key with its own count through growth and the moves deletions make', () => {
    const store = new KeyStore(100_000, () => 0)
    // `kept` never idles (limit far above the hits, a window of years); `churn` idles 2 ms after its last hit,
    // so sweeps drop its keys between kept's records and the table shifts records back into the holes.
    const kept = limiter(new SlidingWindow(1e9, 1e12), store)
    const churn = limiter(new TokenBucket(1, 1, 2), store)
    const counts = new Map<string, number>()
    let seed = 7
    const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8
    let now = 0
    let refused = 0
    for (let step = 0; step < 60_000; step++) {
      const key = keyOf(next() % 5000)
      if (next() % 2 === 0) {
        if (!hit(kept, now, key)) refused++
        counts.set(key, (counts.get(key) ?? 0) + 1)
      } else {
        hit(churn, now, key)
      }
      if (step % 1000 === 999) {
        now += 10
        store.sweep(now) // churn's keys are all idle: they go
        expect(churn.size).toBe(0)
      }
    }
    expect(refused).toBe(0)
    expect(kept.size).toBe(counts.size)
    expect(store.size).toBe(kept.size + churn.size)
    for (const [key, count] of counts) {
      const at = kept.peek(key)
      expect(at, key).toBeGreaterThanOrEqual(0)
      expect(kept.algorithm.remaining(store.numbers, at, now), key).toBe(1e9 - count)
    }
    expect(kept.peek('never-seen')).toBe(-1)
    expect(churn.peek(keyOf(0))).toBe(-1) // the same key string, another limiter
  })

  it('gives back the memory of a crowd of keys once the sweep dropped them, keeping the others\' counts', () => {
    const store = new KeyStore(100_000, () => 0)
    const kept = limiter(new SlidingWindow(1e9, 1e12), store)
    const crowd = limiter(new TokenBucket(1, 1, 2), store) // idle 2 ms after its last request
    for (let i = 0; i < 20; i++) for (let j = 0; j <= i; j++) hit(kept, 0, keyOf(i)) // key i counted i + 1 times
    for (let i = 0; i < 20_000; i++) hit(crowd, 0, keyOf(i))
    const crowdedBytes = store.numbers.byteLength
    expect(store.sweep(10)).toBe(20_000)
    expect(store.numbers.byteLength).toBeLessThanOrEqual(crowdedBytes / 64)
    for (let i = 0; i < 20; i++) expect(kept.algorithm.remaining(store.numbers, kept.peek(keyOf(i)), 10), keyOf(i)).toBe(1e9 - (i + 1))
    expect(store.size).toBe(20)
  })

  it('holds a key again after the sweep dropped it, even when it was the last key its limiter looked up', () => {
    const store = new KeyStore(1000, () => 0)
    const l = limiter(new TokenBucket(1, 1000, 2), store) // full again 2 s after the last request
    expect([hit(l, 0, 'k'), hit(l, 0, 'k'), hit(l, 0, 'k')]).toEqual([true, true, false])
    expect(store.sweep(2000)).toBe(1)
    expect(hit(l, 2000, 'k')).toBe(true)
    expect(l.size).toBe(1)
    expect(store.size).toBe(1)
    expect(l.algorithm.remaining(store.numbers, l.peek('k'), 2000)).toBe(1)
  })

  it('counts every request in an earlier limiter when a later limiter\'s new key makes the table grow', () => {
    const store = new KeyStore(100_000, () => 0)
    const perRoute = limiter(new TokenBucket(1, 1000, 1_000_000), store, 'route') // one key, looked up first
    const perClient = limiter(new TokenBucket(1, 1000, 10), store, 'header:x-k') // a new key each request
    const step = new RateLimitStep('r', [perRoute, perClient], [], null)
    const headers = { 'x-k': '' }
    const ctx = {
      req: { headers, url: '/' } as unknown as IncomingMessage,
      startMs: 0,
      canonicalPath: '/',
      clientIp: () => '127.0.0.1',
      reportQuota: () => {},
      refuse: () => { throw new Error('refused') },
    } as unknown as StepContext
    const positionsBefore = store.numbers.length
    for (let i = 0; i < 1000; i++) {
      headers['x-k'] = `client-${i}`
      step.run(ctx)
    }
    expect(store.numbers.length).toBeGreaterThan(positionsBefore) // it grew, moving route r's record each time
    expect(perRoute.algorithm.remaining(store.numbers, perRoute.peek('r'), 0)).toBe(1_000_000 - 1000)
    for (let i = 0; i < 1000; i++) expect(perClient.algorithm.remaining(store.numbers, perClient.peek(`client-${i}`), 0)).toBe(9)
  })

  it('takes nothing from another key\'s record when a later limiter of the request evicts an earlier one\'s key', () => {
    // maxLimiterKeys 1, two limiters: the second's new key evicts the first's, and its record takes the first's place.
    const store = new KeyStore(1, () => 0)
    const perClient = limiter(new TokenBucket(1, 1000, 1000), store, 'header:x-k')
    const perRoute = limiter(new TokenBucket(1, 1000, 5), store, 'route')
    const step = new RateLimitStep('r', [perClient, perRoute], [], null)
    const reported: number[] = []
    const ctx = {
      req: { headers: { 'x-k': 'client' }, url: '/' } as unknown as IncomingMessage,
      startMs: 0,
      canonicalPath: '/',
      clientIp: () => '127.0.0.1',
      reportQuota: (_source: QuotaSource, remaining: number) => { reported.push(remaining) },
      refuse: () => { throw new Error('refused') },
    } as unknown as StepContext
    for (let i = 0; i < 3; i++) step.run(ctx)
    expect(store.size).toBe(1)
    // perRoute's key is new each time (perClient's evicted it): a full bucket of 5, one taken. perClient's
    // record went within the request: it counts and reports nothing (its place may hold another key by then).
    expect(reported).toEqual([4, 4, 4])
  })
})
