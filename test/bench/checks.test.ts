// The limiter and breaker scenarios are judged against Tollgate's own core path (their tollgate-core, else
// scenario small) in the same run; a wrong subtraction or a ratio the wrong way round would print "met" for a
// slower gateway, and figures of the wrong answer (a breaker that never opened) must not count at all.
import { describe, expect, it } from 'vitest'
import { accessLogChecks, breakerChecks, forwarderChecks, limiterChecks, tracingChecks, workersChecks } from '../../bench/lib/checks.js'
import { pairedP99Ratio, pairedRpsRatio, type MeasuredRun, type PeerResult, type ScenarioReport } from '../../bench/lib/report.js'
import { spread } from '../../bench/lib/stats.js'
import { unexpectedResponses, wrongAnswer, type PeerRequest } from '../../bench/lib/scenario-runner.js'

const at = (median: number): { median: number, min: number, max: number } => ({ median, min: median, max: median })

function peer(name: string, rps: number, cpuUs: number | null, p99Ms = 2): PeerResult {
  return {
    peer: name, runs: [], failures: [], rps: at(rps), p50Ms: at(1), p99Ms: at(p99Ms),
    cpuUsPerRequest: cpuUs === null ? null : at(cpuUs), rssIdleKib: null, rssMaxLoadKib: null, tollgateRatio: null, exitCode: 0,
  }
}

/** A peer with one run per repetition (1, 2, ...), its req/s (and p99, one for all or one per run) as given: the medians come from them. */
function peerRuns(name: string, rpsByRep: readonly (number | null)[], p99Ms: number | readonly number[] = 2): PeerResult {
  const runs: MeasuredRun[] = []
  rpsByRep.forEach((rps, i) => {
    const p99 = typeof p99Ms === 'number' ? p99Ms : p99Ms[i]!
    if (rps !== null) runs.push({ rps, p50Ms: 1, p99Ms: p99, requests: rps * 5, errors: 0, non2xx: 0, cpuUsPerRequest: 40, unexpected: 0, rep: i + 1 })
  })
  return { ...peer(name, spread(runs.map((r) => r.rps)).median, 40, 2), runs, p99Ms: spread(runs.map((r) => r.p99Ms)) }
}

/** A peer with one run per repetition at 20,000 req/s and the CPU per request given for each. */
function peerCpu(name: string, cpuByRep: readonly number[]): PeerResult {
  const runs: MeasuredRun[] = cpuByRep.map((cpu, i) => ({
    rps: 20_000, p50Ms: 1, p99Ms: 2, requests: 100_000, errors: 0, non2xx: 0, cpuUsPerRequest: cpu, unexpected: 0, rep: i + 1,
  }))
  return { ...peer(name, 20_000, spread([...cpuByRep]).median), runs }
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
      'policies: tollgate req/s ÷ small tollgate req/s 0.970 (target ≥ 0.9): met',
      'policies: the CPU per request of the limiters, breaker and passive health 40.60 µs (tollgate) − 40.00 µs (small tollgate) = 0.60 µs (target ≤ 1 µs): met',
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
      'policies: tollgate req/s ÷ tollgate-core req/s 0.970 (target ≥ 0.9): met',
      'policies: the CPU per request of the limiters, breaker and passive health 40.60 µs (tollgate) − 40.00 µs (tollgate-core) = 0.60 µs (target ≤ 1 µs): met',
    ])
  })

  it('judges the two local limiters alone (scenario limits) at 0.95 of the core path and 1 µs of CPU', () => {
    const checks = limiterChecks([scenario('limits', peer('tollgate', 18_980, 41.2), peer('tollgate-core', 20_000, 40))])
    expect(checks).toEqual([
      'limits: tollgate req/s ÷ tollgate-core req/s 0.949 (target ≥ 0.95): NOT met',
      'limits: the CPU per request of the two local limiters 41.20 µs (tollgate) − 40.00 µs (tollgate-core) = 1.20 µs (target ≤ 1 µs): NOT met',
    ])
    expect(limiterChecks([scenario('limits', peer('tollgate', 19_000, 40.5), peer('tollgate-core', 20_000, 40))]))
      .toEqual([
        'limits: tollgate req/s ÷ tollgate-core req/s 0.950 (target ≥ 0.95): met',
        'limits: the CPU per request of the two local limiters 40.50 µs (tollgate) − 40.00 µs (tollgate-core) = 0.50 µs (target ≤ 1 µs): met',
      ])
  })

  it('judges the limiters\' CPU by the repetitions\' own differences too: a slow spell in one peer\'s runs moves its median, not the pairs', () => {
    // Medians 60.90 − 60.30 = 0.60 µs; pair by pair 1.4, 1.5, 0.6, 1.6, 1.2: the limiters cost 1.4 µs.
    const limited = peerCpu('tollgate', [62.4, 61.8, 60.9, 60.1, 59.5])
    const core = peerCpu('tollgate-core', [61.0, 60.3, 60.3, 58.5, 58.3])
    expect(limiterChecks([scenario('limits', limited, core)])[1]).toBe(
      'limits: the CPU per request of the two local limiters 60.90 µs (tollgate) − 60.30 µs (tollgate-core) = 0.60 µs; pairs 1.40 µs (0.60 to 1.60, 5) (target ≤ 1 µs): NOT met')
    const cheaper = peerCpu('tollgate', [61.5, 60.8, 60.9, 59.3, 59.0])
    expect(limiterChecks([scenario('limits', cheaper, core)])[1]).toBe(
      'limits: the CPU per request of the two local limiters 60.80 µs (tollgate) − 60.30 µs (tollgate-core) = 0.50 µs; pairs 0.60 µs (0.50 to 0.80, 5) (target ≤ 1 µs): met')
  })

  it('says NOT met below 0.9 of the core path', () => {
    const checks = limiterChecks([scenario('policies', peer('tollgate', 17_980, 40.6), peer('tollgate-core', 20_000, 40))])
    expect(checks[0]).toBe('policies: tollgate req/s ÷ tollgate-core req/s 0.899 (target ≥ 0.9): NOT met')
  })

  it('says NOT met when the policies add more than 1 µs, however fast the run', () => {
    const checks = limiterChecks([scenario('small', peer('tollgate', 20_000, 40)), scenario('policies', peer('tollgate', 21_000, 41.5))])
    expect(checks[1]).toMatch(/= 1\.50 µs \(target ≤ 1 µs\): NOT met$/)
  })

  it('says so when there is no core path to compare with, and gives nothing when no limit scenario ran', () => {
    expect(limiterChecks([scenario('policies', peer('tollgate', 19_000, 40))]))
      .toEqual(['policies: no check against the core path: neither tollgate-core nor scenario small ran in this run'])
    expect(limiterChecks([scenario('small', peer('tollgate', 20_000, 40))])).toEqual([])
  })
})

