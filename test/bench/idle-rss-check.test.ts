import { describe, expect, it } from 'vitest'
import { idleRssCheck, type PeerResult, type ScenarioReport } from '../../bench/lib/report.js'

function report(name: string, tollgateIdleMiB: number | null): ScenarioReport {
  const result: PeerResult = {
    peer: 'tollgate', runs: [], failures: [], rps: null, p50Ms: null, p99Ms: null, cpuUsPerRequest: null, rssMaxLoadKib: null, tollgateRatio: null,
    exitCode: 0, rssIdleKib: tollgateIdleMiB === null ? null : tollgateIdleMiB * 1024,
  }
  return { name, description: name, path: '/', method: 'GET', skipped: null, skippedPeers: [], results: [result], notes: [] }
}

describe('idleRssCheck', () => {
  const oneRoute = new Set(['small', '4k'])

  it('takes the first one-route scenario, not a scenario whose table holds thousands of routes', () => {
    const line = idleRssCheck([report('routes-1k', 104.6), report('small', 75.4), report('4k', 79)], oneRoute, 80)
    expect(line).toBe(`tollgate idle RSS 75.4 MiB with the one-route config (small) (target ≤ 80 MiB, issue 4's "80 MB" read as MiB): met`)
  })

  it('says NOT met over the target, and gives nothing when only routes scenarios ran', () => {
    expect(idleRssCheck([report('4k', 80.5)], oneRoute, 80)).toMatch(/80\.5 MiB .*\(4k\).*NOT met$/)
    expect(idleRssCheck([report('routes-1k', 104.6), report('routes-10k', 171.5)], oneRoute, 80)).toBeNull()
    expect(idleRssCheck([report('small', null), report('4k', 70)], oneRoute, 80)).toMatch(/\(4k\)/)
  })
})
