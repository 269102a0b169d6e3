// The checks of the load scenarios against bench/README.md "Targets": one line each, "met" or "NOT met".
// Ratios print with three decimals: 0.899 must not print as a "0.90" that fails a 0.9 target.
import { CORE_PEER } from './peers.js'
import { idleRssCheck, pairedCpuAdded, pairedP99Ratio, pairedRpsRatio, type PairedRatio, type PeerResult, type ScenarioReport } from './report.js'
import { formatUs } from './units.js'

/** bench/README.md "Targets". */
export const TARGETS = {
  /** Tollgate's req/s at least this share of the thinnest forwarder's (undici-stream), p99 at most this multiple. */
  rpsRatio: 0.9,
  p99Ratio: 1.2,
  /** Idle RSS of a one-route gateway. */
  idleRssMiB: 80,
  /** Scenario policies (two limiters, a closed breaker, passive health): Tollgate's req/s at least this share of its core path. */
  policiesRatio: 0.9,
  /** Scenario policies: the CPU per request those policies add to the core path's. */
  policiesCpuUs: 1,
  /** Scenario limits (the two local limiters alone): Tollgate's req/s at least this share of its core path. */
  limitsRatio: 0.95,
  /** Scenario limits: the CPU per request the two local limiters add to the core path's. */
  limitsCpuUs: 1,
  /** Scenario cluster-limit: Tollgate's req/s at least this share of its core path, the Redis round trip included. */
  clusterRatio: 0.5,
  /** Scenario breaker-open: the open breaker's refusals at least this multiple of the core path's req/s. */
  breakerOpenRatio: 1.5,
  /**
   * Scenario failing-upstream: CPU per request of the failure path (upstream 500, breaker closed) at most this
   * multiple of the core path's success. The target is "no more than the success path"; the 5% is the noise of
   * two interleaved runs of the same work on the busy 2-core VM (bench/README.md "Targets").
   */
  failureCpuRatio: 1.05,
  /** Scenario tracing (1% sampled, OTLP export on): Tollgate's req/s at least this share of its core path. */
  tracingRatio: 0.97,
  /** Scenario access-log: Tollgate writing one access line per request (to a file) at least this share of its core path (log off). */
  accessLogRatio: 0.9,
  /** Scenario full-chain (every local policy, tracing, access log): req/s at least this share of undici-stream's, p99 at most this multiple. */
  fullChainRpsRatio: 0.85,
  fullChainP99Ratio: 1.3,
} as const

/** The scenario whose Tollgate is the core path (one route, no policies) when a core-baseline scenario has no tollgate-core. */
export const CORE_SCENARIO = 'small'
/** Scenarios measured against the core path rather than against undici-stream. */
const CORE_BASELINE_SCENARIOS = new Set(['policies', 'limits', 'cluster-limit', 'breaker-open', 'failing-upstream', 'tracing', 'tracing-all', 'access-log', 'workers', 'key-auth', 'jwt-auth', 'split', 'split-sticky', 'mirror', 'plugin'])

const met = (isMet: boolean): string => (isMet ? 'met' : 'NOT met')

/**
 * The repetition-by-repetition ratio beside a ratio of medians (report.ts pairedRpsRatio), when there are
 * enough pairs: `; pairs 0.838 (0.729–0.867, 5)`.
 */
function pairsText(paired: PairedRatio | null): string {
  return paired === null ? '' : `; pairs ${paired.median.toFixed(3)} (${paired.min.toFixed(3)}–${paired.max.toFixed(3)}, ${paired.pairs})`
}

/**
 * A req/s target is met when the ratio of the medians and, with enough pairs, the median of the
 * repetitions' own ratios both reach it: on this VM one slow spell can put one peer's median far off, and a
 * run then printed "met" while its pairs said otherwise (full-chain 0.988× against pairs 0.82, 2026-12-04).
 */
function meetsRatio(ratio: number, paired: PairedRatio | null, target: number): boolean {
  return ratio >= target && (paired === null || paired.median >= target)
}

/** A p99 target (at most `target` times the peer's) is met in the same two ways: the medians and the pairs. */
function meetsP99(ratio: number, paired: PairedRatio | null, target: number): boolean {
  return ratio <= target && (paired === null || paired.median <= target)
}

