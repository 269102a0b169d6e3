// The fault drill's judges (bench/lib/drill-checks.ts): what counts as an explained error, how the upstream's
// hits are counted per limiter window, and when convergence is late.
import { describe, expect, it } from 'vitest'
import { convergenceProblem, limitBreaches, unexpectedErrors, type DrillOutcome, type Explanation } from '../../bench/lib/drill-checks.js'

const outcome = (o: Partial<DrillOutcome>): DrillOutcome => ({
  gateway: 0, path: '/limited/deny', status: 503, code: 'RATE_LIMIT_UNAVAILABLE', startMs: 1_000, endMs: 1_050, error: null, ...o,
})

const stall: Explanation = {
  why: 'Redis stalled', fromMs: 1_000, toMs: 2_000, gateway: null, paths: ['/limited/deny'], statuses: [503], codes: ['RATE_LIMIT_UNAVAILABLE'],
}

describe('unexpectedErrors', () => {
  it.each([
    ['inside the span', {}, 0],
    ['a request that began before the span and ended in it', { startMs: 900, endMs: 1_001 }, 0],
    ['after the span', { startMs: 2_001, endMs: 2_010 }, 1],
    ['on another route', { path: '/api/a' }, 1],
    ['with another code', { code: 'OVERLOADED' }, 1],
    ['with another status', { status: 502 }, 1],
    ['without a response', { status: 0, code: null, error: 'other side closed' }, 1],
  ] as const)('judges an error %s', (_name, fields, expected) => {
    expect(unexpectedErrors([outcome(fields)], [stall])).toHaveLength(expected)
  })

  it('never counts a 2xx, a 404 or a 429 as an error', () => {
    expect(unexpectedErrors([200, 404, 429].map((status) => outcome({ status, code: null })), [])).toEqual([])
  })

  it('limits an explanation to its gateway when it names one', () => {
    const one = { ...stall, gateway: 1 }
    expect(unexpectedErrors([outcome({ gateway: 1 }), outcome({ gateway: 2 })], [one]).map((o) => o.gateway)).toEqual([2])
  })
})

describe('limitBreaches', () => {
  // 3 hits sent and received in window [0, 1000), one straddling into [1000, 2000), 2 in [1000, 2000).
  const hits = [
    { sentMs: 10, arrivedMs: 12 }, { sentMs: 500, arrivedMs: 501 }, { sentMs: 990, arrivedMs: 995 },
    { sentMs: 999, arrivedMs: 1_003 },
    { sentMs: 1_100, arrivedMs: 1_101 }, { sentMs: 1_900, arrivedMs: 1_950 },
  ]

  it('counts per fixed window and leaves out the hits whose window is not certain', () => {
    const report = limitBreaches(hits, 3, 1_000)
    expect(report.breaches).toEqual([])
    expect(report.uncertain).toBe(1)
    expect(report.fullest).toEqual({ startMs: 0, admitted: 3, bound: 3 })
  })

  it('finds the window over the limit', () => {
    expect(limitBreaches(hits, 2, 1_000).breaches).toEqual([{ startMs: 0, admitted: 3, bound: 2 }])
  })

  it('applies an allowance to the windows it overlaps only', () => {
    const report = limitBreaches(hits, 2, 1_000, [{ why: 'store down', fromMs: 400, toMs: 600, bound: 10 }])
    expect(report.breaches).toEqual([])
    expect(report.fullestAllowed).toEqual({ startMs: 0, admitted: 3, bound: 10 })
    expect(limitBreaches(hits, 2, 1_000, [{ why: 'store down', fromMs: 1_000, toMs: 1_500, bound: 10 }]).breaches).toHaveLength(1)
  })
})

describe('convergenceProblem', () => {
  it('accepts convergence within the limit and says why otherwise', () => {
    expect(convergenceProblem(999, 1_000)).toBeNull()
    expect(convergenceProblem(1_001, 1_000)).toMatch(/1001 ms, over the 1000 ms/)
    expect(convergenceProblem(null, 1_000)).toMatch(/did not all reach/)
  })
})
