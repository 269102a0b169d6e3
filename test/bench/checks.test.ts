// The limiter scenarios are judged against Tollgate's own core path (their tollgate-core, else scenario small)
// in the same run; a wrong subtraction or a ratio the wrong way round would print "met" for a slower gateway.
import { describe, expect, it } from 'vitest'
import { forwarderChecks, limiterChecks } from '../../bench/lib/checks.js'
import type { PeerResult, ScenarioReport } from '../../bench/lib/report.js'

const at = (median: number): { median: number, min: number, max: number } => ({ median, min: median, max: median })

function peer(name: string, rps: number, cpuUs: number | null, p99Ms = 2): PeerResult {
  return {
    peer: name, runs: [], failures: [], rps: at(rps), p50Ms: at(1), p99Ms: at(p99Ms),
    cpuUsPerRequest: cpuUs === null ? null : at(cpuUs), rssIdleKib: null, rssMaxLoadKib: null, tollgateRatio: null, exitCode: 0,
  }
}

function scenario(name: string, ...results: PeerResult[]): ScenarioReport {
  return { name, description: name, path: '/', method: 'GET', skipped: null, skippedPeers: [], results, notes: [] }
}

describe('limiterChecks', () => {
  it('divides the limited req/s by small\'s and subtracts small\'s CPU per request when the scenario has no tollgate-core', () => {
    const checks = limiterChecks([
      scenario('small', peer('tollgate', 20_000, 40)),
      scenario('policies', peer('tollgate', 19_400, 40.6)),
      scenario('cluster-limit', peer('tollgate', 9_000, 55)),
    ])
    expect(checks).toEqual([
      'policies: tollgate req/s ÷ small tollgate req/s 0.970 (target ≥ 0.95): met',
      'policies: the local limiters\' CPU per request 40.60 µs (tollgate) − 40.00 µs (small tollgate) = 0.60 µs (target ≤ 1 µs): met',
      'cluster-limit: tollgate req/s ÷ small tollgate req/s 0.450 (target ≥ 0.5): NOT met',
      'cluster-limit: the cluster limiter\'s CPU per request 55.00 µs (tollgate) − 40.00 µs (small tollgate) = 15.00 µs (no target)',
    ])
  })

  it('takes the scenario\'s own tollgate-core, measured in the same minutes, over scenario small', () => {
    const checks = limiterChecks([
      scenario('small', peer('tollgate', 30_000, 30)),
      scenario('policies', peer('tollgate', 19_400, 40.6), peer('tollgate-core', 20_000, 40)),
    ])
    expect(checks).toEqual([
      'policies: tollgate req/s ÷ tollgate-core req/s 0.970 (target ≥ 0.95): met',
      'policies: the local limiters\' CPU per request 40.60 µs (tollgate) − 40.00 µs (tollgate-core) = 0.60 µs (target ≤ 1 µs): met',
    ])
  })

  it('says NOT met when the limiters add more than 1 µs, however fast the run', () => {
    const checks = limiterChecks([scenario('small', peer('tollgate', 20_000, 40)), scenario('policies', peer('tollgate', 21_000, 41.5))])
    expect(checks[1]).toMatch(/= 1\.50 µs \(target ≤ 1 µs\): NOT met$/)
  })

  it('says so when there is no core path to compare with, and gives nothing when no limit scenario ran', () => {
    expect(limiterChecks([scenario('policies', peer('tollgate', 19_000, 40))]))
      .toEqual(['policies: no check against the core path: neither tollgate-core nor scenario small ran in this run'])
    expect(limiterChecks([scenario('small', peer('tollgate', 20_000, 40))])).toEqual([])
  })
})

describe('forwarderChecks', () => {
  it('leaves the limit scenarios to their own targets', () => {
    const checks = forwarderChecks([
      scenario('small', peer('tollgate', 20_000, 40), peer('undici-stream', 21_000, 35)),
      scenario('cluster-limit', peer('tollgate', 9_000, 55), peer('undici-stream', 21_000, 35)),
    ])
    expect(checks).toHaveLength(1)
    expect(checks[0]).toMatch(/^small: tollgate ÷ undici-stream req\/s 0\.952/)
  })
})