describe('pairedP99Ratio', () => {
  it('divides p99 by p99 within each repetition, the first peer over the second', () => {
    const paired = pairedP99Ratio(peerRuns('a', [10, 10, 10], [3, 2, 4]), peerRuns('b', [10, 10, 10], [2, 2, 2]))
    expect(paired).toMatchObject({ median: 1.5, min: 1, max: 2, pairs: 3 })
    expect(pairedP99Ratio(peerRuns('a', [10, 10], [3, 2]), peerRuns('b', [10, 10], [2, 2]))).toBeNull()
  })
})

describe('pairedRpsRatio', () => {
  it('divides run by run within each repetition, skips a repetition one peer lacks, and needs 3 pairs', () => {
    const paired = pairedRpsRatio(peerRuns('a', [90, 50, 100, null, 80]), peerRuns('b', [100, 100, 100, 100, 100]))
    expect(paired).toMatchObject({ min: 0.5, max: 1, pairs: 4 }) // 0.9, 0.5, 1, 0.8
    expect(paired?.median).toBeCloseTo(0.85, 10)
    expect(pairedRpsRatio(peerRuns('a', [90, 50, null]), peerRuns('b', [100, 100, 100]))).toBeNull()
    expect(pairedRpsRatio(peer('a', 90, 40), peer('b', 100, 40))).toBeNull() // no runs with repetitions
  })
})

