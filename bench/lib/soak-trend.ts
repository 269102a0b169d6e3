// The soak's verdict on its samples: a least-squares line per figure over the samples taken after warm-up,
// and whether its slope is a rise beyond the figure's threshold. Pure functions, so a test can feed them a
// series with a known trend.
//
// A figure fails when, with `excess` = slope − 3 × (standard error of the slope):
//   excess > threshold (per minute)   and   excess × measured minutes > allowance.
// The threshold is the rate that matters over hours. The allowance is the rise a short run cannot tell from
// warm-up: in the first minutes V8 grows its heap and RSS towards the size this traffic needs (measured here:
// RSS 122 → 137 MiB over the first 2 minutes, then flat within ±5 MiB). Each allowance is 8 minutes of its
// threshold, so over a 10-minute run (9 minutes fitted after a 60-s warm-up) the threshold alone decides;
// over the 1-minute CI smoke (40 s fitted) a figure must rise by more than 1.5 allowances per minute to fail.
// The 3 standard errors keep a slope within the scatter of the samples (a heap's garbage-collection sawtooth,
// the event-loop delay of a shared machine) from failing; over 540 samples they are a small fraction of a
// threshold.

/** One figure sampled once a second from the gateway process. */
export interface FigureSpec {
  readonly key: FigureKey
  readonly label: string
  readonly unit: string
  /** Samples are divided by this before printing and fitting (bytes → MiB, seconds → ms). */
  readonly scale: number
  /** Largest slope, in `unit` per minute, that still passes. */
  readonly thresholdPerMin: number
  /** Rise over the measured window, in `unit`, that a run may show without failing (see above). */
  readonly allowance: number
  /** Why the threshold is what it is (README's Reliability section repeats these). */
  readonly why: string
}

export type FigureKey = 'rss' | 'heap' | 'fds' | 'loopP99' | 'handles'

const MIB = 1024 * 1024

/**
 * The thresholds. A leak that matters in production shows as a steady rise over hours; these catch one
 * that would cost ≥ 10 MiB of RSS, 5 MiB of heap, 5 file descriptors or handles, or 10 ms of event-loop p99
 * per 10 minutes of this traffic (~250 requests/s and a reload every 3 s), i.e. ≥ 1.4 GiB of RSS a day.
 */
export const FIGURES: readonly FigureSpec[] = [
  { key: 'rss', label: 'RSS', unit: 'MiB', scale: MIB, thresholdPerMin: 1, allowance: 8,
    why: '1 MiB/min: 10 MiB per 10 min; the heap and native buffers settle within the warm-up' },
  { key: 'heap', label: 'heap used', unit: 'MiB', scale: MIB, thresholdPerMin: 0.5, allowance: 4,
    why: '0.5 MiB/min: 5 MiB per 10 min, ~20 bytes per request at 250 req/s' },
  { key: 'fds', label: 'open fds', unit: 'fds', scale: 1, thresholdPerMin: 0.5, allowance: 4,
    why: '0.5/min: 5 per 10 min; one leaked socket per reload (every 3 s) would be 20/min' },
  { key: 'loopP99', label: 'event-loop delay p99', unit: 'ms', scale: 1e-3, thresholdPerMin: 1, allowance: 8,
    why: '1 ms/min: 10 ms per 10 min, a loop slowed by growing per-request work (a list scanned per request)' },
  { key: 'handles', label: 'active handles', unit: 'handles', scale: 1, thresholdPerMin: 0.5, allowance: 4,
    why: '0.5/min: 5 per 10 min; a timer or socket left behind per reload or registration' },
]

/** Fewer samples than this after warm-up: no verdict (the run was too short to fit a line). */
export const MIN_SAMPLES = 10
/** Standard errors the slope must clear above the threshold to fail. */
export const SIGMAS = 3

export interface Line {
  /** Per second of `x`. */
  readonly slope: number
  readonly intercept: number
  /** Standard error of the slope (0 with fewer than 3 points). */
  readonly slopeStdErr: number
}

