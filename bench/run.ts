// npm run bench [-- flags]: one upstream, Tollgate and its peers side by side, interleaved repetitions.
// See bench/README.md. Tables on stdout, progress on stderr, JSON in bench/results/last.json.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseBenchArgs, usage, type BenchOptions } from './lib/args.js'
import { chooseLoadGenerator, type LoadGenerator } from './lib/load.js'
import { collectVersions, describeMachine } from './lib/machine.js'
import { microChecks, microTable, runMicro, type MicroRun } from './lib/micro.js'
import { createPeers, PeerSkipped, type Peer, type RunningPeer } from './lib/peers.js'
import { choosePinning, freePort, killAllChildren, probe, readRssKib, type Pinning } from './lib/processes.js'
import { idleRssCheck, rssTable, scenarioTable, type PeerResult, type ScenarioReport, type Skip } from './lib/report.js'
import { spread } from './lib/stats.js'
import { formatMiB } from './lib/units.js'
import { startUpstream, type Upstream } from './lib/upstream.js'
import { scenarios, type Scenario } from './scenarios.js'

const RSS_SAMPLE_MS = 100
/**
 * bench/README.md "Targets": tollgate's req/s at least this share of the thinnest forwarder's, p99 at most
 * this multiple.
 */
const TARGET_RPS_RATIO = 0.9
const TARGET_P99_RATIO = 1.2
/** bench/README.md "Targets": idle RSS of a one-route gateway. */
const TARGET_IDLE_RSS_MIB = 80

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const say = (line = ''): void => { process.stdout.write(`${line}\n`) }

interface Bench {
  readonly options: BenchOptions
  readonly pinning: Pinning
  readonly load: LoadGenerator
  readonly upstream: Upstream
  readonly tmpDir: string
}