describe('forwarderChecks', () => {
  it('says NOT met when the medians meet the target but the repetitions\' own ratios do not (a slow spell on one side)', () => {
    // bench run 2026-12-04 19:38: the medians give 0.988, the pairs 0.82.
    const checks = forwarderChecks([scenario('full-chain',
      peerRuns('tollgate', [9196, 11819, 9425, 12201, 13026], 2.5), peerRuns('undici-stream', [10099, 9683, 11968, 15552, 15893], 2))])
    expect(checks).toEqual(['full-chain: tollgate ÷ undici-stream req/s 0.988; pairs 0.820 (0.785–1.221, 5) (target ≥ 0.85), ' +
      'p99 1.250; pairs 1.250 (1.250–1.250, 5) (target ≤ 1.3): NOT met'])
    const calm = forwarderChecks([scenario('full-chain',
      peerRuns('tollgate', [17000, 17200, 17400], 2.5), peerRuns('undici-stream', [20000, 20000, 20000], 2))])
    expect(calm[0]).toMatch(/req\/s 0\.860; pairs 0\.860 \(0\.850–0\.870, 3\).*: met$/)
  })

  it('says NOT met when the p99 medians meet the target but the repetitions\' own p99 ratios do not', () => {
    const rps = [17_200, 17_200, 17_200, 17_200, 17_200]
    const thinRps = [20_000, 20_000, 20_000, 20_000, 20_000]
    // Medians 2.5 / 2.0 = 1.25, but in 3 of 5 pairs Tollgate's p99 was over 1.3x the forwarder's of the same minute.
    const slowPairs = forwarderChecks([scenario('full-chain',
      peerRuns('tollgate', rps, [2.5, 2.4, 3.0, 2.6, 2.8]), peerRuns('undici-stream', thinRps, [2.0, 2.5, 1.9, 1.8, 2.0]))])
    expect(slowPairs).toEqual(['full-chain: tollgate ÷ undici-stream req/s 0.860; pairs 0.860 (0.860–0.860, 5) (target ≥ 0.85), ' +
      'p99 1.300; pairs 1.400 (0.960–1.579, 5) (target ≤ 1.3): NOT met'])
    const steady = forwarderChecks([scenario('full-chain',
      peerRuns('tollgate', rps, [2.5, 2.4, 2.6, 2.5, 2.5]), peerRuns('undici-stream', thinRps, [2.0, 2.0, 2.0, 2.0, 2.0]))])
    expect(steady[0]).toMatch(/p99 1\.250; pairs 1\.250 \(1\.200–1\.300, 5\) \(target ≤ 1\.3\): met$/)
  })

  it('leaves the limit scenarios to their own targets', () => {
    const checks = forwarderChecks([
      scenario('small', peer('tollgate', 20_000, 40), peer('undici-stream', 21_000, 35)),
      scenario('cluster-limit', peer('tollgate', 9_000, 55), peer('undici-stream', 21_000, 35)),
    ])
    expect(checks).toHaveLength(1)
    expect(checks[0]).toMatch(/^small: tollgate ÷ undici-stream req\/s 0\.952/)
  })

  it('judges full-chain by its own targets (0.85×, p99 1.3×) and prints full-chain-cluster without one', () => {
    expect(forwarderChecks([
      scenario('full-chain', peer('tollgate', 17_200, 50, 2.5), peer('undici-stream', 20_000, 35, 2)),
      scenario('full-chain-cluster', peer('tollgate', 9_000, 80, 4), peer('undici-stream', 20_000, 35, 2)),
    ])).toEqual([
      'full-chain: tollgate ÷ undici-stream req/s 0.860 (target ≥ 0.85), p99 1.250 (target ≤ 1.3): met',
      'full-chain-cluster: tollgate ÷ undici-stream req/s 0.450, p99 2.000 (no target)',
    ])
    expect(forwarderChecks([scenario('full-chain', peer('tollgate', 17_200, 50, 2.7), peer('undici-stream', 20_000, 35, 2))])[0])
      .toBe('full-chain: tollgate ÷ undici-stream req/s 0.860 (target ≥ 0.85), p99 1.350 (target ≤ 1.3): NOT met')
    expect(forwarderChecks([scenario('full-chain', peer('tollgate', 16_980, 50, 2), peer('undici-stream', 20_000, 35, 2))])[0])
      .toMatch(/0\.849 \(target ≥ 0\.85\).*: NOT met$/)
  })
})

function run(unexpected: number, errors = 0): MeasuredRun {
  return { rps: 1, p50Ms: 1, p99Ms: 1, requests: 1000, errors, non2xx: 0, cpuUsPerRequest: 1, unexpected }
}