/** Tollgate's result in `scenario`, if it has figures. */
function tollgateIn(reports: readonly ScenarioReport[], scenario: string): PeerResult | null {
  const result = reports.find((r) => r.name === scenario)?.results.find((r) => r.peer === 'tollgate')
  return result?.rps == null ? null : result
}

/**
 * The full-chain scenarios' targets against undici-stream (issue 15): the chain without the cluster limiter has
 * its own, looser targets; with it, the figures are printed without a target.
 */
const FORWARDER_TARGETS: ReadonlyMap<string, { readonly rps: number, readonly p99: number } | null> = new Map([
  ['full-chain', { rps: TARGETS.fullChainRpsRatio, p99: TARGETS.fullChainP99Ratio }],
  ['full-chain-cluster', null],
])

/** Tollgate against undici-stream, per scenario that ran both (the core-baseline scenarios have targets of their own). */
export function forwarderChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  for (const report of reports) {
    if (CORE_BASELINE_SCENARIOS.has(report.name)) continue
    const tollgate = report.results.find((r) => r.peer === 'tollgate')
    const thin = report.results.find((r) => r.peer === 'undici-stream')
    if (tollgate?.rps == null || tollgate.p99Ms === null || thin?.rps == null || thin.p99Ms === null) continue
    const rpsRatio = tollgate.rps.median / thin.rps.median
    const p99Ratio = tollgate.p99Ms.median / thin.p99Ms.median
    const paired = pairedRpsRatio(tollgate, thin)
    const pairedP99 = pairedP99Ratio(tollgate, thin)
    const own = FORWARDER_TARGETS.get(report.name)
    if (own === null) {
      checks.push(`${report.name}: tollgate ÷ undici-stream req/s ${rpsRatio.toFixed(3)}${pairsText(paired)}, ` +
        `p99 ${p99Ratio.toFixed(3)}${pairsText(pairedP99)} (no target)`)
      continue
    }
    const target = own ?? { rps: TARGETS.rpsRatio, p99: TARGETS.p99Ratio }
    const isMet = meetsRatio(rpsRatio, paired, target.rps) && meetsP99(p99Ratio, pairedP99, target.p99)
    checks.push(`${report.name}: tollgate ÷ undici-stream req/s ${rpsRatio.toFixed(3)}${pairsText(paired)} (target ≥ ${target.rps}), ` +
      `p99 ${p99Ratio.toFixed(3)}${pairsText(pairedP99)} (target ≤ ${target.p99}): ${met(isMet)}`)
  }
  return checks
}

/** The core path a limit or breaker scenario is judged against: its own tollgate-core, interleaved with it, else small's tollgate. */
function baselineOf(reports: readonly ScenarioReport[], scenario: string): { readonly result: PeerResult, readonly name: string } | null {
  const own = reports.find((r) => r.name === scenario)?.results.find((r) => r.peer === CORE_PEER)
  if (own?.rps != null) return { result: own, name: CORE_PEER }
  const small = tollgateIn(reports, CORE_SCENARIO)
  return small === null ? null : { result: small, name: `${CORE_SCENARIO} tollgate` }
}

/**
 * Tollgate in `scenario` against its core path: the req/s ratio, both CPU figures, and the CPU added per
 * request as a printable line. Null when Tollgate has no figures there; a string (the line to print) when
 * there is no core path to judge it by.
 */
interface AgainstCore {
  readonly measured: PeerResult
  readonly baselineName: string
  readonly ratio: number
  /** Against the scenario's own tollgate-core (interleaved), repetition by repetition; null against small's. */
  readonly paired: PairedRatio | null
  readonly cpu: number | null
  readonly coreCpu: number | null
  /** "a µs (tollgate) − b µs (baseline) = c µs", or null without /proc; with pairs, their median difference after it. */
  readonly added: string | null
  /** Against the scenario's own tollgate-core: the CPU difference repetition by repetition (µs); null otherwise. */
  readonly pairedAdded: PairedRatio | null
}

