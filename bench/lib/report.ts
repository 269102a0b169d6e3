// The results: their shape in the JSON report, and the markdown tables printed on stdout.
import type { LoadResult } from './load.js'
import { spread, type Spread } from './stats.js'
import { formatCount, formatMiB, formatMs, formatRatio, formatUs } from './units.js'

/** One measured run: the load generator's figures and the peer's CPU time over the run. */
export interface MeasuredRun extends LoadResult {
  /**
   * CPU time (user + system) of the peer's process group during the run, in µs, divided by the requests the
   * load generator completed; null for `direct` or when /proc could not be read.
   */
  readonly cpuUsPerRequest: number | null
  /**
   * Responses other than the peer must give, as far as the load generator tells them apart: non-2xx/3xx ones,
   * or, in a scenario that expects an error status (Scenario.expect), the 2xx/3xx ones.
   */
  readonly unexpected: number
  /** Its repetition (1-based): runs of two peers with the same one ran back to back (pairedRpsRatio). */
  readonly rep?: number
  /** The peer's process (null: no process of its own, `direct`); Scenario.freshPeers starts one per repetition. */
  readonly pid?: number | null
}

export interface PeerResult {
  readonly peer: string
  readonly runs: MeasuredRun[]
  /** Runs whose load generator failed, with the reason. */
  readonly failures: string[]
  rps: Spread | null
  p50Ms: Spread | null
  p99Ms: Spread | null
  /** Over the runs that have it (MeasuredRun.cpuUsPerRequest). */
  cpuUsPerRequest: Spread | null
  /** RSS right after start, before any load. */
  rssIdleKib: number | null
  /** Highest RSS seen while under load in this scenario. */
  rssMaxLoadKib: number | null
  /** tollgate's median req/s divided by this peer's. */
  tollgateRatio: number | null
  exitCode: number | null
}

export interface Skip {
  readonly peer: string
  readonly reason: string
}

export interface ScenarioReport {
  readonly name: string
  readonly description: string
  readonly path: string
  readonly method: string
  skipped: string | null
  readonly skippedPeers: Skip[]
  readonly results: PeerResult[]
  /** Lines printed under the table (e.g. what the scenario's redis-server saw). */
  readonly notes: string[]
}

/** Pad columns so the markdown also reads well as plain text. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], rightAligned: readonly boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const cell = (text: string, i: number): string => (rightAligned[i] === true ? text.padStart(widths[i]!) : text.padEnd(widths[i]!))
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => cell(c, i)).join(' | ')} |`
  const rule = `|${widths.map((w, i) => (rightAligned[i] === true ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`
  return [line(header), rule, ...rows.map(line)].join('\n')
}

const DASH = '–'

export function scenarioTable(report: ScenarioReport): string {
  const rows = report.results.map((r) => {
    const bad = r.runs.reduce((sum, run) => sum + run.errors + run.unexpected, 0)
    return [
      r.peer,
      r.rps === null ? DASH : formatCount(r.rps.median),
      r.rps === null ? DASH : `${formatCount(r.rps.min)}–${formatCount(r.rps.max)}`,
      r.p50Ms === null ? DASH : formatMs(r.p50Ms.median),
      r.p99Ms === null ? DASH : formatMs(r.p99Ms.median),
      r.cpuUsPerRequest === null ? DASH : formatUs(r.cpuUsPerRequest.median),
      r.tollgateRatio === null ? DASH : formatRatio(r.tollgateRatio),
      String(bad) + (r.failures.length > 0 ? ` (${r.failures.length} failed)` : ''),
    ]
  })
  return markdownTable(['peer', 'req/s', 'min–max', 'p50 ms', 'p99 ms', 'CPU µs/req', 'tollgate ÷ peer', 'errors'], rows,
    [false, true, true, true, true, true, true, true])
}

export function rssTable(report: ScenarioReport): string {
  const rows = report.results.filter((r) => r.rssIdleKib !== null).map((r) => [
    r.peer,
    formatMiB(r.rssIdleKib!),
    r.rssMaxLoadKib === null ? DASH : formatMiB(r.rssMaxLoadKib),
  ])
  return markdownTable(['peer', 'RSS idle MiB', `RSS under load MiB (max, ${report.name})`], rows, [false, true, true])
}

/**
 * The idle-RSS check line: Tollgate's idle RSS in the first scenario that runs it with the one-route config
 * (`oneRouteScenarios`); a scenario with 10k routes holds them in memory, so it does not count. Null when
 * no such scenario ran Tollgate.
 */
