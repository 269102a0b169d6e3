// The checks of the load scenarios against bench/README.md "Targets": one line each, "met" or "NOT met".
// Ratios print with three decimals: 0.899 must not print as a "0.90" that fails a 0.9 target.
import { idleRssCheck, type PeerResult, type ScenarioReport } from './report.js'
import { formatUs } from './units.js'

/** bench/README.md "Targets". */
export const TARGETS = {
  /** Tollgate's req/s at least this share of the thinnest forwarder's (undici-stream), p99 at most this multiple. */
  rpsRatio: 0.9,
  p99Ratio: 1.2,
  /** Idle RSS of a one-route gateway. */
  idleRssMiB: 80,
  /** Scenario policies: Tollgate's req/s at least this share of its own core path (scenario small). */
  policiesRatio: 0.95,
  /** Scenario policies: the two local limiters' CPU per request, over that of scenario small. */
  limitersCpuUs: 1,
  /** Scenario cluster-limit: Tollgate's req/s at least this share of its core path, the Redis round trip included. */
  clusterRatio: 0.5,
} as const

/** The scenario whose Tollgate is the core path: one route, no policies. */
export const CORE_SCENARIO = 'small'
/** Scenarios measured against the core path rather than against undici-stream. */
const LIMIT_SCENARIOS = new Set(['policies', 'cluster-limit'])

const met = (isMet: boolean): string => (isMet ? 'met' : 'NOT met')

function tollgateIn(reports: readonly ScenarioReport[], scenario: string): PeerResult | null {
  const result = reports.find((r) => r.name === scenario)?.results.find((r) => r.peer === 'tollgate')
  return result?.rps == null ? null : result
}

/** Tollgate against undici-stream, per scenario that ran both (the limit scenarios have targets of their own). */
export function forwarderChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  for (const report of reports) {
    if (LIMIT_SCENARIOS.has(report.name)) continue
    const tollgate = report.results.find((r) => r.peer === 'tollgate')
    const thin = report.results.find((r) => r.peer === 'undici-stream')
    if (tollgate?.rps == null || tollgate.p99Ms === null || thin?.rps == null || thin.p99Ms === null) continue
    const rpsRatio = tollgate.rps.median / thin.rps.median
    const p99Ratio = tollgate.p99Ms.median / thin.p99Ms.median
    const isMet = rpsRatio >= TARGETS.rpsRatio && p99Ratio <= TARGETS.p99Ratio
    checks.push(`${report.name}: tollgate ÷ undici-stream req/s ${rpsRatio.toFixed(3)} (target ≥ ${TARGETS.rpsRatio}), ` +
      `p99 ${p99Ratio.toFixed(3)} (target ≤ ${TARGETS.p99Ratio}): ${met(isMet)}`)
  }
  return checks
}

/**
 * The limit scenarios against Tollgate's core path in the same run: req/s ratios (medians over repetitions)
 * and, for policies, the CPU the two limiters add per request (median CPU/request of policies minus that of
 * small). A limit scenario without small in the run gets a line saying so instead.
 */
export function limiterChecks(reports: readonly ScenarioReport[]): string[] {
  const checks: string[] = []
  const core = tollgateIn(reports, CORE_SCENARIO)
  const coreCpu = core?.cpuUsPerRequest?.median ?? null
  for (const [scenario, target] of [['policies', TARGETS.policiesRatio], ['cluster-limit', TARGETS.clusterRatio]] as const) {
    const limited = tollgateIn(reports, scenario)
    if (limited === null) continue
    if (core === null) {
      checks.push(`${scenario}: no check against the core path: scenario ${CORE_SCENARIO} did not run tollgate in this run`)
      continue
    }
    const ratio = limited.rps!.median / core.rps!.median
    checks.push(`${scenario}: tollgate req/s ÷ ${CORE_SCENARIO} tollgate req/s ${ratio.toFixed(3)} (target ≥ ${target}): ${met(ratio >= target)}`)
    const cpu = limited.cpuUsPerRequest?.median ?? null
    if (cpu === null || coreCpu === null) {
      checks.push(`${scenario}: CPU per request not measured (no /proc)`)
      continue
    }
    const added = cpu - coreCpu
    const figures = `${formatUs(cpu)} µs (${scenario}) − ${formatUs(coreCpu)} µs (${CORE_SCENARIO}) = ${formatUs(added)} µs`
    checks.push(scenario === 'policies'
      ? `policies: the local limiters' CPU per request ${figures} (target ≤ ${TARGETS.limitersCpuUs} µs): ${met(added <= TARGETS.limitersCpuUs)}`
      : `${scenario}: the cluster limiter's CPU per request ${figures} (no target)`)
  }
  return checks
}

/** Every load-scenario check, in the order printed. `oneRouteScenarios`: see idleRssCheck. */
export function scenarioChecks(reports: readonly ScenarioReport[], oneRouteScenarios: ReadonlySet<string>): string[] {
  const checks = [...forwarderChecks(reports), ...limiterChecks(reports)]
  const idle = idleRssCheck(reports, oneRouteScenarios, TARGETS.idleRssMiB)
  if (idle !== null) checks.push(idle)
  return checks
}
