// Active health checks (src/upstream/health/active.ts) against real upstreams on 127.0.0.1: thresholds,
// timeouts, one probe in flight per target, expectStatus, removed targets.
import { describe, expect, it, onTestFinished } from 'vitest'
import { ActiveChecker, compileExpectStatus, type ActiveReport, type ActiveSettings } from '../../../src/upstream/health/active.js'
import { Target } from '../../../src/upstream/target.js'
import { startHealthUpstream, until } from '../../helpers/health-upstream.js'

const SETTINGS: ActiveSettings = { path: '/healthz', interval: 50, timeout: 200, healthyThreshold: 2, unhealthyThreshold: 3, expectStatus: ['200-399'] }

function checker(settings: Partial<ActiveSettings> = {}): { checker: ActiveChecker; reports: ActiveReport[]; last: (url: string) => ActiveReport | undefined } {
  const reports: ActiveReport[] = []
  const c = new ActiveChecker('api', { ...SETTINGS, ...settings }, (r) => reports.push(r))
  onTestFinished(() => c.close())
  return { checker: c, reports, last: (url) => reports.filter((r) => r.url === url).at(-1) }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('compileExpectStatus', () => {
  it('accepts single statuses and inclusive ranges, nothing else', () => {
    const table = compileExpectStatus([204, '300-302'])
    const accepted = [...table.keys()].filter((s) => table[s] === 1)
    expect(accepted).toEqual([204, 300, 301, 302])
  })
})

describe('ActiveChecker', () => {
  it('marks a target unhealthy after unhealthyThreshold failed probes and healthy after healthyThreshold passed ones', async () => {
    const up = await startHealthUpstream('a')
    const target = new Target(up.url, 1)
    const { checker: c, reports, last } = checker()
    c.setTargets([target])
    expect(reports[0]).toMatchObject({ state: 'pending', url: target.url })
    await until('first probe passes', () => last(target.url)?.state === 'healthy')
    up.probe = 500
    const before = up.probes
    await until('unhealthy', () => last(target.url)?.state === 'unhealthy')
    // The report that turned it: exactly unhealthyThreshold failures in a row, none of them in between.
    const turned = reports.find((r) => r.state === 'unhealthy')!
    expect(turned).toMatchObject({ failures: 3, successes: 0, lastStatus: 500, lastError: 'status 500 not in expectStatus' })
    expect(up.probes - before).toBeGreaterThanOrEqual(3)
    up.probe = 204
    await until('healthy again', () => last(target.url)?.state === 'healthy')
    const healed = reports.filter((r) => r.state === 'healthy').at(-1)!
    expect(healed).toMatchObject({ successes: 2, failures: 0, lastStatus: 204, lastError: null })
  })

  it('counts a probe that gets no answer within timeout as failed, and never has two probes of a target in flight', async () => {
    const up = await startHealthUpstream('hung', { probe: 'hang' })
    // A second, answering target makes the timer fire every interval while the hung probe is in flight.
    const quick = await startHealthUpstream('quick')
    const target = new Target(up.url, 1)
    const { checker: c, reports, last } = checker({ interval: 20, timeout: 100, unhealthyThreshold: 1 })
    c.setTargets([target, new Target(quick.url, 1)])
    await until('the first probe fails', () => last(target.url)?.state === 'unhealthy', 2000)
    expect(last(target.url)?.lastError).toBe('no complete response within 100 ms')
    // interval (20 ms) is shorter than timeout (100 ms): a checker without the in-flight rule would stack probes.
    await up.probed(4, 3000)
    expect(up.maxConcurrentProbes).toBe(1)
    expect(quick.probes).toBeGreaterThan(up.probes)
    // One result per probe that reached the target (and at most the one in flight more): no probe was
    // queued behind the hung one.
    const results = reports.filter((r) => r.url === target.url && r.lastProbeAt !== null).length
    expect(results).toBeLessThanOrEqual(up.probes)
    expect(reports.filter((r) => r.state === 'unhealthy').every((r) => r.lastStatus === null)).toBe(true)
  })

  it('passes only statuses in expectStatus', async () => {
    const up = await startHealthUpstream('a', { probe: 200 })
    const target = new Target(up.url, 1)
    const { checker: c, last } = checker({ expectStatus: [204], unhealthyThreshold: 1 })
    c.setTargets([target])
    await until('200 fails against [204]', () => last(target.url)?.state === 'unhealthy')
    up.probe = 204
    await until('204 passes', () => last(target.url)?.state === 'healthy')
  })

  it('counts a refused connection as a failed probe', async () => {
    const up = await startHealthUpstream('gone')
    const target = new Target(up.url, 1)
    await up.close()
    const { checker: c, last } = checker({ unhealthyThreshold: 1 })
    c.setTargets([target])
    await until('unhealthy', () => last(target.url)?.state === 'unhealthy')
    expect(last(target.url)?.lastError).toMatch(/^ECONNREFUSED/)
  })

  it('stops probing a removed target: no probe reaches it afterwards and no timer is left for it', async () => {
    const kept = await startHealthUpstream('kept')
    const removed = await startHealthUpstream('removed')
    const { checker: c, reports } = checker({ interval: 20 })
    c.setTargets([new Target(kept.url, 1), new Target(removed.url, 1)])
    await removed.probed(3)
    c.setTargets([new Target(kept.url, 1)])
    expect(reports.at(-1)).toMatchObject({ url: new Target(removed.url, 1).url, state: 'removed' })
    const probesAtRemoval = removed.probes
    const keptAtRemoval = kept.probes
    await kept.probed(keptAtRemoval + 5)
    expect(removed.probes).toBe(probesAtRemoval)
    // With no target left there is nothing to schedule: closing leaves no probe running either.
    c.setTargets([])
    const keptAfter = kept.probes
    await sleep(100)
    expect(kept.probes - keptAfter).toBeLessThanOrEqual(1) // one may have been in flight at removal
    expect(c.probesInFlight).toBe(0)
  })

  it('keeps the state of a target it takes over from a checker with other settings', async () => {
    const up = await startHealthUpstream('a', { probe: 500 })
    const target = new Target(up.url, 1)
    const first = checker({ unhealthyThreshold: 1 })
    first.checker.setTargets([target])
    await until('unhealthy', () => first.last(target.url)?.state === 'unhealthy')
    const second = checker({ interval: 1000, healthyThreshold: 3 })
    second.checker.setTargets([target], first.checker)
    await first.checker.close()
    expect(second.reports[0]).toMatchObject({ state: 'unhealthy' })
  })
})
