import { describe, expect, it } from 'vitest'
import { equalJitterMs, fullJitterMs } from '../../src/lib/backoff.js'

describe('back-off', () => {
  it('doubles the ceiling per attempt up to the cap (random at its top)', () => {
    const top = (): number => 1
    expect([0, 1, 2, 3, 4, 5].map((n) => fullJitterMs(n, 100, 1000, top))).toEqual([100, 200, 400, 800, 1000, 1000])
    expect([0, 1, 2, 3, 4, 5].map((n) => equalJitterMs(n, 100, 1000, top))).toEqual([100, 200, 400, 800, 1000, 1000])
  })

  it('full jitter may wait nothing; equal jitter waits at least half the ceiling', () => {
    const bottom = (): number => 0
    expect(fullJitterMs(3, 100, 1000, bottom)).toBe(0)
    expect(equalJitterMs(3, 100, 1000, bottom)).toBe(400)
  })

  it('spreads waits over the whole range', () => {
    const waits = Array.from({ length: 2000 }, () => fullJitterMs(2, 100, 1000))
    expect(Math.min(...waits)).toBeLessThan(40)
    expect(Math.max(...waits)).toBeGreaterThan(360)
    expect(Math.max(...waits)).toBeLessThan(400)
  })
})
