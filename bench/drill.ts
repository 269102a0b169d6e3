// npm run drill [-- flags]: the fault drill (issue 15, item 4; README "Reliability"). 3 gateway processes, a
// 3-member etcd cluster, Redis and two upstream targets on loopback, under steady load; five faults in turn,
// each followed by its checks (bench/lib/drill-phases.ts). Table on stdout, progress on stderr, everything in
// the JSON report. Exit 0 when every check passed, 1 when one failed, 2 on bad flags or a harness failure.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Explanation } from './lib/drill-checks.js'
import { API_PATHS, DENY_PATH, LOCAL_PATH, startDrillCluster, type DrillCluster } from './lib/drill-cluster.js'
import { DrillLoad } from './lib/drill-load.js'
import { describeOutcome, FAULTS, runPhase, type DrillOptions, type PhaseResult } from './lib/drill-phases.js'
import { describeMachine } from './lib/machine.js'
import { repoRoot } from './lib/paths.js'
import { findBinary, killAllChildren } from './lib/processes.js'
import { formatCount, parseDurationMs } from './lib/units.js'

const usage = `Usage: npm run drill -- [flags]

  --settle 10s            steady load before and after each fault
  --redis-stall 5s        how long Redis stays SIGSTOPped
  --rate 150              requests per second sent to each gateway
  --concurrency 4         requests in flight per gateway at most
  --limit 20              the cluster limit of the two limited routes, per --window
  --window 1s
  --redis-timeout 250ms   the gateways' redis.timeout
  --paused-writes 50      route changes written while a gateway is SIGSTOPped
  --pause 3s              how long that gateway stays SIGSTOPped at least
  --json out.json         the JSON report (default bench/results/drill.json)
  --help                  this text
`

/** The cluster running now, for an interrupt: etcd members are not spawnChild's children. */
let running: DrillCluster | null = null

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const say = (line = ''): void => { process.stdout.write(`${line}\n`) }