/** Ordinary least squares of y on x. */
export function fitLine(xs: readonly number[], ys: readonly number[]): Line {
  const n = xs.length
  if (n !== ys.length || n < 2) throw new Error(`fitLine: need two or more (x, y) pairs, got ${n} and ${ys.length}`)
  let sx = 0
  let sy = 0
  for (let i = 0; i < n; i++) { sx += xs[i]!; sy += ys[i]! }
  const mx = sx / n
  const my = sy / n
  let sxx = 0
  let sxy = 0
  for (let i = 0; i < n; i++) {
    const dx = xs[i]! - mx
    sxx += dx * dx
    sxy += dx * (ys[i]! - my)
  }
  if (sxx === 0) throw new Error('fitLine: every x is the same')
  const slope = sxy / sxx
  const intercept = my - slope * mx
  if (n < 3) return { slope, intercept, slopeStdErr: 0 }
  let sse = 0
  for (let i = 0; i < n; i++) {
    const r = ys[i]! - (intercept + slope * xs[i]!)
    sse += r * r
  }
  return { slope, intercept, slopeStdErr: Math.sqrt(sse / (n - 2) / sxx) }
}

export type Verdict = 'ok' | 'RISING' | 'too few samples'

export interface FigureResult {
  readonly key: FigureKey
  readonly label: string
  readonly unit: string
  readonly samples: number
  /** Mean of the first and of the last (up to) 10 samples after warm-up, in `unit`. */
  readonly start: number | null
  readonly end: number | null
  /** In `unit` per minute. */
  readonly slopePerMin: number | null
  readonly slopeStdErrPerMin: number | null
  readonly thresholdPerMin: number
  readonly allowance: number
  readonly verdict: Verdict
}

const isRising = (excessPerMin: number, minutes: number, spec: FigureSpec): boolean =>
  excessPerMin > spec.thresholdPerMin && excessPerMin * minutes > spec.allowance

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length

/** The verdict on one figure; `times` in seconds, `values` raw (bytes, seconds, counts). */
export function judgeFigure(spec: FigureSpec, times: readonly number[], values: readonly number[]): FigureResult {
  const base = { key: spec.key, label: spec.label, unit: spec.unit, samples: values.length, thresholdPerMin: spec.thresholdPerMin, allowance: spec.allowance }
  if (values.length < MIN_SAMPLES) {
    return { ...base, start: null, end: null, slopePerMin: null, slopeStdErrPerMin: null, verdict: 'too few samples' }
  }
  const scaled = values.map((v) => v / spec.scale)
  const line = fitLine(times, scaled)
  const slopePerMin = line.slope * 60
  const slopeStdErrPerMin = line.slopeStdErr * 60
  const edge = Math.min(10, Math.floor(scaled.length / 2))
  return {
    ...base,
    start: mean(scaled.slice(0, edge)),
    end: mean(scaled.slice(-edge)),
    slopePerMin,
    slopeStdErrPerMin,
    verdict: isRising(slopePerMin - SIGMAS * slopeStdErrPerMin, (times[times.length - 1]! - times[0]!) / 60, spec) ? 'RISING' : 'ok',
  }
}

/** The one line that says why a figure failed. */
export function risingLine(r: FigureResult): string {
  return `${r.label} trends upward: slope ${fmt(r.slopePerMin)} ± ${fmt(r.slopeStdErrPerMin)} ${r.unit}/min ` +
    `over ${r.samples} samples after warm-up (threshold ${r.thresholdPerMin} ${r.unit}/min and a rise of ${r.allowance} ${r.unit}; ` +
    `fails when slope − ${SIGMAS}σ exceeds both)`
}

function fmt(value: number | null, digits = 2): string {
  if (value === null) return '–'
  const text = value.toFixed(digits)
  return text === `-${(0).toFixed(digits)}` ? (0).toFixed(digits) : text
}

/** figure | start | end | slope | threshold | verdict, as a markdown table. */
export function figureTable(results: readonly FigureResult[]): string {
  const rows = results.map((r) => `| ${r.label} (${r.unit}) | ${fmt(r.start, 1)} | ${fmt(r.end, 1)} | ` +
    `${fmt(r.slopePerMin)} ± ${fmt(r.slopeStdErrPerMin)}/min | ${r.thresholdPerMin}/min, rise ${r.allowance} | ${r.verdict} |`)
  return ['| figure | start | end | slope | threshold | verdict |', '|---|---:|---:|---:|---:|---|', ...rows].join('\n')
}
