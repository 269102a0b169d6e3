// The shutdown state machine (src/lifecycle/drain.ts), with real timers.
import { describe, expect, it } from 'vitest'
import { Drain, settlesBefore, type DrainState, type DrainSteps } from '../../src/lifecycle/drain.js'

function recorder(overrides: Partial<DrainSteps> = {}, delayMs = 0) {
  const seen: string[] = []
  let drain!: Drain
  const note = (step: string): void => {
    seen.push(`${step}: ${drain.state} readyz=${drain.notReadyReason() ?? 'ready'} config=${drain.acceptsConfig ? 'taken' : 'refused'}`)
  }
  drain = new Drain({
    delaying: async () => note('delaying'),
    delayMs: () => delayMs,
    draining: async () => note('draining'),
    stopping: async () => note('stopping'),
    ...overrides,
  })
  const states: DrainState[] = []
  drain.onTransition = (s) => states.push(s)
  return { drain, seen, states }
}

describe('Drain', () => {
  it('goes serving -> delaying -> draining -> stopped; /readyz says draining from the first step, config is refused from draining on', async () => {
    const { drain, seen, states } = recorder()
    expect(drain.state).toBe('serving')
    expect(drain.notReadyReason()).toBeNull()
    expect(drain.acceptsConfig).toBe(true)

    await drain.begin()

    expect(states).toEqual(['delaying', 'draining', 'stopped'])
    expect(seen).toEqual([
      'delaying: delaying readyz=draining config=taken',
      'draining: draining readyz=draining config=refused',
      'stopping: draining readyz=draining config=refused',
    ])
    expect(drain.state).toBe('stopped')
  })

  it('keeps serving for the delay before it drains', async () => {
    let delayedAt = 0
    let drainedAt = 0
    const { drain } = recorder({
      delaying: async () => { delayedAt = performance.now() },
      draining: async () => { drainedAt = performance.now() },
    }, 150)
    await drain.begin()
    expect(drainedAt - delayedAt).toBeGreaterThanOrEqual(140)
  })

  it('runs the steps once however often begin() is called', async () => {
    const { drain, seen } = recorder()
    const first = drain.begin()
    expect(drain.begin()).toBe(first)
    await Promise.all([first, drain.begin()])
    expect(seen).toHaveLength(3)
  })

  it('still closes what is left when draining fails, and reports the failure', async () => {
    const { drain, seen } = recorder({ draining: () => Promise.reject(new Error('stuck')) })
    await expect(drain.begin()).rejects.toThrow('stuck')
    expect(seen).toEqual(['delaying: delaying readyz=draining config=taken', 'stopping: draining readyz=draining config=refused'])
    expect(drain.state).toBe('stopped')
  })
})

describe('settlesBefore', () => {
  it('is true when the promise settles first, false when the deadline does', async () => {
    expect(await settlesBefore(Promise.resolve(), Date.now() + 1000)).toBe(true)
    expect(await settlesBefore(Promise.reject(new Error('x')), Date.now() + 1000)).toBe(true)
    expect(await settlesBefore(new Promise(() => undefined), Date.now() + 20)).toBe(false)
  })
})