interface Started {
  readonly peer: Peer
  readonly running: RunningPeer
  readonly result: PeerResult
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

function emptyResult(peer: string): PeerResult {
  return {
    peer, runs: [], failures: [], rps: null, p50Ms: null, p99Ms: null,
    rssIdleKib: null, rssMaxLoadKib: null, tollgateRatio: null, exitCode: null,
  }
}

async function startPeer(bench: Bench, peer: Peer, scenario: Scenario, body: Buffer | null, expectedBytes: number): Promise<Started | Skip> {
  const dir = join(bench.tmpDir, scenario.name, peer.name)
  mkdirSync(dir, { recursive: true })
  let running: RunningPeer
  try {
    running = await peer.start({ port: await freePort(), upstream: bench.upstream, scenario, dir, core: bench.pinning.proxyCore })
  } catch (error) {
    return { peer: peer.name, reason: error instanceof PeerSkipped ? error.message : `failed to start: ${message(error)}` }
  }
  // One request first: a peer that cannot serve the scenario would only measure its error path.
  const method = scenario.method ?? 'GET'
  const answer = await probe(`${running.url}${scenario.path}`, method, body).catch((error: unknown) => message(error))
  if (typeof answer === 'string' || answer.status < 200 || answer.status > 299) {
    await running.stop()
    const what = typeof answer === 'string' ? answer : `answered ${answer.status}`
    return { peer: peer.name, reason: `${method} ${scenario.path} ${what}` }
  }
  if (answer.bytes !== expectedBytes) {
    await running.stop()
    return { peer: peer.name, reason: `${method} ${scenario.path} answered ${answer.bytes} bytes; the upstream serves ${expectedBytes}` }
  }
  const result = emptyResult(peer.name)
  result.rssIdleKib = running.child === null ? null : readRssKib(running.child.pid)
  return { peer, running, result }
}

async function measure(bench: Bench, started: Started, scenario: Scenario, body: Buffer | null, durationMs: number, isRecorded: boolean): Promise<void> {
  const { running, result } = started
  const pid = running.child?.pid ?? null
  const sampler = pid === null ? null : setInterval(() => {
    const rss = readRssKib(pid)
    if (rss !== null && isRecorded) result.rssMaxLoadKib = Math.max(result.rssMaxLoadKib ?? 0, rss)
  }, RSS_SAMPLE_MS)
  try {
    const outcome = await bench.load.run({
      url: `${running.url}${scenario.path}`, method: scenario.method ?? 'GET', body,
      connections: bench.options.connections, durationMs, core: bench.pinning.loadCore,
    })
    if (isRecorded) result.runs.push(outcome)
  } catch (error) {
    if (isRecorded) result.failures.push(message(error))
    log(`  ${result.peer}: ${message(error)}`)
  } finally {
    if (sampler !== null) clearInterval(sampler)
  }
}

function summarize(results: readonly PeerResult[]): void {
  for (const r of results) {
    if (r.runs.length === 0) continue
    r.rps = spread(r.runs.map((run) => run.rps))
    r.p50Ms = spread(r.runs.map((run) => run.p50Ms))
    r.p99Ms = spread(r.runs.map((run) => run.p99Ms))
  }
  const tollgate = results.find((r) => r.peer === 'tollgate')?.rps ?? null
  for (const r of results) {
    if (tollgate !== null && r.rps !== null && r.rps.median > 0) r.tollgateRatio = tollgate.median / r.rps.median
  }
}

async function runScenario(bench: Bench, scenario: Scenario, candidates: readonly Peer[]): Promise<ScenarioReport> {
  const report: ScenarioReport = {
    name: scenario.name, description: scenario.description, path: scenario.path, method: scenario.method ?? 'GET',
    skipped: null, skippedPeers: [], results: [],
  }
  const wanted = candidates.filter((p) => scenario.peers === undefined || scenario.peers.includes(p.name))
  if (scenario.needsTollgate === true && !wanted.some((p) => p.name === 'tollgate')) {
    report.skipped = 'tollgate is not among the peers run'
    return report
  }
  if (wanted.length === 0) {
    report.skipped = 'none of its peers is among the peers run'
    return report
  }
  const body = scenario.body === undefined ? null : Buffer.from(scenario.body)
  const expected = await probe(`${bench.upstream.url}${scenario.path}`, scenario.method ?? 'GET', body)
  const outcomes = await Promise.all(wanted.map((peer) => startPeer(bench, peer, scenario, body, expected.bytes)))
  const started: Started[] = []
  for (const outcome of outcomes) {
    if ('running' in outcome) started.push(outcome)
    else {
      report.skippedPeers.push(outcome)
      say(`skipped ${outcome.peer} (${scenario.name}): ${outcome.reason}`)
    }
  }
  try {
    const tollgateSkip = report.skippedPeers.find((s) => s.peer === 'tollgate')
    if (scenario.needsTollgate === true && tollgateSkip !== undefined) {
      report.skipped = `tollgate: ${tollgateSkip.reason}`
      return report
    }
    const { durationMs, warmupMs, reps } = bench.options
    // Only the peer under load runs: the others are frozen meanwhile (Child.setFrozen says why).
    const alone = async (s: Started, run: () => Promise<void>): Promise<void> => {
      for (const other of started) if (other !== s) other.running.child?.setFrozen(true)
      try {
        await run()
      } finally {
        for (const other of started) other.running.child?.setFrozen(false)
      }
    }
    if (warmupMs > 0) {
      for (const s of started) {
        log(`${scenario.name}: warm-up ${s.peer.name}`)
        await alone(s, () => measure(bench, s, scenario, body, warmupMs, false))
      }
    }
    for (let rep = 1; rep <= reps; rep++) {
      for (const s of started) {
        await alone(s, () => measure(bench, s, scenario, body, durationMs, true))
        const last = s.result.runs.at(-1)
        log(`${scenario.name} ${rep}/${reps} ${s.peer.name}: ${last === undefined ? 'failed' : `${Math.round(last.rps)} req/s`}`)
      }
    }
  } finally {
    for (const s of started) {
      s.result.exitCode = await s.running.stop()
      // null: ended by the signal itself, which is how haproxy and the peer scripts may stop.
      const isClean = s.result.exitCode === 0 || (s.result.exitCode === null && s.peer.name !== 'tollgate')
      if (s.running.child !== null && !isClean) log(`${s.peer.name} (${scenario.name}) exited with ${s.result.exitCode} on SIGTERM`)
    }
  }
  report.results.push(...started.map((s) => s.result))
  summarize(report.results)
  return report
}

/** `bench` null: only the micro-benchmarks run (--micro-only). */
function printHeader(options: BenchOptions, pinning: Pinning, bench: Bench | null, versions: Record<string, string | null>): void {
  const m = describeMachine()
  say(`# Tollgate bench, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`)
  say()
  say(`- machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}`)
  if (bench !== null) {
    const loadName = bench.load.name === 'wrk' ? `wrk ${versions.wrk ?? ''} -t1 -c${options.connections}` : `${bench.load.name}, ${options.connections} connections`
    say(`- load: ${loadName}; ${options.durationMs / 1000} s per run, ${options.reps} interleaved repetition(s), ${options.warmupMs / 1000} s warm-up per peer; median [min–max]`)
    say(`- upstream: ${bench.upstream.kind === 'nginx' ? `nginx ${versions.nginx ?? ''} (1 worker)` : 'node:http (bench/upstream-server.ts)'}`)
  }
  say(`- pinning: ${pinning.note}`)
  const load1 = loadavg()[0] ?? 0
  // Other busy processes share the cores with the proxy under test; the figures then mean little.
  if (load1 > 0.5) say(`- warning: load average ${load1.toFixed(2)} before the run: other processes are busy, figures are not reliable`)
  if (options.isQuick) say('- --quick: a smoke run without warm-up; its figures are not meaningful')
  say()
}

/** Runs the micro-benchmarks in their own process, on the proxy's core (idle meanwhile), and prints them. */
async function microSection(options: BenchOptions, pinning: Pinning, tmpDir: string): Promise<MicroRun> {
  log('micro-benchmarks')
  const run = await runMicro({ isQuick: options.isQuick, core: pinning.proxyCore, dir: tmpDir })
  say('## Micro-benchmarks')
  say()
  if (run.report === null) say(`micro-benchmarks failed: ${run.error ?? 'no report'}`)
  else {
    const r = run.report
    const where = pinning.proxyCore === null ? 'not pinned' : `pinned to core ${pinning.proxyCore}`
    say(`Its own process (bench/micro/micro-bench.ts, ${where}), Node ${r.node}, yaml build "${r.yamlBuild}"; ` +
      `routes.yaml of ${r.routes.large.toLocaleString('en-US')} routes: ${(r.routes.largeFileBytes / 2 ** 20).toFixed(1)} MiB; ` +
      `load average ${r.loadAverage1m.toFixed(2)} at the end. Per call: median over batches of 10,000 calls; ` +
      'per run: median over runs, each after a garbage collection. Wall time; CPU time of the process beside it.')
    say()
    say(microTable(r))
  }
  say()
  return run
}

function printChecks(reports: readonly ScenarioReport[], micro: MicroRun | null): string[] {
  const checks: string[] = []
  for (const report of reports) {
    const tollgate = report.results.find((r) => r.peer === 'tollgate')
    const thin = report.results.find((r) => r.peer === 'undici-stream')
    if (tollgate?.rps == null || tollgate.p99Ms === null || thin?.rps == null || thin.p99Ms === null) continue
    const rpsRatio = tollgate.rps.median / thin.rps.median
    const p99Ratio = tollgate.p99Ms.median / thin.p99Ms.median
    const isMet = rpsRatio >= TARGET_RPS_RATIO && p99Ratio <= TARGET_P99_RATIO
    // Three decimals: 0.899 must not print as a "0.90" that fails a 0.9 target.
    checks.push(`${report.name}: tollgate ÷ undici-stream req/s ${rpsRatio.toFixed(3)} (target ≥ ${TARGET_RPS_RATIO}), ` +
      `p99 ${p99Ratio.toFixed(3)} (target ≤ ${TARGET_P99_RATIO}): ${isMet ? 'met' : 'NOT met'}`)
  }
  const idle = idleRssCheck(reports, new Set(scenarios.filter((s) => s.tollgateConfig === undefined).map((s) => s.name)), TARGET_IDLE_RSS_MIB)
  if (idle !== null) checks.push(idle)
  if (micro?.report != null) checks.push(...microChecks(micro.report))
  if (checks.length > 0) {
    say('## Checks (bench/README.md "Targets")')
    say()
    for (const check of checks) say(`- ${check}`)
    say()
  }
  return checks
}

function selectPeers(options: BenchOptions, peers: readonly Peer[]): { selected: Peer[], missing: Skip[] } {
  if (options.onlyPeers !== null) {
    const unknown = [...options.onlyPeers].filter((name) => !peers.some((p) => p.name === name))
    if (unknown.length > 0) throw new Error(`--only: unknown peer(s) ${unknown.join(', ')}; known: ${peers.map((p) => p.name).join(', ')}`)
  }
  const selected: Peer[] = []
  const missing: Skip[] = []
  for (const peer of peers) {
    if (options.onlyPeers !== null && !options.onlyPeers.has(peer.name)) continue
    const reason = peer.missing()
    if (reason === null) selected.push(peer)
    else missing.push({ peer: peer.name, reason })
  }
  return { selected, missing }
}

function selectScenarios(options: BenchOptions): Scenario[] {
  if (options.onlyScenarios === null) return [...scenarios]
  const unknown = [...options.onlyScenarios].filter((name) => !scenarios.some((s) => s.name === name))
  if (unknown.length > 0) throw new Error(`--scenarios: unknown scenario(s) ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}`)
  return scenarios.filter((s) => options.onlyScenarios!.has(s.name))
}

/** Keep the harness itself (its few timers) off the proxy's core. */
function pinSelf(pinning: Pinning): void {
  if (pinning.loadCore !== null) spawnSync('taskset', ['-a', '-p', '-c', String(pinning.loadCore), String(process.pid)], { stdio: 'ignore' })
}

async function main(): Promise<number> {
  let options: BenchOptions
  try {
    options = parseBenchArgs(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${message(error)}\n\n${usage}`)
    return 2
  }
  if (options.isHelp) {
    say(usage)
    return 0
  }
  const peers = createPeers(options.tollgateCli)
  let chosenScenarios: Scenario[]
  let chosenPeers: { selected: Peer[], missing: Skip[] }
  try {
    chosenScenarios = selectScenarios(options)
    chosenPeers = selectPeers(options, peers)
  } catch (error) {
    process.stderr.write(`${message(error)}\n`)
    return 2
  }
  const tmpDir = mkdtempSync(join(tmpdir(), 'tollgate-bench-'))
  const pinning = choosePinning(options.isPinned)
  pinSelf(pinning)
  const loadAverageAtStart = loadavg()[0] ?? null
  let upstream: Upstream | null = null
  try {
    let bench: Bench | null = null
    if (!options.isMicroOnly) {
      upstream = await startUpstream(tmpDir, pinning.loadCore)
      bench = { options, pinning, load: chooseLoadGenerator(tmpDir), upstream, tmpDir }
    }
    const versions = collectVersions()
    printHeader(options, pinning, bench, versions)
    const reports: ScenarioReport[] = []
    if (bench !== null) {
      for (const { peer, reason } of chosenPeers.missing) say(`skipped ${peer}: ${reason}`)
      if (chosenPeers.missing.length > 0) say()
      for (const scenario of chosenScenarios) {
        const report = await runScenario(bench, scenario, chosenPeers.selected)
        reports.push(report)
        say(`## ${report.name}: ${report.description}`)
        say()
        say(report.skipped === null ? scenarioTable(report) : `skipped ${report.name}: ${report.skipped}`)
        say()
      }
      const firstMeasured = reports.find((r) => r.results.some((x) => x.rssIdleKib !== null))
      if (firstMeasured !== undefined) {
        say('## Memory')
        say()
        say(rssTable(firstMeasured))
        say()
      }
    }
    const micro = options.hasMicro ? await microSection(options, pinning, tmpDir) : null
    const checks = printChecks(reports, micro)
    mkdirSync(dirname(options.jsonPath), { recursive: true })
    writeFileSync(options.jsonPath, `${JSON.stringify({
      date: new Date().toISOString(),
      machine: describeMachine(),
      versions,
      settings: {
        loadGenerator: bench?.load.name ?? null, connections: options.connections, durationMs: options.durationMs,
        warmupMs: options.warmupMs, reps: options.reps, upstream: upstream?.kind ?? null, pinning: pinning.note,
        loadAverageAtStart,
      },
      peers: bench === null ? [] : peers.map((p) => ({ name: p.name, description: p.description })),
      skippedPeers: bench === null ? [] : chosenPeers.missing,
      scenarios: reports,
      micro: micro?.report ?? null,
      microError: micro?.error ?? null,
      checks,
    }, null, 2)}\n`)
    say(`JSON: ${options.jsonPath}`)
    return 0
  } finally {
    await upstream?.child.stop()
    rmSync(tmpDir, { recursive: true, force: true })
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAllChildren()
    process.exit(130)
  })
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  killAllChildren()
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