function positive(name: string, text: string): number {
  const value = Number(text)
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected an integer >= 1, got "${text}"`)
  return value
}

interface Flags {
  readonly options: DrillOptions
  readonly redisTimeoutMs: number
  readonly rate: number
  readonly concurrency: number
  readonly jsonPath: string
  readonly isHelp: boolean
}

function parseFlags(argv: readonly string[]): Flags {
  const { values } = parseArgs({
    args: [...argv], strict: true,
    options: {
      settle: { type: 'string', default: '10s' },
      'redis-stall': { type: 'string', default: '5s' },
      rate: { type: 'string', default: '150' },
      concurrency: { type: 'string', default: '4' },
      limit: { type: 'string', default: '20' },
      window: { type: 'string', default: '1s' },
      'redis-timeout': { type: 'string', default: '250ms' },
      'paused-writes': { type: 'string', default: '50' },
      pause: { type: 'string', default: '3s' },
      json: { type: 'string', default: join(repoRoot, 'bench', 'results', 'drill.json') },
      help: { type: 'boolean', default: false },
    },
  })
  return {
    options: {
      settleMs: parseDurationMs(values.settle), redisStallMs: parseDurationMs(values['redis-stall']),
      pausedWrites: positive('paused-writes', values['paused-writes']), pauseMs: parseDurationMs(values.pause),
      limit: positive('limit', values.limit),
      windowMs: parseDurationMs(values.window), gateways: 3,
    },
    redisTimeoutMs: parseDurationMs(values['redis-timeout']),
    rate: positive('rate', values.rate), concurrency: positive('concurrency', values.concurrency),
    jsonPath: values.json, isHelp: values.help === true,
  }
}

const cell = (ms: number | null): string => (ms === null ? 'not converged' : `${Math.round(ms)} ms`)

function table(results: readonly PhaseResult[]): string {
  const rows = ['| fault | requests | errors (explained) | unexpected errors | time to converge | fullest limit window | result |', '|---|---:|---:|---:|---:|---|---|']
  for (const r of results) {
    const windows = [DENY_PATH, LOCAL_PATH].map((p) => {
      const f = r.limits[p]?.fullest
      return f == null ? '-' : `${f.admitted}/${f.bound}`
    }).join(', ')
    rows.push(`| ${r.fault} | ${formatCount(r.requests)} | ${r.errors} (${r.explained}) | ${r.unexpected.length} | ${cell(r.convergeMs)} (≤ ${r.convergeLimitMs} ms) | ${windows} | ${r.passed ? 'pass' : 'FAIL'} |`)
  }
  return rows.join('\n')
}

async function main(): Promise<number> {
  let flags: Flags
  try {
    flags = parseFlags(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage}`)
    return 2
  }
  if (flags.isHelp) {
    say(usage)
    return 0
  }
  // bench/lib/etcd.ts honours ETCD_BIN and ETCDCTL_BIN; bench/lib/redis.ts looks on PATH.
  const isThere = (name: string, variable: string | null): boolean => {
    const path = variable === null ? undefined : process.env[variable]
    return path === undefined ? findBinary(name) !== null : existsSync(path)
  }
  const missing = ([['etcd', 'ETCD_BIN'], ['etcdctl', 'ETCDCTL_BIN'], ['redis-server', null]] as const).filter(([name, variable]) => !isThere(name, variable)).map(([name]) => name)
  if (missing.length > 0) {
    process.stderr.write(`not found: ${missing.join(', ')}. Install Debian's etcd-server, etcd-client and redis-server (or put them on PATH).\n`)
    return 2
  }
  const { options } = flags
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-drill-'))
  let cluster: DrillCluster | null = null
  let load: DrillLoad | null = null
  const results: PhaseResult[] = []
  const started = new Date()
  const loadAtStart = loadavg()[0] ?? 0
  try {
    cluster = await startDrillCluster({ gateways: options.gateways, limit: options.limit, windowMs: options.windowMs, redisTimeoutMs: flags.redisTimeoutMs, dir }, log)
    running = cluster
    load = new DrillLoad(cluster.gateways.map((g) => g.url), [...API_PATHS, DENY_PATH, LOCAL_PATH], flags.rate, flags.concurrency)
    load.start()
    const explanations: Explanation[] = []
    const changes = { n: 0 }
    for (const fault of FAULTS) results.push(await runPhase(fault, cluster, load, options, explanations, changes, log))
  } catch (err) {
    log(`drill failed: ${(err as Error).stack ?? String(err)}`)
    if (cluster !== null) for (const g of cluster.gateways) log(`${g.name}: ${g.tail()}`)
    return 2
  } finally {
    await load?.stop()
    await cluster?.close()
    running = null
    killAllChildren()
    rmSync(dir, { recursive: true, force: true })
  }
  const m = describeMachine()
  say(`# Tollgate fault drill, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`)
  say()
  say(`- machine: ${m.cpu}, ${m.cores} cores, ${m.os}, Node ${m.node}; load average ${loadAtStart.toFixed(2)} at the start`)
  say(`- 3 gateway processes, 3 etcd members, 1 redis-server, 2 upstream targets, all on 127.0.0.1; ${flags.rate} req/s to each gateway ` +
    `(${flags.concurrency} in flight at most), over ${[...API_PATHS, DENY_PATH, LOCAL_PATH].join(' ')}`)
  say(`- ${DENY_PATH} and ${LOCAL_PATH}: sliding window, ${options.limit} per ${options.windowMs} ms, scope cluster, onStoreError deny and local; redis.timeout ${flags.redisTimeoutMs} ms`)
  say(`- each fault between ${options.settleMs / 1000} s of steady load before and after; Redis stopped for ${options.redisStallMs / 1000} s, ` +
    `a gateway for ${options.pauseMs / 1000} s (at least) while ${options.pausedWrites} route changes were written`)
  say()
  say(table(results))
  say()
  say('errors: 5xx and requests without a response; explained: covered by the fault in progress (bench/lib/drill-phases.ts). ' +
    'Fullest limit window: the most requests the upstream received in one window of the limiter, against what was allowed there, for ' +
    `${DENY_PATH}, ${LOCAL_PATH}.`)
  say()
  for (const r of results) {
    for (const note of r.notes) say(`- ${r.name}: ${note}`)
    for (const problem of r.problems) say(`- ${r.name}: FAIL: ${problem}`)
    for (const o of r.unexpected.slice(0, 5)) say(`- ${r.name}: unexpected: ${describeOutcome(o)}`)
  }
  mkdirSync(dirname(flags.jsonPath), { recursive: true })
  writeFileSync(flags.jsonPath, `${JSON.stringify({ startedAt: started.toISOString(), options, rate: flags.rate, concurrency: flags.concurrency, redisTimeoutMs: flags.redisTimeoutMs, phases: results }, null, 1)}\n`)
  log(`JSON report: ${flags.jsonPath}`)
  return results.every((r) => r.passed) ? 0 : 1
}

process.on('SIGINT', () => {
  for (const m of running?.etcd.members ?? []) {
    try { process.kill(m.pid, 'SIGKILL') } catch { /* gone */ }
  }
  killAllChildren()
  process.exit(130)
})
main().then((code) => { process.exitCode = code }, (err: unknown) => {
  log(String(err))
  killAllChildren()
  process.exitCode = 2
})