function againstCore(reports: readonly ScenarioReport[], scenario: string): AgainstCore | string | null {
  const measured = tollgateIn(reports, scenario)
  if (measured === null) return null
  const baseline = baselineOf(reports, scenario)
  if (baseline === null) return `${scenario}: no check against the core path: neither ${CORE_PEER} nor scenario ${CORE_SCENARIO} ran in this run`
  const cpu = measured.cpuUsPerRequest?.median ?? null
  const coreCpu = baseline.result.cpuUsPerRequest?.median ?? null
  const pairedAdded = baseline.name === CORE_PEER && cpu !== null && coreCpu !== null ? pairedCpuAdded(measured, baseline.result) : null
  const pairsAdded = pairedAdded === null ? ''
    : `; pairs ${formatUs(pairedAdded.median)} µs (${formatUs(pairedAdded.min)} to ${formatUs(pairedAdded.max)}, ${pairedAdded.pairs})`
  return {
    measured,
    baselineName: baseline.name,
    ratio: measured.rps!.median / baseline.result.rps!.median,
    paired: baseline.name === CORE_PEER ? pairedRpsRatio(measured, baseline.result) : null,
    cpu,
    coreCpu,
    added: cpu === null || coreCpu === null ? null : `${formatUs(cpu)} µs (tollgate) − ${formatUs(coreCpu)} µs (${baseline.name}) = ${formatUs(cpu - coreCpu)} µs${pairsAdded}`,
    pairedAdded,
  }
}

/** A CPU target is met, as a req/s target (meetsRatio), when the difference of the medians and, with pairs, their median difference both keep to it. */
function meetsCpu(c: AgainstCore, targetUs: number): boolean {
  return c.cpu! - c.coreCpu! <= targetUs && (c.pairedAdded === null || c.pairedAdded.median <= targetUs)
}

/**
 * The limit scenarios against Tollgate's core path: req/s ratios (medians over repetitions) and the CPU the
 * policies add per request (median CPU/request minus the core path's). The core path is the scenario's own
 * tollgate-core when it ran (the same minutes, interleaved), else Tollgate in scenario small (run before,
 * so a slow spell of the machine in either moves the figures). Without either, a line says so.
 */
export function limiterChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  for (const [scenario, target] of [['policies', TARGETS.policiesRatio], ['limits', TARGETS.limitsRatio], ['cluster-limit', TARGETS.clusterRatio]] as const) {
    const c = againstCore(reports, scenario)
    if (c === null) continue
    if (typeof c === 'string') {
      checks.push(c)
      continue
    }
    checks.push(`${scenario}: tollgate req/s ÷ ${c.baselineName} req/s ${c.ratio.toFixed(3)}${pairsText(c.paired)} (target ≥ ${target}): ${met(meetsRatio(c.ratio, c.paired, target))}`)
    if (c.added === null) {
      checks.push(`${scenario}: CPU per request not measured (no /proc)`)
      continue
    }
    checks.push(scenario === 'policies'
      ? `policies: the CPU per request of the limiters, breaker and passive health ${c.added} (target ≤ ${TARGETS.policiesCpuUs} µs): ${met(meetsCpu(c, TARGETS.policiesCpuUs))}`
      : scenario === 'limits'
        ? `limits: the CPU per request of the two local limiters ${c.added} (target ≤ ${TARGETS.limitsCpuUs} µs): ${met(meetsCpu(c, TARGETS.limitsCpuUs))}`
        : `${scenario}: the cluster limiter's CPU per request ${c.added} (no target)`)
  }
  // Issue 17: policies with key auth and an access list on; figures against the core path, no target yet.
  const auth = againstCore(reports, 'key-auth')
  if (typeof auth === 'string') checks.push(auth)
  else if (auth !== null) {
    checks.push(`key-auth: tollgate req/s ÷ ${auth.baselineName} req/s ${auth.ratio.toFixed(3)} (no target)`)
    checks.push(auth.added === null ? 'key-auth: CPU per request not measured (no /proc)'
      : `key-auth: the CPU per request of the access list, key auth (SHA-256 of the key), limiters, breaker and passive health ${auth.added} (no target)`)
  }
  // Issue 17 item 6: the same with JWT auth (RS256, one token repeated: the verification cache hits).
  const jwt = againstCore(reports, 'jwt-auth')
  if (typeof jwt === 'string') checks.push(jwt)
  else if (jwt !== null) {
    checks.push(`jwt-auth: tollgate req/s ÷ ${jwt.baselineName} req/s ${jwt.ratio.toFixed(3)} (no target)`)
    checks.push(jwt.added === null ? 'jwt-auth: CPU per request not measured (no /proc)'
      : `jwt-auth: the CPU per request of the access list, JWT auth (a cached RS256 token), limiters, breaker and passive health ${jwt.added} (no target)`)
  }
  // Issue 17: the weighted split (a deck draw, or a hash of the sticky key) and mirroring every request.
  const what: Record<string, string> = {
    split: 'the 95/5 split\'s draw',
    'split-sticky': 'the sticky 95/5 split (a hash of x-user)',
    mirror: 'mirroring every request (a second upstream request)',
  }
  for (const [scenario, label] of Object.entries(what)) {
    const c = againstCore(reports, scenario)
    if (typeof c === 'string') checks.push(c)
    else if (c !== null) {
      checks.push(`${scenario}: tollgate req/s ÷ ${c.baselineName} req/s ${c.ratio.toFixed(3)} (no target)`)
      checks.push(c.added === null ? `${scenario}: CPU per request not measured (no /proc)` : `${scenario}: the CPU per request of ${label} ${c.added} (no target)`)
    }
  }
  // Issue 17 item 5: one synchronous onRequest plugin (README "Plugins") against the core path, no target.
  const plugin = againstCore(reports, 'plugin')
  if (typeof plugin === 'string') checks.push(plugin)
  else if (plugin !== null) {
    checks.push(`plugin: tollgate req/s ÷ ${plugin.baselineName} req/s ${plugin.ratio.toFixed(3)} (no target)`)
    checks.push(plugin.added === null ? 'plugin: CPU per request not measured (no /proc)'
      : `plugin: the CPU per request of one synchronous onRequest plugin that sets a header ${plugin.added} (no target)`)
  }
  return checks
}

