// npm run soak [-- --minutes N]: the built gateway under mixed traffic, config reloads (file and etcd) and
// instances coming and going, for minutes; fails when a figure of the process trends upward after warm-up,
// when a response is not one its scenario expects, or when the gateway crashes or prints an uncaught
// exception. README "Reliability" describes it; CI runs a 1-minute version (test/e2e/soak-smoke.test.ts).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Etcd3 } from 'etcd3'
import { describeMachine } from './lib/machine.js'
import { freePort, killAllChildren, spawnChild, waitUntilReady, type Child } from './lib/processes.js'
import { parseSoakArgs, soakUsage, type SoakOptions } from './lib/soak-args.js'
import { Churn, seedEtcd, soakConfig, type SoakTopology } from './lib/soak-churn.js'
import { startEtcd, type EtcdProcess } from './lib/soak-etcd.js'
import { LogWatch } from './lib/soak-log.js'
import { Sampler, type Sample } from './lib/soak-sampler.js'
import { brokenScenario, SCENARIOS } from './lib/soak-scenarios.js'
import { Traffic, type ScenarioStats } from './lib/soak-traffic.js'
import { FIGURES, figureTable, judgeFigure, risingLine, type FigureResult } from './lib/soak-trend.js'
import { phases, startSoakServer, type SoakServer } from './lib/soak-upstreams.js'

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A scrape of /metrics that fails now and then is load; more than this share of them is a gateway that stopped answering. */
const MAX_SCRAPE_FAILURE_SHARE = 0.05
const PROGRESS_EVERY_MS = 30_000
/** SIGTERM → exit: the config's shutdown.timeout is 30 s by default, in-flight requests are few. */
const STOP_GRACE_MS = 35_000
/**
 * After the traffic and the changes stop, open fds and active handles must come back to within this many of
 * their values before the traffic started, within REST_WAIT_MS: idle connections close after 5 s (the
 * gateway's keepAliveTimeout, the upstreams' and undici's), so what stays open longer was left behind.
 */
const REST_MARGIN = 4
const REST_WAIT_MS = 20_000

interface AtRest {
  readonly fds: number | null
  readonly handles: number | null
}

const atRest = (values: Partial<Record<'fds' | 'handles', number>>): AtRest => ({ fds: values.fds ?? null, handles: values.handles ?? null })
const isBack = (before: AtRest, now: AtRest): boolean =>
  (before.fds === null || (now.fds !== null && now.fds <= before.fds + REST_MARGIN)) &&
  (before.handles === null || (now.handles !== null && now.handles <= before.handles + REST_MARGIN))

/** Polls the figures until they are back to `before` (or REST_WAIT_MS passed); returns the last reading and when. */
async function waitForRest(sampler: Sampler, before: AtRest, gateway: Child): Promise<{ readonly rest: AtRest, readonly afterMs: number }> {
  const start = Date.now()
  for (;;) {
    const rest = atRest(await sampler.read())
    const afterMs = Date.now() - start
    if (isBack(before, rest) || afterMs >= REST_WAIT_MS || gateway.hasExited()) return { rest, afterMs }
    await sleep(500)
  }
}

interface Parts {
  servers: SoakServer[]
  etcd: EtcdProcess | null
  client: Etcd3 | null
  gateway: Child | null
}

