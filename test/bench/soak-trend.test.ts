// The soak's verdict on its samples (bench/lib/soak-trend.ts): a leak must fail it, noise must not.
import { describe, expect, it } from 'vitest'
import { figureTable, fitLine, FIGURES, judgeFigure, MIN_SAMPLES, risingLine, type FigureSpec } from '../../bench/lib/soak-trend.js'

const spec = (key: FigureSpec['key']): FigureSpec => FIGURES.find((f) => f.key === key)!
const MIB = 1024 * 1024
const seconds = (n: number): number[] => Array.from({ length: n }, (_, i) => 60 + i)

/** A deterministic scatter in [-1, 1), so the tests do not depend on Math.random. */
const jitter = (i: number): number => ((i * 7919) % 200) / 100 - 1

describe('fitLine', () => {
  it('recovers the slope and intercept of an exact line, with no error', () => {
    const xs = [0, 1, 2, 3, 4]
    const line = fitLine(xs, xs.map((x) => 3 + 2 * x))
    expect(line.slope).toBeCloseTo(2, 12)
    expect(line.intercept).toBeCloseTo(3, 12)
    expect(line.slopeStdErr).toBeCloseTo(0, 12)
  })

  it('refuses a fit it cannot make', () => {
    expect(() => fitLine([1], [1])).toThrow(/two or more/)
    expect(() => fitLine([2, 2, 2], [1, 2, 3])).toThrow(/every x is the same/)
  })
})

describe('judgeFigure', () => {
  it('fails RSS that grows 2 MiB a minute, with the slope and threshold in the line', () => {
    const ts = seconds(540)
    const rss = ts.map((t, i) => 100 * MIB + (t / 60) * 2 * MIB + jitter(i) * 3 * MIB)
    const result = judgeFigure(spec('rss'), ts, rss)
    expect(result.verdict).toBe('RISING')
    expect(result.slopePerMin!).toBeCloseTo(2, 0)
    expect(risingLine(result)).toMatch(/^RSS trends upward: slope 2\.\d\d ± 0\.\d\d MiB\/min over 540 samples after warm-up \(threshold 1 MiB\/min and a rise of 8 MiB/)
  })

  it('fails file descriptors that leak one per minute, and passes the same series without the leak', () => {
    const ts = seconds(540)
    const leaking = ts.map((t, i) => 40 + Math.floor(t / 60) + Math.round(jitter(i) * 4))
    const flat = ts.map((_, i) => 40 + Math.round(jitter(i) * 4))
    expect(judgeFigure(spec('fds'), ts, leaking).verdict).toBe('RISING')
    expect(judgeFigure(spec('fds'), ts, flat).verdict).toBe('ok')
  })

  it('passes a sawtooth heap (garbage collections) that does not grow, and fails one whose floor rises', () => {
    const ts = seconds(540)
    const sawtooth = ts.map((t) => 30 * MIB + ((t % 20) / 20) * 10 * MIB)
    const rising = ts.map((t) => 30 * MIB + ((t % 20) / 20) * 10 * MIB + (t / 60) * MIB)
    expect(judgeFigure(spec('heap'), ts, sawtooth).verdict).toBe('ok')
    expect(judgeFigure(spec('heap'), ts, rising).verdict).toBe('RISING')
  })

  it('passes an event-loop delay with a few spikes near the end (a busy neighbour), whose plain slope is over the threshold', () => {
    const ts = seconds(540)
    const spikes = new Set([520, 527, 533, 538])
    const loop = ts.map((_, i) => 0.015 + jitter(i) * 0.005 + (spikes.has(i) ? 0.4 : 0))
    const result = judgeFigure(spec('loopP99'), ts, loop)
    expect(result.slopePerMin!).toBeGreaterThan(spec('loopP99').thresholdPerMin)
    expect(result.verdict).toBe('ok')
  })

  it('does not fail on a slope within the scatter of a short series, but does on a flagrant one', () => {
    const ts = seconds(40)
    const noisy = ts.map((_, i) => 30 + (i % 2 === 0 ? 8 : -8) + (i === 39 ? 8 : 0))
    expect(judgeFigure(spec('handles'), ts, noisy).verdict).toBe('ok')
    const flagrant = ts.map((t) => 30 + (t - 60))
    expect(judgeFigure(spec('handles'), ts, flagrant).verdict).toBe('RISING')
  })

  it('lets a short run grow as a gateway does while warming up, but not a 10-minute run at the same rate', () => {
    // 6 MiB/min: the RSS of the first minutes (bench/lib/soak-trend.ts); 4 MiB over the smoke's 40 s.
    const warming = (ts: number[]): number[] => ts.map((t) => 120 * MIB + ((t - 60) / 60) * 6 * MIB)
    expect(judgeFigure(spec('rss'), seconds(40), warming(seconds(40))).verdict).toBe('ok')
    expect(judgeFigure(spec('rss'), seconds(540), warming(seconds(540))).verdict).toBe('RISING')
    // 15 MiB/min is a leak even in 40 s: 10 MiB, beyond the 8 MiB allowance.
    const leaking = seconds(40).map((t) => 120 * MIB + ((t - 60) / 60) * 15 * MIB)
    expect(judgeFigure(spec('rss'), seconds(40), leaking).verdict).toBe('RISING')
  })

  it('gives no verdict on fewer samples than it can fit', () => {
    const ts = seconds(MIN_SAMPLES - 1)
    const result = judgeFigure(spec('rss'), ts, ts.map((t) => t * MIB))
    expect(result.verdict).toBe('too few samples')
    expect(figureTable([result])).toContain('| RSS (MiB) | – | – | – ± –/min | 1/min, rise 8 | too few samples |')
  })
})