export function idleRssCheck(reports: readonly ScenarioReport[], oneRouteScenarios: ReadonlySet<string>, targetMiB: number): string | null {
  for (const report of reports) {
    if (!oneRouteScenarios.has(report.name)) continue
    const kib = report.results.find((r) => r.peer === 'tollgate')?.rssIdleKib
    if (kib == null) continue
    return `tollgate idle RSS ${formatMiB(kib)} MiB with the one-route config (${report.name}) ` +
      `(target ≤ ${targetMiB} MiB, issue 4's "80 MB" read as MiB): ${kib / 1024 <= targetMiB ? 'met' : 'NOT met'}`
  }
  return null
}

/** The median, lowest and highest of one peer's req/s over another's in the same repetitions, and how many. */
export interface PairedRatio extends Spread {
  readonly pairs: number
}

/**
 * `a`'s req/s over `b`'s, repetition by repetition (MeasuredRun.rep), then the median: each pair ran back to
 * back (ABBA order), so a slow spell of the machine that spans both runs of a pair cancels out, where a ratio
 * of the two peers' medians can take one peer's fast runs against the other's slow ones. Null with fewer
 * than 3 pairs.
 */
export function pairedRpsRatio(a: PeerResult, b: PeerResult): PairedRatio | null {
  return pairedRatio(a, b, rpsOf)
}

/**
 * `a`'s p99 over `b`'s, repetition by repetition, as pairedRpsRatio. A run's p99 swings more than its req/s on
 * this VM (one config's 3-second runs gave 3.9 to 12.6 ms in a row, /tmp/perf/abl.sh, 2026-12-04), and one
 * run with a slow spell sets a peer's p99 median as easily as its req/s median.
 */
export function pairedP99Ratio(a: PeerResult, b: PeerResult): PairedRatio | null {
  return pairedRatio(a, b, p99Of)
}

/**
 * `a`'s CPU per request minus `b`'s, repetition by repetition, then the median (µs), as pairedRpsRatio. A
 * difference of the two medians is a difference of two figures near 60 µs that each swing by several µs with
 * the machine: the limits scenario printed 1.77 µs and 4.82 µs in two runs of the same build on 2026-12-04,
 * while 20 alternating pairs of 3 s in each order (/tmp/perf/abp.sh) put it at 0.5 and 2.6 µs. Null with
 * fewer than 3 pairs that both have the figure.
 */
export function pairedCpuAdded(a: PeerResult, b: PeerResult): PairedRatio | null {
  const differences: number[] = []
  for (const run of a.runs) {
    if (run.rep === undefined || run.cpuUsPerRequest === null) continue
    const other = b.runs.find((r) => r.rep === run.rep)
    if (other !== undefined && other.cpuUsPerRequest !== null) differences.push(run.cpuUsPerRequest - other.cpuUsPerRequest)
  }
  if (differences.length < 3) return null
  return { ...spread(differences), pairs: differences.length }
}

const rpsOf = (run: MeasuredRun): number => run.rps
const p99Of = (run: MeasuredRun): number => run.p99Ms

function pairedRatio(a: PeerResult, b: PeerResult, figure: (run: MeasuredRun) => number): PairedRatio | null {
  const ratios: number[] = []
  for (const run of a.runs) {
    if (run.rep === undefined) continue
    const other = b.runs.find((r) => r.rep === run.rep)
    if (other !== undefined && figure(other) > 0) ratios.push(figure(run) / figure(other))
  }
  if (ratios.length < 3) return null
  return { ...spread(ratios), pairs: ratios.length }
}