/**
 * Why Tollgate's figures in a scenario with an expected answer (Scenario.expect) are not of that answer, or null:
 * responses on the wrong side of 2xx/3xx, or a failed run (the answer after the runs was wrong, or wrk failed).
 */
function notOfTheScenario(result: PeerResult): string | null {
  const unexpected = result.runs.reduce((sum, run) => sum + run.errors + run.unexpected, 0)
  if (unexpected > 0) return `${unexpected.toLocaleString('en-US')} socket errors or unexpected responses`
  return result.failures.length > 0 ? result.failures.join('; ') : null
}

const ratioOf = (a: number, b: number): string => (a / b).toFixed(3)

/**
 * The circuit breaker's two paths against the core path (the scenario's tollgate-core, else small's tollgate):
 * breaker-open, refusals per second over the core path's req/s; failing-upstream, the failure path's CPU per
 * request over the core path's success (the target), and its req/s ratio beside it.
 */
export function breakerChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  for (const scenario of ['breaker-open', 'failing-upstream'] as const) {
    const c = againstCore(reports, scenario)
    if (c === null) continue
    if (typeof c === 'string') {
      checks.push(c)
      continue
    }
    const invalid = notOfTheScenario(c.measured)
    if (invalid !== null) {
      checks.push(`${scenario}: NOT met: tollgate's figures are not of this scenario (${invalid})`)
      continue
    }
    const rps = c.ratio.toFixed(3)
    const { cpu, coreCpu } = c
    const cpuFigures = cpu === null || coreCpu === null ? null : `${formatUs(cpu)} µs (tollgate) ÷ ${formatUs(coreCpu)} µs (${c.baselineName}) = ${ratioOf(cpu, coreCpu)}`
    if (scenario === 'breaker-open') {
      const target = TARGETS.breakerOpenRatio
      checks.push(`breaker-open: refusals per second ÷ ${c.baselineName} req/s ${rps} (target ≥ ${target}): ${met(c.ratio >= target)}`)
      checks.push(`breaker-open: CPU per refusal ÷ per core-path request ${cpuFigures ?? 'not measured (no /proc)'} (no target)`)
      continue
    }
    const target = TARGETS.failureCpuRatio
    checks.push(cpuFigures === null
      ? 'failing-upstream: CPU per request not measured (no /proc)'
      : `failing-upstream: CPU per request, failure ÷ success ${cpuFigures} (target ≤ ${target}): ${met(cpu! <= coreCpu! * target)}`)
    checks.push(`failing-upstream: tollgate req/s ÷ ${c.baselineName} req/s ${rps} (no target; CPU per request above is the check)`)
  }
  return checks
}

