// The breaker's state machine on an injected clock (src/policy/breaker/breaker.ts): no timers, no sleeps.
import { describe, expect, it } from 'vitest'
import { Admit, Breaker, BreakerState, STATE_NAMES, type BreakerSettings } from '../../../src/policy/breaker/breaker.js'

const SETTINGS: BreakerSettings = { windowMs: 10_000, minRequests: 20, errorRate: 50, openForMs: 5_000, halfOpenRequests: 1 }

function breakerOf(overrides: Partial<BreakerSettings> = {}, nowMs = 0): { breaker: Breaker; transitions: string[] } {
  const transitions: string[] = []
  const breaker = new Breaker({ ...SETTINGS, ...overrides }, nowMs, { onTransition: (to) => transitions.push(STATE_NAMES[to]!) })
  return { breaker, transitions }
}

/** `calls` requests admitted while closed and ended at `nowMs`, the first `failures` of them failed. */
function feed(breaker: Breaker, nowMs: number, calls: number, failures: number): void {
  for (let i = 0; i < calls; i++) {
    const admission = breaker.admit(nowMs)
    expect(admission).toBe(Admit.Closed)
    breaker.record(nowMs, i < failures, admission)
  }
}

describe('Breaker: closed -> open', () => {
  it('opens at errorRate once minRequests calls are in the window', () => {
    const { breaker, transitions } = breakerOf()
    feed(breaker, 100, 10, 0)
    feed(breaker, 200, 10, 10) // 20 calls, 10 failed: 50 %
    expect(breaker.state).toBe(BreakerState.Open)
    expect(transitions).toEqual(['open'])
    expect(breaker.admit(300)).toBe(Admit.Refused)
  })

  it('stays closed below errorRate', () => {
    const { breaker } = breakerOf()
    feed(breaker, 100, 11, 0)
    feed(breaker, 200, 9, 9) // 20 calls, 9 failed: 45 %
    expect(breaker.state).toBe(BreakerState.Closed)
  })

  it('stays closed below minRequests, even with every call failing', () => {
    const { breaker } = breakerOf()
    feed(breaker, 100, 19, 19)
    expect(breaker.state).toBe(BreakerState.Closed)
    expect(breaker.snapshot(100)).toMatchObject({ requests: 19, failures: 19, errorRate: 100 })
    feed(breaker, 100, 1, 1)
    expect(breaker.state).toBe(BreakerState.Open)
  })

  it('forgets calls older than the window, one tenth at a time', () => {
    const { breaker } = breakerOf()
    feed(breaker, 0, 19, 19) // bucket [0, 1000)
    feed(breaker, 1_500, 5, 0) // bucket [1000, 2000)
    expect(breaker.snapshot(9_999).requests).toBe(24)
    // At 10 000 the first bucket leaves the window: its 19 failures no longer count.
    expect(breaker.snapshot(10_000)).toMatchObject({ requests: 5, failures: 0 })
    expect(breaker.snapshot(10_999).requests).toBe(5)
    expect(breaker.snapshot(11_000).requests).toBe(0)
    feed(breaker, 11_000, 1, 1)
    expect(breaker.state).toBe(BreakerState.Closed)
  })

  it('trips on failures spread over the window but not on ones that rolled out of it', () => {
    const { breaker } = breakerOf({ minRequests: 10 })
    for (let b = 0; b < 9; b++) feed(breaker, b * 1_000, 1, 1) // 9 failures, one per bucket
    feed(breaker, 9_999, 1, 0) // 10 calls, 90 % failed, but that was a success: no trip on a success
    expect(breaker.state).toBe(BreakerState.Closed)
    feed(breaker, 10_500, 1, 1) // the bucket at 0 rolled out: 9 failures of 10 calls
    expect(breaker.state).toBe(BreakerState.Open)
  })

  it('counts a call ended with an older clock reading in the current bucket', () => {
    const { breaker } = breakerOf()
    feed(breaker, 5_000, 1, 0)
    breaker.record(4_000, true, Admit.Closed)
    expect(breaker.snapshot(5_000)).toMatchObject({ requests: 2, failures: 1 })
  })
})