describe('breakerChecks', () => {
  it('divides the open breaker\'s refusals per second by the core path\'s req/s, target 1.5', () => {
    const checks = breakerChecks([scenario('breaker-open', peer('tollgate', 45_000, 20), peer('tollgate-core', 20_000, 45))])
    expect(checks).toEqual([
      'breaker-open: refusals per second ÷ tollgate-core req/s 2.250 (target ≥ 1.5): met',
      'breaker-open: CPU per refusal ÷ per core-path request 20.00 µs (tollgate) ÷ 45.00 µs (tollgate-core) = 0.444 (no target)',
    ])
    expect(breakerChecks([scenario('breaker-open', peer('tollgate', 29_990, 20), peer('tollgate-core', 20_000, 45))])[0])
      .toBe('breaker-open: refusals per second ÷ tollgate-core req/s 1.500 (target ≥ 1.5): NOT met')
  })

  it('holds the failure path\'s CPU per request to the success path\'s, with 5% for noise', () => {
    const within = breakerChecks([scenario('failing-upstream', peer('tollgate', 19_500, 41.92), peer('tollgate-core', 20_000, 40))])
    expect(within).toEqual([
      'failing-upstream: CPU per request, failure ÷ success 41.92 µs (tollgate) ÷ 40.00 µs (tollgate-core) = 1.048 (target ≤ 1.05): met',
      'failing-upstream: tollgate req/s ÷ tollgate-core req/s 0.975 (no target; CPU per request above is the check)',
    ])
    const over = breakerChecks([scenario('failing-upstream', peer('tollgate', 19_000, 42.1), peer('tollgate-core', 20_000, 40))])
    expect(over[0]).toMatch(/= 1\.052 \(target ≤ 1\.05\): NOT met$/)
  })

  it('refuses figures that are not of the scenario: responses on the wrong side of 2xx, or a wrong answer after the runs', () => {
    const open = peer('tollgate', 45_000, 20)
    open.runs.push(run(0), run(12))
    expect(breakerChecks([scenario('breaker-open', open, peer('tollgate-core', 20_000, 45))]))
      .toEqual(['breaker-open: NOT met: tollgate\'s figures are not of this scenario (12 socket errors or unexpected responses)'])
    const failing = { ...peer('tollgate', 19_000, 40), failures: ['after the measured runs: GET /500 answered 200 (2 bytes)'] }
    expect(breakerChecks([scenario('failing-upstream', failing, peer('tollgate-core', 20_000, 40))])[0])
      .toBe('failing-upstream: NOT met: tollgate\'s figures are not of this scenario (after the measured runs: GET /500 answered 200 (2 bytes))')
  })

  it('falls back to scenario small\'s tollgate, and leaves these scenarios out of the forwarder checks', () => {
    const reports = [
      scenario('small', peer('tollgate', 20_000, 40), peer('undici-stream', 21_000, 35)),
      scenario('breaker-open', peer('tollgate', 40_000, 20), peer('undici-stream', 21_000, 35)),
    ]
    expect(breakerChecks(reports)[0]).toBe('breaker-open: refusals per second ÷ small tollgate req/s 2.000 (target ≥ 1.5): met')
    expect(forwarderChecks(reports)).toHaveLength(1)
  })
})

describe('the expected answer of a peer', () => {
  const request = (expect: PeerRequest['expect']): PeerRequest => ({ path: '/500', method: 'GET', body: null, headers: {}, expect, upstreamBytes: 2, h2: false })
  const open = { status: 503, tollgateError: 'CIRCUIT_OPEN' }
  const passed = { status: 500, tollgateError: null }

  it('takes a 2xx with the upstream\'s bytes by default', () => {
    expect(wrongAnswer(request(null), { status: 200, bytes: 2, tollgateError: null })).toBeNull()
    expect(wrongAnswer(request(null), { status: 200, bytes: 5, tollgateError: null })).toBe('GET /500 answered 200 (5 bytes); the upstream serves 2 bytes')
    expect(wrongAnswer(request(null), { status: 503, bytes: 60, tollgateError: 'CIRCUIT_OPEN' })).toBe('GET /500 answered 503 CIRCUIT_OPEN (60 bytes)')
  })

  it('takes exactly the status and gateway error code a scenario expects, and the upstream\'s bytes when it is the upstream\'s answer', () => {
    expect(wrongAnswer(request(open), { status: 503, bytes: 60, tollgateError: 'CIRCUIT_OPEN' })).toBeNull()
    expect(wrongAnswer(request(open), { status: 500, bytes: 2, tollgateError: null }))
      .toBe('GET /500 answered 500 (2 bytes); the scenario expects 503 CIRCUIT_OPEN')
    expect(wrongAnswer(request(open), { status: 503, bytes: 60, tollgateError: 'OVERLOADED' })).not.toBeNull()
    expect(wrongAnswer(request(passed), { status: 500, bytes: 2, tollgateError: null })).toBeNull()
    // A 500 the gateway made itself is not the upstream's.
    expect(wrongAnswer(request(passed), { status: 500, bytes: 60, tollgateError: 'INTERNAL' })).not.toBeNull()
    expect(wrongAnswer(request(passed), { status: 500, bytes: 3, tollgateError: null })).toMatch(/the upstream serves 2 bytes$/)
  })

  it('counts the responses on the wrong side of 2xx/3xx as unexpected', () => {
    expect(unexpectedResponses({ requests: 100, non2xx: 3 }, null)).toBe(3)
    expect(unexpectedResponses({ requests: 100, non2xx: 97 }, open)).toBe(3)
    expect(unexpectedResponses({ requests: 100, non2xx: 100 }, passed)).toBe(0)
  })
})

