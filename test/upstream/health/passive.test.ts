// Passive ejection arithmetic (src/upstream/health/passive.ts, upstream-health.ts) on real pools and
// targets; only time is faked (the re-admission timer and performance.now()).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { PassiveHealth, type PassiveSettings } from '../../../src/upstream/health/passive.js'
import { UpstreamHealth } from '../../../src/upstream/health/upstream-health.js'
import { UpstreamPool } from '../../../src/upstream/upstream-pool.js'

const SETTINGS: PassiveSettings = { consecutiveFailures: 3, ejectionTime: 1000, maxEjectionTime: 2500, maxEjectionPercent: 50 }

function setup(settings: Partial<PassiveSettings> = {}, targets = 3) {
  const events: string[] = []
  const pool = UpstreamPool.fromSpecs('api', Array.from({ length: targets }, (_, i) => ({ url: `http://127.0.0.1:${9001 + i}`, weight: 1 })), 'round-robin', null, 'route-all')
  const health = new UpstreamHealth('api', {
    targetUp: (t, up) => events.push(`${t} ${up ? 'up' : 'down'}`),
    ejected: (t, reason) => events.push(`${t} ejected ${reason}`),
  })
  health.prepare(pool.targets, false, null)
  const passive = new PassiveHealth({ ...SETTINGS, ...settings }, pool.targets, health)
  return { pool, health, passive, events, t: pool.targets }
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('passive ejection', () => {
  it('ejects after exactly consecutiveFailures failed attempts in a row; a success in between starts the count again', () => {
    const { passive, t, events } = setup()
    passive.record(t[0]!, true)
    passive.record(t[0]!, true)
    passive.record(t[0]!, false)
    passive.record(t[0]!, true)
    passive.record(t[0]!, true)
    expect(t[0]!.healthy).toBe(true)
    passive.record(t[0]!, true)
    expect(t[0]!.healthy).toBe(false)
    expect(events).toEqual(['127.0.0.1:9001 ejected passive', '127.0.0.1:9001 down'])
  })

  it('re-admits by itself when the ejection ends; the n-th ejection lasts ejectionTime x n, capped at maxEjectionTime', () => {
    const { passive, t, health } = setup()
    const eject = (): void => { for (let i = 0; i < 3; i++) passive.record(t[0]!, true) }
    const lengths: number[] = []
    for (let n = 0; n < 4; n++) {
      eject()
      expect(t[0]!.healthy).toBe(false)
      const start = performance.now()
      const until = health.stateOf(t[0]!.url)!.ejectedUntilMs
      vi.advanceTimersByTime(until - start - 1)
      expect(t[0]!.healthy).toBe(false)
      vi.advanceTimersByTime(1)
      expect(t[0]!.healthy).toBe(true)
      lengths.push(until - start)
    }
    expect(lengths).toEqual([1000, 2000, 2500, 2500])
    expect(health.stateOf(t[0]!.url)!.timesEjected).toBe(4)
  })

  it('starts the multiplier again after a target stayed in for maxEjectionTime', () => {
    const { passive, t, health } = setup()
    const eject = (): void => { for (let i = 0; i < 3; i++) passive.record(t[0]!, true) }
    eject()
    vi.advanceTimersByTime(1000)
    eject()
    vi.advanceTimersByTime(2000)
    expect(t[0]!.healthy).toBe(true)
    vi.advanceTimersByTime(2500)
    eject()
    const state = health.stateOf(t[0]!.url)!
    expect(state.ejectedUntilMs - performance.now()).toBe(1000)
    expect(state.timesEjected).toBe(1)
  })

  it('checks maxEjectionPercent after the ejection it would allow: 3 targets at 50% allow one ejection, not two', () => {
    const { passive, t } = setup()
    for (let i = 0; i < 3; i++) passive.record(t[0]!, true)
    for (let i = 0; i < 5; i++) passive.record(t[1]!, true)
    expect(t.map((x) => x.healthy)).toEqual([false, true, true])
    expect(passive.refused).toBe(3) // the 3rd, 4th and 5th failure of t[1] each asked
    // Once the first is back, the second may go.
    vi.advanceTimersByTime(1000)
    passive.record(t[1]!, true)
    expect(t.map((x) => x.healthy)).toEqual([true, false, true])
  })

  it('allows two of four at 50%, and none of one at 50%', () => {
    const four = setup({}, 4)
    for (const i of [0, 1, 2]) for (let k = 0; k < 3; k++) four.passive.record(four.t[i]!, true)
    expect(four.t.map((x) => x.healthy)).toEqual([false, false, true, true])
    const one = setup({}, 1)
    for (let k = 0; k < 3; k++) one.passive.record(one.t[0]!, true)
    expect(one.t[0]!.healthy).toBe(true)
  })

  it('does not count failures of a target while it is ejected', () => {
    const { passive, t, health } = setup()
    for (let i = 0; i < 3; i++) passive.record(t[0]!, true)
    for (let i = 0; i < 10; i++) passive.record(t[0]!, true)
    expect(health.stateOf(t[0]!.url)!.timesEjected).toBe(1)
  })
})