describe('Breaker: open -> half-open -> closed or open', () => {
  function opened(overrides: Partial<BreakerSettings> = {}): { breaker: Breaker; transitions: string[] } {
    const b = breakerOf({ minRequests: 2, ...overrides })
    feed(b.breaker, 1_000, 2, 2)
    expect(b.breaker.state).toBe(BreakerState.Open)
    return b
  }

  it('refuses everything for openFor, then lets exactly halfOpenRequests trials through', () => {
    const { breaker, transitions } = opened({ halfOpenRequests: 3 })
    expect(breaker.admit(5_999)).toBe(Admit.Refused)
    expect(breaker.snapshot(5_999).retryInMs).toBe(1)
    const trials = [breaker.admit(6_000), breaker.admit(6_001), breaker.admit(6_002)]
    expect(trials.every((t) => t > 0)).toBe(true)
    expect(breaker.admit(6_003)).toBe(Admit.Refused)
    expect(breaker.state).toBe(BreakerState.HalfOpen)
    expect(transitions).toEqual(['open', 'half-open'])
  })

  it('closes when every trial succeeded, with a fresh window', () => {
    const { breaker, transitions } = opened({ halfOpenRequests: 2 })
    const a = breaker.admit(6_000)
    const b = breaker.admit(6_000)
    breaker.record(6_010, false, a)
    expect(breaker.state).toBe(BreakerState.HalfOpen)
    breaker.record(6_020, false, b)
    expect(breaker.state).toBe(BreakerState.Closed)
    expect(transitions).toEqual(['open', 'half-open', 'closed'])
    expect(breaker.snapshot(6_020)).toMatchObject({ requests: 0, failures: 0 })
    expect(breaker.admit(6_030)).toBe(Admit.Closed)
  })

  it('opens again for another openFor when one trial fails', () => {
    const { breaker, transitions } = opened({ halfOpenRequests: 2 })
    const a = breaker.admit(6_000)
    const b = breaker.admit(6_000)
    breaker.record(6_010, false, a)
    breaker.record(6_500, true, b)
    expect(breaker.state).toBe(BreakerState.Open)
    expect(transitions).toEqual(['open', 'half-open', 'open'])
    expect(breaker.admit(11_499)).toBe(Admit.Refused)
    expect(breaker.admit(11_500)).toBeGreaterThan(0)
  })

  it('does not let a call admitted while closed, nor a trial of an earlier period, decide', () => {
    const { breaker } = opened({ halfOpenRequests: 1 })
    const first = breaker.admit(6_000)
    breaker.record(6_100, true, first) // open again until 11 100
    const second = breaker.admit(11_100)
    expect(second).not.toBe(first)
    breaker.record(11_200, true, Admit.Closed) // a slow call admitted long ago
    breaker.record(11_200, false, first) // a stale trial
    expect(breaker.state).toBe(BreakerState.HalfOpen)
    breaker.record(11_300, false, second)
    expect(breaker.state).toBe(BreakerState.Closed)
  })

  it('gives a trial slot back when the trial ends without a verdict', () => {
    const { breaker } = opened()
    const trial = breaker.admit(6_000)
    expect(breaker.admit(6_000)).toBe(Admit.Refused)
    breaker.forgo(trial)
    expect(breaker.admit(6_001)).toBeGreaterThan(0)
    expect(breaker.admit(6_001)).toBe(Admit.Refused)
  })

  it('turns half-open on a read after openFor, without a request', () => {
    const { breaker, transitions } = opened()
    breaker.advance(6_000)
    expect(breaker.state).toBe(BreakerState.HalfOpen)
    expect(transitions).toEqual(['open', 'half-open'])
    expect(breaker.snapshot(6_000).retryInMs).toBeNull()
  })
})
