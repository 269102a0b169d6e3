import { describe, expect, it } from 'vitest'
import { hash32 } from '../../src/upstream/balancer.js'
import { TrafficSplit } from '../../src/upstream/traffic-split.js'

const split = (weights: number[]): TrafficSplit => new TrafficSplit(weights, [], null, weights.map(() => ({ run: () => 0 })))

function counts(s: TrafficSplit, n: number, sides: number): number[] {
  const out = new Array<number>(sides).fill(0)
  for (let i = 0; i < n; i++) out[s.draw()]!++
  return out
}

describe('TrafficSplit', () => {
  it('splits every deck exactly by the weights, in a different order each deck', () => {
    const s = split([95, 5])
    expect(counts(s, 100, 2)).toEqual([95, 5])
    expect(counts(s, 100, 2)).toEqual([95, 5])
    const t = split([3, 2, 0, 1])
    expect(counts(t, 6000, 4)).toEqual([3000, 2000, 0, 1000])
    // Two decks of 50/50 dealt in the same order twice in a row, 20 times over: chance 2^-20 for a fair shuffle.
    const fifty = split([50, 50])
    const orders = new Set<string>()
    for (let d = 0; d < 20; d++) orders.add(Array.from({ length: 2 }, () => fifty.draw()).join(''))
    expect(orders.size).toBe(2)
  })

  it('reduces the weights by their greatest common divisor, and draws independently past 10,000 cards', () => {
    expect(counts(split([500_000, 500_000]), 2, 2)).toEqual([1, 1])
    const odd = split([99_991, 9])
    const c = counts(odd, 100_000, 2)
    // Independent draws: 9 per 100,000 expected on the small side, sigma 3.
    expect(c[1]).toBeLessThan(40)
    expect(c[0]! + c[1]!).toBe(100_000)
  })

  it('gives each hash the upstream whose slice holds it, so a weight change moves only keys between the old and new boundary', () => {
    const before = split([95, 5])
    const after = split([90, 10])
    for (let k = 0; k < 10_000; k++) {
      const h = hash32(`user-${k}`)
      const a = before.slice(h)
      const b = after.slice(h)
      const point = h / 2 ** 32
      expect(a).toBe(point < 0.95 ? 0 : 1)
      if (a !== b) expect([a, b, point >= 0.9 && point < 0.95]).toEqual([0, 1, true])
    }
    expect(before.slice(0)).toBe(0)
    expect(before.slice(2 ** 32 - 1)).toBe(1)
  })

  it('spreads similar keys over the whole hash range', () => {
    const buckets = new Array<number>(10).fill(0)
    for (let k = 0; k < 10_000; k++) buckets[Math.floor((hash32(`user-${k}`) / 2 ** 32) * 10)]!++
    // 1,000 per tenth expected, sigma 30: +-150 is 5 sigma.
    for (const b of buckets) expect(Math.abs(b - 1000)).toBeLessThan(150)
  })
})
