import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { ResponseWatch, sweepIntervalMs, type Watched } from '../../src/proxy/response-watch.js'

class Entry implements Watched {
  watchPrev: Watched | null = null
  watchNext: Watched | null = null
  sweeps = 0
  constructor(readonly onSweep: (self: Entry) => void = () => undefined) {}
  sweep(): void {
    this.sweeps++
    this.onSweep(this)
  }
}

/** Resolves after the watch's next sweep (its timer is unref'd, so a pending one keeps nothing alive). */
function nextSweep(watch: ResponseWatch, probe: Entry): Promise<void> {
  const before = probe.sweeps
  return new Promise((resolve) => {
    const check = (): void => { if (probe.sweeps > before) resolve(); else setImmediate(check) }
    check()
  })
}

describe('ResponseWatch', () => {
  it('sweeps every entry, lets an entry remove itself mid-sweep, and sweeps again for an entry added after the list emptied', async () => {
    const watch = new ResponseWatch(() => 5)
    const a = new Entry()
    const b = new Entry((self) => watch.remove(self)) // a timeout completes the request during the sweep
    const c = new Entry()
    watch.add(a)
    watch.add(b)
    watch.add(c)
    await nextSweep(watch, a)
    expect([a.sweeps, b.sweeps, c.sweeps]).toEqual([1, 1, 1])
    await nextSweep(watch, a)
    expect([a.sweeps, b.sweeps, c.sweeps]).toEqual([2, 1, 2])
    watch.remove(a)
    watch.remove(c)
    watch.remove(c) // twice: a no-op
    expect(watch.isEmpty).toBe(true)
    // Added again after the list emptied: the sweep starts again.
    watch.add(a)
    await nextSweep(watch, a)
    expect(a.sweeps).toBe(3)
    watch.remove(a)
  })

  it('stops its timer once the list is empty, and starts it again with the next entry', () => {
    vi.useFakeTimers()
    onTestFinished(() => { vi.useRealTimers() })
    const watch = new ResponseWatch(() => 5)
    const a = new Entry()
    expect(vi.getTimerCount()).toBe(0) // no entry, no timer
    watch.add(a)
    watch.add(new Entry((self) => watch.remove(self)))
    expect(vi.getTimerCount()).toBe(1) // one timer for the list, not one per entry
    vi.advanceTimersByTime(5)
    expect(a.sweeps).toBe(1)
    expect(vi.getTimerCount()).toBe(1)
    watch.remove(a)
    vi.advanceTimersByTime(5) // the sweep that finds the list empty does not schedule another
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(1000)
    expect(a.sweeps).toBe(1)
    watch.add(a)
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(5)
    expect(a.sweeps).toBe(2)
    watch.remove(a)
    vi.advanceTimersByTime(5)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('removing an entry that was never added leaves the list alone', () => {
    const watch = new ResponseWatch(() => 5)
    const a = new Entry()
    watch.add(a)
    watch.remove(new Entry())
    expect(watch.isEmpty).toBe(false)
    watch.remove(a)
    expect(watch.isEmpty).toBe(true)
  })

  it('sweeps at a tenth of the shortest response timeout, within 5-250 ms', () => {
    expect(sweepIntervalMs([30_000, 1_000])).toBe(100)
    expect(sweepIntervalMs([30_000])).toBe(250)
    expect(sweepIntervalMs([20])).toBe(5)
    expect(sweepIntervalMs([])).toBe(250)
  })
})
