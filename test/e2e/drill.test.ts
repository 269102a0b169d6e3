// The fault drill in CI (README "Reliability", issue 15 item 4): `node dist/bench/drill.js` with short
// phases, the same code as `npm run drill`: 3 gateway processes, a 3-member etcd cluster, Redis and two
// upstream targets, five faults in turn. Every check must pass. Then the judges are shown to be able to
// fail: the run's own records, judged against a deliberately wrong expectation, are found wanting.
// Runs the compiled drill, so `npm test` (tsc first) must have built dist/.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, afterAll, describe, expect, it } from 'vitest'
import { convergenceProblem, limitBreaches, unexpectedErrors } from '../../bench/lib/drill-checks.js'
import type { PhaseResult } from '../../bench/lib/drill-phases.js'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const drillJs = join(repoRoot, 'dist', 'bench', 'drill.js')
/** About 45 s alone on a busy 2-core machine; more while other test files run. */
const RUN_TIMEOUT_MS = 150_000
const FAULTS = ['etcd-leader', 'redis-stall', 'target-kill', 'gateway-pause', 'restart-etcd-down']

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function runDrill(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [drillJs, ...args], { cwd: repoRoot, timeout: RUN_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

describe('npm run drill, short phases', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-drill-test-'))
  let run: Run
  let phases: PhaseResult[]
  const phase = (name: string): PhaseResult => phases.find((p) => p.name === name)!

  beforeAll(async () => {
    const jsonPath = join(dir, 'drill.json')
    // redis.timeout 500ms: the rest of the suite shares the two cores, and a decision that misses its deadline
    // for want of CPU is a 503 on the deny route that no fault explains.
    run = await runDrill(['--settle', '1500ms', '--redis-stall', '2s', '--pause', '1s', '--rate', '40', '--limit', '10', '--redis-timeout', '500ms', '--json', jsonPath])
    phases = run.code === 2 ? [] : (JSON.parse(readFileSync(jsonPath, 'utf8')) as { phases: PhaseResult[] }).phases
  }, RUN_TIMEOUT_MS + 10_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('passes every check after each of the five faults and prints the table', () => {
    expect(run.code, `${run.stdout}\n${run.stderr.slice(-3000)}`).toBe(0)
    expect(phases.map((p) => p.name)).toEqual(FAULTS)
    for (const p of phases) {
      expect(p.problems, p.name).toEqual([])
      expect(p.unexpected, p.name).toEqual([])
      expect(p.crashed, p.name).toEqual([])
      expect(p.requests, p.name).toBeGreaterThan(100)
      expect(p.convergeMs, p.name).not.toBeNull()
      expect(p.convergeMs!, p.name).toBeLessThanOrEqual(p.convergeLimitMs)
      // The limited routes were pushed past their limit (429s), so the limit check had something to judge.
      expect(p.byStatus['429'] ?? 0, p.name).toBeGreaterThan(0)
    }
    expect(run.stdout).toMatch(/^\| fault \| requests \| errors \(explained\) \| unexpected errors \| time to converge \|/m)
    expect(run.stdout.match(/\| pass \|$/gm)).toHaveLength(5)
  })

  it('saw each fault happen: refusals during the Redis stall, a snapshot start with etcd down', () => {
    const stall = phase('redis-stall')
    expect(stall.errors).toBeGreaterThan(0)
    expect(stall.errorOutcomes.every((o) => o.path === '/limited/deny' && o.code === 'RATE_LIMIT_UNAVAILABLE')).toBe(true)
    expect(phase('restart-etcd-down').notes.join('\n')).toMatch(/started from its snapshot \(revision \d+\) with etcd down and served \/api\/a: 200/)
    expect(phase('gateway-pause').notes.join('\n')).toMatch(/paused for \d+ ms while 50 route changes were written/)
  })

  it('finds the Redis stall\'s errors unexpected when judged against a wrong expectation', () => {
    const stall = phase('redis-stall')
    // No explanation at all; the right one on the wrong route; the right one a minute too early (ending well
    // before the stall: a request that began before the SIGSTOP and was caught by it overlaps the span just before).
    expect(unexpectedErrors(stall.errorOutcomes, [])).toHaveLength(stall.errors)
    const right = stall.explanations[0]!
    expect(unexpectedErrors(stall.errorOutcomes, [right])).toHaveLength(0)
    expect(unexpectedErrors(stall.errorOutcomes, [{ ...right, paths: ['/limited/local'] }])).toHaveLength(stall.errors)
    expect(unexpectedErrors(stall.errorOutcomes, [{ ...right, fromMs: right.fromMs - 60_000, toMs: right.fromMs - 30_000 }])).toHaveLength(stall.errors)
  })

  it('finds the upstream\'s hits over a limit one below the one configured, and convergence late against a tighter limit', () => {
    const entry = phase('etcd-leader').limits['/limited/deny']!
    expect(entry.breaches).toEqual([])
    const fullest = entry.fullest!.admitted
    expect(fullest).toBeGreaterThan(1)
    expect(limitBreaches(entry.hits, fullest - 1, entry.windowMs).breaches.length).toBeGreaterThan(0)
    const p = phase('gateway-pause')
    expect(convergenceProblem(p.convergeMs, p.convergeLimitMs)).toBeNull()
    expect(convergenceProblem(p.convergeMs, p.convergeMs! - 1)).not.toBeNull()
  })
})
