// npm run bench [-- flags]: one upstream, Tollgate and its peers side by side, interleaved repetitions.
// See bench/README.md. Tables on stdout, progress on stderr, JSON in bench/results/last.json.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseBenchArgs, usage, type BenchOptions } from './lib/args.js'
import { scenarioChecks } from './lib/checks.js'
import { chooseLoadGenerator } from './lib/load.js'
import { collectVersions, describeMachine } from './lib/machine.js'
import { microChecks, microTable, runMicro, type MicroRun } from './lib/micro.js'
import { createCorePeer, createPeers, type Peer } from './lib/peers.js'
import { choosePinning, killAllChildren, type Pinning } from './lib/processes.js'
import { rssTable, scenarioTable, type ScenarioReport, type Skip } from './lib/report.js'
import { runScenario, type Bench } from './lib/scenario-runner.js'
import { startUpstream, type Upstream } from './lib/upstream.js'
import { scenarios, type Scenario } from './scenarios.js'

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

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
  const checks = scenarioChecks(reports, new Set(scenarios.filter((s) => s.tollgateConfig === undefined && s.tollgateArgs === undefined).map((s) => s.name)))
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
      bench = { options, pinning, load: chooseLoadGenerator(tmpDir), upstream, tmpDir, corePeer: createCorePeer(options.tollgateCli) }
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
        for (const note of report.notes) say(`- ${note}`)
        if (report.notes.length > 0) say()
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
      peers: bench === null ? [] : [...peers, bench.corePeer].map((p) => ({ name: p.name, description: p.description })),
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
