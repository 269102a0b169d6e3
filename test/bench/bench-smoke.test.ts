// The CI smoke of `npm run bench -- --quick`: proves the harness still starts an upstream and a peer,
// drives load through it, runs the micro-benchmarks in their own process and reports. It asserts no speed:
// a slow machine must not fail it.
// Runs the compiled harness, so `npm test` (tsc first) must have built dist/.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { redisMissing } from '../../bench/lib/redis.js'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const runJs = join(repoRoot, 'dist', 'bench', 'run.js')
/** About 6 s alone; more when the rest of the suite shares the two cores. */
const RUN_TIMEOUT_MS = 50_000

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function runBench(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [runJs, ...args], { cwd: repoRoot, timeout: RUN_TIMEOUT_MS }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

interface JsonReport {
  scenarios: {
    name: string
    skipped: string | null
    notes: string[]
    results: {
      peer: string, rps: { median: number } | null, cpuUsPerRequest: { median: number } | null
      runs: { requests: number, unexpected: number, rep?: number, pid?: number | null }[], failures: string[]
    }[]
  }[]
  micro: {
    yamlBuild: string
    calls: { key: string, wallNs: number, cpuNs: number }[]
    runs: { key: string, wallMs: number }[]
    loadPlusBuildMs: number
  } | null
  checks: string[]
}

/** The median column of the micro table's row that starts with `label`, as a number. */
function microFigure(stdout: string, label: string, unit: 'ns' | 'ms'): number | null {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const row = new RegExp(`^\\| ${escaped}\\s*\\|\\s+([\\d,.]+) ${unit} \\|`, 'm').exec(stdout)
  return row === null ? null : Number(row[1]!.replaceAll(',', ''))
}

describe('npm run bench -- --quick', () => {
  it('measures the thinnest forwarder and the upstream and prints both in a table and the JSON report', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    expect(existsSync(runJs), `${runJs} is missing: build first (npx tsc -p .)`).toBe(true)
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--only', 'undici-stream,direct', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const row = /^\| undici-stream\s+\|\s+([\d,]+) \|/m.exec(run.stdout)
    expect(row, run.stdout).not.toBeNull()
    expect(Number(row![1]!.replaceAll(',', ''))).toBeGreaterThan(0)
    expect(run.stdout).toMatch(/^\| direct\s+\|\s+[\d,]+ \|/m)

    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as JsonReport
    const small = report.scenarios.find((s) => s.name === 'small')
    const thin = small?.results.find((r) => r.peer === 'undici-stream')
    expect(thin?.rps?.median).toBeGreaterThan(0)

    // The micro-benchmarks: a table with a positive median in every row bench/README.md lists, and the same in
    // the JSON.
    expect(run.stdout).toContain('## Micro-benchmarks')
    for (const label of ['Router.match, 1k routes (param-heavy mix)', 'Router.match, 10k routes (param-heavy mix)',
      'canonicalizeTarget /api/v1/users/12345/orders?limit=10', 'token-bucket decision, one hot key',
      'sliding-window decision, one hot key', 'token-bucket decision, 100,000 live keys (random key per call)']) {
      expect(microFigure(run.stdout, label, 'ns'), `${label}\n${run.stdout}`).toBeGreaterThan(0)
    }
    for (const label of ['buildRouteTable, 10k routes: validated config, no previous table',
      'loadConfigText, 10k-route file: YAML parse + validation', '  of which the YAML parse (parseYamlSource)']) {
      expect(microFigure(run.stdout, label, 'ms'), `${label}\n${run.stdout}`).toBeGreaterThan(0)
    }
    const micro = report.micro
    for (const key of ['lookup1k', 'lookup10k', 'canonicalizeTypical', 'tokenBucketHotKey', 'slidingWindowHotKey', 'tokenBucket100kKeys', 'tokenBucket100kKeysFreshKey', 'rateLimitStepPolicies']) {
      expect(micro?.calls.find((c) => c.key === key)?.wallNs, key).toBeGreaterThan(0)
    }
    for (const key of ['build10k', 'load10k', 'parse10k']) {
      expect(micro?.runs.find((r) => r.key === key)?.wallMs, key).toBeGreaterThan(0)
    }
    expect(micro?.loadPlusBuildMs).toBeGreaterThan(0)
    // The config loader parses with yaml's build without per-token environment reads (src/config/yaml-source.ts).
    expect(micro?.yamlBuild).toBe('neutral')
    expect(report.checks.some((c) => c.startsWith('route lookup median:'))).toBe(true)
    expect(report.checks.some((c) => c.startsWith('building 10k routes'))).toBe(true)
    // The 300 ns target on the row whose key is built per call, as a request's; the prebuilt row has none.
    expect(report.checks.some((c) => c.startsWith('token-bucket decision, 100,000 live keys, key string built per call: median') && c.includes('(target ≤ 300 ns)'))).toBe(true)
    expect(report.checks.some((c) => c.startsWith('token-bucket decision, 100,000 live keys (random key per call): median') && c.includes('(no target'))).toBe(true)
  })

  it('runs the limiter scenarios beside the core path: CPU per request, the checks, and what Redis saw', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--no-micro', '--only', 'tollgate', '--scenarios', 'small,policies,limits,cluster-limit', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as JsonReport
    for (const [name, peer] of [['small', 'tollgate'], ['policies', 'tollgate'], ['policies', 'tollgate-core'], ['limits', 'tollgate'], ['limits', 'tollgate-core']]) {
      const result = report.scenarios.find((s) => s.name === name)?.results.find((r) => r.peer === peer)
      expect(result?.rps?.median, `${name} ${peer}\n${run.stdout}`).toBeGreaterThan(0)
      expect(result?.cpuUsPerRequest?.median, `${name} ${peer}\n${run.stdout}`).toBeGreaterThan(0)
      // Each run knows its repetition: the checks pair the two peers' runs by it (report.ts pairedRpsRatio).
      expect(result?.runs.map((r) => r.rep), `${name} ${peer}`).toEqual([1])
    }
    expect(run.stdout).toMatch(/^\| tollgate\s+\|\s+[\d,]+ \|\s+[\d,]+–[\d,]+ \|\s+[\d.]+ \|\s+[\d.]+ \|\s+[\d.]+ \|/m)
    // The scenario's own tollgate-core, interleaved with it, is the core path; its breaker and passive health are
    // enforced (else Tollgate would log "not enforced yet" and the scenario skip it).
    expect(report.checks.some((c) => c.startsWith('policies: tollgate req/s ÷ tollgate-core req/s')), run.stdout).toBe(true)
    expect(report.checks.some((c) => c.startsWith('policies: the CPU per request of the limiters, breaker and passive health'))).toBe(true)
    expect(report.checks.some((c) => c.startsWith('limits: tollgate req/s ÷ tollgate-core req/s')), run.stdout).toBe(true)
    expect(report.checks.some((c) => c.startsWith('limits: the CPU per request of the two local limiters'))).toBe(true)
    // Measured, with what its redis-server saw; without redis-server, skipped with the reason, never crashed.
    const cluster = report.scenarios.find((s) => s.name === 'cluster-limit')
    expect(cluster).toBeDefined()
    if (redisMissing() === null) {
      expect(cluster!.skipped, run.stdout).toBeNull()
      expect(cluster!.notes.some((n) => /^redis-server .*: [1-9][\d,]* script calls for [\d,]+ tollgate requests \(/.test(n)), run.stdout).toBe(true)
      expect(report.checks.some((c) => c.startsWith('cluster-limit: tollgate req/s ÷ tollgate-core req/s'))).toBe(true)
    } else {
      expect(run.stdout).toContain(`skipped cluster-limit: ${cluster!.skipped}`)
    }
  })

  it('runs each repetition of scenario limits on fresh processes, each peer measured straight after its own warm-up', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--no-micro', '--only', 'tollgate', '--scenarios', 'limits', '--reps', '2', '--warmup', '1s', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const limits = JSON.parse(readFileSync(jsonPath, 'utf8')).scenarios.find((s: { name: string }) => s.name === 'limits') as JsonReport['scenarios'][number]
    const pids: number[] = []
    for (const peer of ['tollgate', 'tollgate-core']) {
      const runs = limits.results.find((r) => r.peer === peer)?.runs ?? []
      expect(runs.map((r) => r.rep), peer).toEqual([1, 2])
      for (const r of runs) pids.push(r.pid ?? -1)
    }
    // Four measured runs, four processes.
    expect(new Set(pids).size, JSON.stringify(pids)).toBe(4)
    expect(pids.every((pid) => pid > 0)).toBe(true)
    expect(limits.notes).toContain('each of the 2 repetitions ran on peer processes of its own, started and warmed up for it (Scenario.freshPeers)')
    // A/B then B/A, with no other peer's warm-up or run between a peer's warm-up and its measured run.
    const steps = run.stderr.split('\n').filter((l) => l.startsWith('limits')).map((l) => l.replace(/: \d+ req\/s$/, ''))
    expect(steps).toEqual([
      'limits: warm-up tollgate', 'limits 1/2 tollgate', 'limits: warm-up tollgate-core', 'limits 1/2 tollgate-core',
      'limits: warm-up tollgate-core', 'limits 2/2 tollgate-core', 'limits: warm-up tollgate', 'limits 2/2 tollgate',
    ])
  })

  it('measures tracing beside the core path with an OTLP receiver running, which receives the spans', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--no-micro', '--only', 'tollgate', '--scenarios', 'tracing,tracing-all', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as JsonReport
    for (const name of ['tracing', 'tracing-all']) {
      const scenario = report.scenarios.find((s) => s.name === name)
      expect(scenario?.skipped, `${name}\n${run.stdout}`).toBeNull()
      for (const peer of ['tollgate', 'tollgate-core']) {
        expect(scenario!.results.find((r) => r.peer === peer)?.rps?.median, `${name} ${peer}\n${run.stdout}`).toBeGreaterThan(0)
      }
    }
    // Every request sampled: the receiver got exports during the measured second (batches of 512 spans).
    const all = report.scenarios.find((s) => s.name === 'tracing-all')!
    expect(all.notes.some((n) => /^OTLP receiver .*: [1-9][\d,]* export requests/.test(n)), run.stdout).toBe(true)
    expect(report.checks.some((c) => c.startsWith('tracing: tollgate req/s ÷ tollgate-core req/s'))).toBe(true)
    expect(report.checks.some((c) => c.startsWith('tracing-all: CPU per sampled request'))).toBe(true)
  })

  it('measures the open breaker and the failing upstream beside the core path, every response the one expected', { timeout: RUN_TIMEOUT_MS + 10_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const jsonPath = join(dir, 'out.json')

    const run = await runBench(['--quick', '--no-micro', '--only', 'tollgate', '--scenarios', 'breaker-open,failing-upstream', '--json', jsonPath])

    expect(run.code, run.stderr).toBe(0)
    const report = JSON.parse(readFileSync(jsonPath, 'utf8')) as JsonReport
    for (const name of ['breaker-open', 'failing-upstream']) {
      const scenario = report.scenarios.find((s) => s.name === name)
      expect(scenario?.skipped, `${name}\n${run.stdout}`).toBeNull()
      for (const peer of ['tollgate', 'tollgate-core']) {
        const result = scenario!.results.find((r) => r.peer === peer)
        expect(result?.rps?.median, `${name} ${peer}\n${run.stdout}`).toBeGreaterThan(0)
        expect(result?.cpuUsPerRequest?.median, `${name} ${peer}\n${run.stdout}`).toBeGreaterThan(0)
        // 503 CIRCUIT_OPEN (breaker-open) and the upstream's 500 (failing-upstream) from tollgate, 2xx from tollgate-core,
        // throughout: checked before and after the runs (failures) and counted by wrk during them (unexpected).
        expect(result!.failures, `${name} ${peer}`).toEqual([])
        expect(result!.runs.reduce((sum, r) => sum + r.unexpected, 0), `${name} ${peer}\n${run.stdout}`).toBe(0)
      }
    }
    expect(report.checks.some((c) => c.startsWith('breaker-open: refusals per second ÷ tollgate-core req/s'))).toBe(true)
    expect(report.checks.some((c) => c.startsWith('failing-upstream: CPU per request, failure ÷ success'))).toBe(true)
  })

  it('rejects an unknown peer name with exit code 2 and the list of known peers', async () => {
    const run = await runBench(['--quick', '--only', 'no-such-peer'])

    expect(run.code).toBe(2)
    expect(run.stderr).toContain('unknown peer(s) no-such-peer')
    expect(run.stderr).toContain('undici-stream')
  })

  it('rejects --no-micro together with --micro-only with exit code 2', async () => {
    const run = await runBench(['--quick', '--no-micro', '--micro-only'])

    expect(run.code).toBe(2)
    expect(run.stderr).toContain('--no-micro and --micro-only exclude each other')
  })
})