function scenarioTable(stats: readonly ScenarioStats[]): string {
  const rows = stats.map((s) => {
    const statuses = Object.entries(s.byStatus).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}: ${n}`).join(', ')
    return `| ${s.name} | ${s.sent} | ${statuses || '–'} | ${s.unexpected} | ${s.skipped} |`
  })
  return ['| scenario | sent | responses | unexpected | skipped |', '|---|---:|---|---:|---:|', ...rows].join('\n')
}

function judge(samples: readonly Sample[], warmupS: number, rssAllowanceMiB: number | null): FigureResult[] {
  return FIGURES.map((figure) => {
    const spec = figure.key === 'rss' && rssAllowanceMiB !== null ? { ...figure, allowance: rssAllowanceMiB } : figure
    const times: number[] = []
    const values: number[] = []
    for (const s of samples) {
      const v = s.values[spec.key]
      if (s.t < warmupS || v === undefined) continue
      times.push(s.t)
      values.push(v)
    }
    return judgeFigure(spec, times, values)
  })
}

async function run(options: SoakOptions, tmp: string, parts: Parts): Promise<number> {
  if (options.breakScenario !== null && !SCENARIOS.some((s) => s.name === options.breakScenario)) {
    throw new Error(`--break ${options.breakScenario}: no such scenario (${SCENARIOS.map((s) => s.name).join(', ')})`)
  }
  const failures: string[] = []
  const origin = Date.now()
  const steadyA = await startSoakServer('steady-a')
  const steadyB = await startSoakServer('steady-b')
  // One target of `flaky` fails 10 s out of every 20; `broken`, the breaker route's only target, 15 s of 30.
  const flaky = await startSoakServer('flaky', phases(origin, 10_000, 10_000))
  const broken = await startSoakServer('broken', phases(origin, 15_000, 15_000))
  const instances = [await startSoakServer('instance-1'), await startSoakServer('instance-2'), await startSoakServer('instance-3')]
  parts.servers.push(steadyA, steadyB, flaky, broken, ...instances)

  log('starting etcd')
  parts.etcd = await startEtcd(tmp)
  parts.client = new Etcd3({ hosts: [parts.etcd.endpoint] })
  const prefix = '/soak'
  await seedEtcd(parts.client, prefix)

  const port = await freePort()
  const adminPort = await freePort()
  const topology: SoakTopology = {
    listen: `127.0.0.1:${port}`, admin: `127.0.0.1:${adminPort}`, etcdEndpoint: parts.etcd.endpoint, etcdPrefix: prefix,
    snapshotFile: join(tmp, 'etcd-snapshot.json'), steadyA, steadyB, flaky, broken, instances,
  }
  const configPath = join(tmp, 'routes.yaml')
  writeFileSync(configPath, soakConfig(topology, true, 0))
  const gatewayLog = join(tmp, 'gateway.log')
  log(`starting the gateway (${options.tollgateCli})`)
  const workerArgs = options.workers > 1 ? ['--workers', String(options.workers)] : []
  const gateway = spawnChild('tollgate', process.execPath, [options.tollgateCli, '--config', configPath, ...workerArgs], {
    core: null, logPath: gatewayLog, env: { ...process.env, TOLLGATE_LOG_LEVEL: 'info' },
  })
  parts.gateway = gateway
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const notReady = await waitUntilReady(`${adminUrl}/readyz`, 30_000, gateway)
  if (notReady !== null) throw new Error(`the gateway ${notReady}`)

  const startedMs = Date.now()
  const sampler = new Sampler(gateway.pid, adminUrl, startedMs, options.workers > 1)
  const logWatch = new LogWatch(gatewayLog)
  const scenarios = SCENARIOS.map((s) => (s.name === options.breakScenario ? brokenScenario(s) : s))
  const traffic = new Traffic(`http://${topology.listen}`, scenarios, options.rateScale)
  const churn = new Churn(topology, parts.client, configPath, options.reloadEveryMs)
  await sampler.read() // opens the admin connection the later readings count
  const restBefore = atRest(await sampler.read())
  log(`soak: ${options.durationMs / 60_000} min, warm-up ${options.warmupMs / 1000} s, gateway pid ${gateway.pid}, logs in ${tmp}`)
  traffic.start()
  churn.start()

  let nextProgressMs = startedMs + PROGRESS_EVERY_MS
  for (let tick = 1; ; tick++) {
    const due = startedMs + tick * 1000
    if (due > startedMs + options.durationMs) break
    await sleep(Math.max(0, due - Date.now()))
    if (gateway.hasExited()) break
    const sample = await sampler.sample()
    logWatch.poll()
    if (Date.now() >= nextProgressMs) {
      nextProgressMs += PROGRESS_EVERY_MS
      const v = sample.values
      log(`${Math.round(sample.t)} s: ${traffic.sentTotal} requests, ${traffic.unexpectedTotal} unexpected; ` +
        `RSS ${((v.rss ?? 0) / 2 ** 20).toFixed(1)} MiB, heap ${((v.heap ?? 0) / 2 ** 20).toFixed(1)} MiB, fds ${v.fds ?? '?'}, ` +
        `handles ${v.handles ?? '?'}, loop p99 ${((v.loopP99 ?? 0) * 1000).toFixed(1)} ms; load ${loadavg()[0]?.toFixed(2)}`)
    }
  }
  const crashed = gateway.hasExited()
  log('stopping traffic and changes')
  await traffic.stop()
  await churn.stop()
  const afterTraffic = gateway.hasExited() ? null : await waitForRest(sampler, restBefore, gateway)
  await sampler.close()
  logWatch.poll()

  let exitCode: number | null = null
  if (crashed) failures.push(`the gateway exited during the soak (code ${await gateway.exited}); its output: ${gatewayLog}`)
  else {
    exitCode = await gateway.stop(STOP_GRACE_MS)
    if (exitCode !== 0) failures.push(`the gateway exited with code ${exitCode} on SIGTERM (expected 0)`)
  }
  logWatch.poll()

  const figures = judge(sampler.samples, options.warmupMs / 1000, options.rssAllowanceMiB)
  for (const f of figures) if (f.verdict === 'RISING') failures.push(risingLine(f))
  if (traffic.unexpectedTotal > 0) {
    failures.push(`${traffic.unexpectedTotal} response(s) not expected by their scenario; the first: ${traffic.failures[0] ?? '?'}`)
  }
  if (logWatch.badLines > 0) failures.push(`the gateway printed ${logWatch.badLines} fatal or non-log line(s); the first: ${logWatch.bad[0] ?? '?'}`)
  if (sampler.scrapeFailures > sampler.samples.length * MAX_SCRAPE_FAILURE_SHARE) {
    failures.push(`${sampler.scrapeFailures} of ${sampler.samples.length} scrapes of /metrics failed (last: ${sampler.lastScrapeError ?? '?'})`)
  }
  if (afterTraffic !== null && !isBack(restBefore, afterTraffic.rest)) {
    failures.push(`open fds and active handles did not come back to within ${REST_MARGIN} of their values before the traffic ` +
      `(${restBefore.fds} fds, ${restBefore.handles} handles) within ${REST_WAIT_MS / 1000} s after it stopped: ` +
      `${afterTraffic.rest.fds} fds, ${afterTraffic.rest.handles} handles`)
  }
  if (churn.errors.length > 0) failures.push(`a config change or registration failed: ${churn.errors[0]}`)

  const m = describeMachine()
  const measuredS = sampler.samples.length === 0 ? 0 : sampler.samples[sampler.samples.length - 1]!.t
  say(`# Tollgate soak, ${new Date(startedMs).toISOString().slice(0, 16).replace('T', ' ')} UTC`)
  say()
  say(`- machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  say(`- gateway: ${options.workers > 1 ? `--workers ${options.workers} (RSS and fds of all its processes; /metrics summed over the workers)` : 'one process'}`)
  say(`- ${(measuredS / 60).toFixed(1)} min (warm-up ${options.warmupMs / 1000} s, not fitted), ${traffic.sentTotal} requests ` +
    `(~${Math.round(traffic.sentTotal / Math.max(1, measuredS))}/s); ${churn.counts.fileWrites} routes.yaml writes, ` +
    `${churn.counts.etcdChanges} etcd changes (a quarter of them an invalid item), ${churn.counts.registrations} registrations, ` +
    `${churn.counts.revocations} revoked and ${churn.counts.expiries} expired leases`)
  say(`- upstream hits: ${parts.servers.map((s) => `${s.name} ${s.hits}${s.failures > 0 ? ` (${s.failures} answered 500)` : ''}`).join(', ')}`)
  if (afterTraffic !== null) {
    say(`- at rest: ${restBefore.fds} fds and ${restBefore.handles} active handles before the traffic; ${afterTraffic.rest.fds} and ` +
      `${afterTraffic.rest.handles} ${(afterTraffic.afterMs / 1000).toFixed(1)} s after it and the changes stopped`)
  }
  say(`- gateway log lines by level: ${Object.entries(logWatch.levels).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`)
  say()
  say(scenarioTable(traffic.stats))
  say()
  say('Samples once a second after warm-up; start and end are the means of the first and last 10; the slope is a least-squares')
  say('fit ± its standard error; a figure fails when slope − 3 standard errors exceeds both its threshold per minute and,')
  say('times the minutes fitted, its rise allowance (bench/lib/soak-trend.ts).')
  say()
  say(figureTable(figures))
  say()
  if (traffic.failures.length > 0) {
    say('Unexpected responses (first ones):')
    for (const line of traffic.failures) say(`- ${line}`)
    say()
  }
  say(failures.length === 0 ? 'soak passed' : `soak FAILED:\n${failures.map((f) => `- ${f}`).join('\n')}`)

  if (options.jsonPath !== null) {
    mkdirSync(dirname(options.jsonPath), { recursive: true })
    writeFileSync(options.jsonPath, JSON.stringify({
      startedAt: new Date(startedMs).toISOString(), options, machine: m, passed: failures.length === 0, failures,
      figures, scenarios: traffic.stats, unexpected: traffic.failures, churn: churn.counts, gatewayLog: logWatch.levels,
      gatewayErrors: logWatch.errors, gatewayExitCode: exitCode, restBefore, restAfter: afterTraffic, samples: sampler.samples,
    }, null, 2))
  }
  return failures.length === 0 ? 0 : 1
}

async function main(): Promise<void> {
  let options: SoakOptions
  try {
    options = parseSoakArgs(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${message(error)}\n\n${soakUsage}`)
    process.exit(2)
  }
  if (options.isHelp) {
    say(soakUsage)
    return
  }
  const tmp = mkdtempSync(join(tmpdir(), 'tollgate-soak-'))
  const parts: Parts = { servers: [], etcd: null, client: null, gateway: null }
  const interrupt = (): void => {
    killAllChildren()
    process.exit(130)
  }
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
  let code = 1
  try {
    code = await run(options, tmp, parts)
  } catch (error) {
    say(`soak FAILED:\n- ${message(error)}`)
  } finally {
    if (parts.gateway !== null && !parts.gateway.hasExited()) await parts.gateway.stop(5_000)
    parts.client?.close()
    if (parts.etcd !== null) await parts.etcd.child.stop(5_000)
    await Promise.all(parts.servers.map((s) => s.close()))
    // Kept on failure: the gateway's log is the first thing to read (unless nothing was started).
    if (code === 0 || (parts.etcd === null && parts.gateway === null)) rmSync(tmp, { recursive: true, force: true })
    else log(`logs kept in ${tmp}`)
  }
  process.exit(code)
}

await main()