/**
 * Tracing against the core path (the scenario's tollgate-core, else small's tollgate): with 1% sampled, the
 * req/s ratio (the target: unsampled requests pay nearly nothing); with every request sampled, what a sampled
 * request costs in CPU (no target: the figure is the point).
 */
export function tracingChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  for (const scenario of ['tracing', 'tracing-all'] as const) {
    const c = againstCore(reports, scenario)
    if (c === null) continue
    if (typeof c === 'string') {
      checks.push(c)
      continue
    }
    if (scenario === 'tracing') {
      checks.push(`tracing: tollgate req/s ÷ ${c.baselineName} req/s ${c.ratio.toFixed(3)}${pairsText(c.paired)} with 1% sampled (target ≥ ${TARGETS.tracingRatio}): ${met(meetsRatio(c.ratio, c.paired, TARGETS.tracingRatio))}`)
      checks.push(`tracing: CPU per request of tracing at 1% sampled ${c.added ?? 'not measured (no /proc)'} (no target)`)
    } else {
      checks.push(`tracing-all: CPU per sampled request (a SERVER and a CLIENT span, exported) ${c.added ?? 'not measured (no /proc)'}; req/s ÷ ${c.baselineName} ${c.ratio.toFixed(3)} (no target)`)
    }
  }
  return checks
}

/**
 * The access log against the core path with it off (the scenario's tollgate-core, else small's tollgate): the
 * req/s ratio (the target) and the CPU one access line adds per request.
 */
export function accessLogChecks(reports: readonly ScenarioReport[]): string[] {
  const c = againstCore(reports, 'access-log')
  if (c === null) return []
  if (typeof c === 'string') return [c]
  const target = TARGETS.accessLogRatio
  return [
    `access-log: tollgate req/s ÷ ${c.baselineName} req/s ${c.ratio.toFixed(3)}${pairsText(c.paired)} (target ≥ ${target}): ${met(meetsRatio(c.ratio, c.paired, target))}`,
    c.added === null ? 'access-log: CPU per request not measured (no /proc)' : `access-log: the CPU per request of the access line ${c.added} (no target)`,
  ]
}

/**
 * Scenario workers: --workers 2 (tollgate) against --workers 1 (its tollgate-core) on the same load, req/s
 * and CPU per request, printed without a target (what it shows depends on the cores the bench had; its note
 * says which).
 */
export function workersChecks(reports: readonly ScenarioReport[]): string[] {
  const two = tollgateIn(reports, 'workers')
  const one = reports.find((r) => r.name === 'workers')?.results.find((r) => r.peer === CORE_PEER)
  if (two === null) return []
  if (one?.rps == null) return ['workers: no --workers 1 figures in this run (peer tollgate-core)']
  const ratio = two.rps!.median / one.rps.median
  const cpu2 = two.cpuUsPerRequest?.median ?? null
  const cpu1 = one.cpuUsPerRequest?.median ?? null
  const cpu = cpu2 === null || cpu1 === null ? '' : `; CPU per request ${formatUs(cpu2)} µs ÷ ${formatUs(cpu1)} µs = ${(cpu2 / cpu1).toFixed(3)}`
  return [`workers: --workers 2 ÷ --workers 1 req/s ${ratio.toFixed(3)}${cpu} (no target)`]
}

/** Every load-scenario check, in the order printed. `oneRouteScenarios`: see idleRssCheck. */
export function scenarioChecks(reports: readonly ScenarioReport[], oneRouteScenarios: ReadonlySet<string>): string[] {
  const checks = [...forwarderChecks(reports), ...limiterChecks(reports), ...breakerChecks(reports), ...tracingChecks(reports), ...accessLogChecks(reports), ...workersChecks(reports)]
  const idle = idleRssCheck(reports, oneRouteScenarios, TARGETS.idleRssMiB)
  if (idle !== null) checks.push(idle)
  return checks
}