describe('tracingChecks', () => {
  it('judges 1% sampling by the repetitions\' own ratios as well when its tollgate-core ran beside it', () => {
    const checks = tracingChecks([scenario('tracing', peerRuns('tollgate', [19_600, 12_000, 19_500]), peerRuns('tollgate-core', [20_000, 19_000, 20_000]))])
    expect(checks[0]).toBe('tracing: tollgate req/s ÷ tollgate-core req/s 0.975; pairs 0.975 (0.632–0.980, 3) with 1% sampled (target ≥ 0.97): met')
    const slow = tracingChecks([scenario('tracing', peerRuns('tollgate', [19_600, 12_000, 14_000]), peerRuns('tollgate-core', [20_000, 12_000, 20_000]))])
    expect(slow[0]).toMatch(/req\/s 0\.700; pairs 0\.980 .*: NOT met$/)
  })

  it('judges 1% sampling by its req/s against its own tollgate-core and states what a sampled request costs', () => {
    const checks = tracingChecks([
      scenario('tracing', peer('tollgate', 19_500, 40.4), peer('tollgate-core', 20_000, 40)),
      scenario('tracing-all', peer('tollgate', 15_000, 52), peer('tollgate-core', 20_000, 40)),
    ])
    expect(checks).toEqual([
      'tracing: tollgate req/s ÷ tollgate-core req/s 0.975 with 1% sampled (target ≥ 0.97): met',
      'tracing: CPU per request of tracing at 1% sampled 40.40 µs (tollgate) − 40.00 µs (tollgate-core) = 0.40 µs (no target)',
      'tracing-all: CPU per sampled request (a SERVER and a CLIENT span, exported) 52.00 µs (tollgate) − 40.00 µs (tollgate-core) = 12.00 µs; req/s ÷ tollgate-core 0.750 (no target)',
    ])
  })

  it('says NOT met below 0.97 of the core path', () => {
    const checks = tracingChecks([scenario('tracing', peer('tollgate', 19_380, 41), peer('tollgate-core', 20_000, 40))])
    expect(checks[0]).toBe('tracing: tollgate req/s ÷ tollgate-core req/s 0.969 with 1% sampled (target ≥ 0.97): NOT met')
  })
})

describe('accessLogChecks', () => {
  it('divides the access-log req/s by its tollgate-core\'s (log off) and gives the CPU the line adds', () => {
    expect(accessLogChecks([scenario('access-log', peer('tollgate', 19_000, 42), peer('tollgate-core', 20_000, 40))])).toEqual([
      'access-log: tollgate req/s ÷ tollgate-core req/s 0.950 (target ≥ 0.9): met',
      'access-log: the CPU per request of the access line 42.00 µs (tollgate) − 40.00 µs (tollgate-core) = 2.00 µs (no target)',
    ])
    expect(accessLogChecks([scenario('access-log', peer('tollgate', 17_980, 45), peer('tollgate-core', 20_000, 40))])[0])
      .toBe('access-log: tollgate req/s ÷ tollgate-core req/s 0.899 (target ≥ 0.9): NOT met')
  })

  it('is not judged against undici-stream, and says so when there is no core path', () => {
    expect(forwarderChecks([scenario('access-log', peer('tollgate', 10_000, 40), peer('undici-stream', 20_000, 30))])).toEqual([])
    expect(accessLogChecks([scenario('access-log', peer('tollgate', 19_000, 40))]))
      .toEqual(['access-log: no check against the core path: neither tollgate-core nor scenario small ran in this run'])
    expect(accessLogChecks([])).toEqual([])
  })
})

describe('workersChecks', () => {
  it('divides --workers 2 (tollgate) by --workers 1 (tollgate-core) in req/s and CPU per request, and is not judged against undici-stream', () => {
    const reports = [scenario('workers', peer('tollgate', 18_000, 55), peer('tollgate-core', 20_000, 50), peer('undici-stream', 30_000, 30))]
    expect(workersChecks(reports)).toEqual(['workers: --workers 2 ÷ --workers 1 req/s 0.900; CPU per request 55.00 µs ÷ 50.00 µs = 1.100 (no target)'])
    expect(forwarderChecks(reports)).toEqual([])
    expect(workersChecks([scenario('workers', peer('tollgate', 18_000, 55))])).toEqual(['workers: no --workers 1 figures in this run (peer tollgate-core)'])
    expect(workersChecks([])).toEqual([])
  })
})
