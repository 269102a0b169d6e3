// One scenario from start to end: start its peers (and its redis-server), check each answers the scenario
// like the upstream, warm them up, run the interleaved repetitions with every other peer frozen, stop them.
// Per run: the load generator's figures, the peer's CPU time per request and its RSS under load.
import { mkdirSync } from 'node:fs'
// cpus(), not availableParallelism(): the harness pins itself to the load core (run.ts), which the latter would report.
import { cpus } from 'node:os'
import { join } from 'node:path'
import { CORE_PATH, type Scenario } from '../scenarios.js'
import type { BenchOptions } from './args.js'
import type { LoadGenerator } from './load.js'
import { CORE_PEER, PeerSkipped, type Peer, type RunningPeer } from './peers.js'
import { clockTicksPerSecond, freePort, probe, readGroupCpuTicks, readGroupRssKib, type Pinning, type ProbeResult } from './processes.js'
import { redisCommandCalls, redisInfo, redisMissing, startRedis, type RedisServer } from './redis.js'
import { otlpSinkStats, startOtlpSink, type OtlpSink, type OtlpSinkStats } from './otlp-sink.js'
import type { PeerResult, ScenarioReport, Skip } from './report.js'
import { spread } from './stats.js'
import type { Upstream } from './upstream.js'
import { benchCertificate } from './certs.js'

const RSS_SAMPLE_MS = 100

const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const say = (line = ''): void => { process.stdout.write(`${line}\n`) }

export interface Bench {
  readonly options: BenchOptions
  readonly pinning: Pinning
  readonly load: LoadGenerator
  readonly upstream: Upstream
  readonly tmpDir: string
  /** Peer tollgate-core, added after tollgate in scenarios with hasCoreBaseline. */
  readonly corePeer: Peer
}

/** What one peer is sent in a scenario, and what it must answer. */
export interface PeerRequest {
  readonly path: string
  readonly method: string
  readonly body: Buffer | null
  /** Scenario.headers ({} when none). */
  readonly headers: Readonly<Record<string, string>>
  /** Scenario.expect; null: a 2xx with the upstream's bytes. */
  readonly expect: NonNullable<Scenario['expect']> | null
  /** What the upstream itself answers to this request. */
  readonly upstreamBytes: number
  /** Sent over HTTP/2 (Scenario.protocol h2): the load generator is h2load. */
  readonly h2: boolean
}

interface Started {
  readonly peer: Peer
  readonly running: RunningPeer
  readonly result: PeerResult
  readonly request: PeerRequest
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/** The scenario's request, or for tollgate-core the core path's: GET CORE_PATH, a 2xx expected. */
function requestFor(peer: Peer, scenario: Scenario, body: Buffer | null, upstreamBytes: ReadonlyMap<string, number>): PeerRequest {
  if (peer.name === CORE_PEER) return { path: CORE_PATH, method: 'GET', body: null, headers: NO_HEADERS, expect: null, upstreamBytes: upstreamBytes.get(CORE_PATH)!, h2: false }
  return {
    path: scenario.path, method: scenario.method ?? 'GET', body, headers: scenario.headers ?? NO_HEADERS, expect: scenario.expect ?? null,
    upstreamBytes: upstreamBytes.get(scenario.path)!, h2: scenario.protocol === 'h2',
  }
}

const describeAnswer = (answer: ProbeResult): string =>
  `${answer.status}${answer.tollgateError === null ? '' : ` ${answer.tollgateError}`} (${answer.bytes} bytes)`

/** Null when `answer` is what the peer must answer to `request`, else what is wrong with it. */
export function wrongAnswer(request: PeerRequest, answer: ProbeResult): string | null {
  const what = `${request.method} ${request.path} answered ${describeAnswer(answer)}`
  const expect = request.expect
  if (expect === null) {
    if (answer.status < 200 || answer.status > 299) return what
  } else if (answer.status !== expect.status || answer.tollgateError !== expect.tollgateError) {
    return `${what}; the scenario expects ${expect.status} ${expect.tollgateError ?? 'from the upstream'}`
  }
  if ((expect === null || expect.tollgateError === null) && answer.bytes !== request.upstreamBytes) {
    return `${what}; the upstream serves ${request.upstreamBytes} bytes`
  }
  return null
}

/**
 * Responses of a run on the wrong side of 2xx/3xx, the load generator's only split: its non-2xx/3xx count when
 * a 2xx/3xx is expected, the rest of the responses when an error status is (Scenario.expect).
 */
export function unexpectedResponses(run: { readonly requests: number, readonly non2xx: number }, expect: PeerRequest['expect']): number {
  return expect === null || expect.status < 400 ? run.non2xx : Math.max(0, run.requests - run.non2xx)
}

/** One request with the peer's scenario request; the reason when it is not what the peer must answer. */
async function checkAnswer(running: RunningPeer, request: PeerRequest): Promise<string | null> {
  const answer = await probe(`${running.url}${request.path}`, request.method, request.body, request.headers).catch((error: unknown) => message(error))
  return typeof answer === 'string' ? `${request.method} ${request.path}: ${answer}` : wrongAnswer(request, answer)
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

function emptyResult(peer: string): PeerResult {
  return {
    peer, runs: [], failures: [], rps: null, p50Ms: null, p99Ms: null, cpuUsPerRequest: null,
    rssIdleKib: null, rssMaxLoadKib: null, tollgateRatio: null, exitCode: null,
  }
}

/**
 * The cores a scenario's peers are pinned to: the proxy core, or with Scenario.proxyCores that many from it
 * on ("1-2"), when the machine has them beside the load generator's core.
 */
function proxyCoresOf(bench: Bench, scenario: Scenario): number | string | null {
  const first = bench.pinning.proxyCore
  const wanted = scenario.proxyCores ?? 1
  if (first === null || wanted <= 1 || cpus().length < first + wanted) return first
  return `${first}-${first + wanted - 1}`
}

/** What a scenario that wants more proxy cores than it got measures instead (Scenario.proxyCores). */
export function proxyCoresNote(bench: Bench, scenario: Scenario): string | null {
  const wanted = scenario.proxyCores ?? 1
  if (wanted <= 1) return null
  const got = proxyCoresOf(bench, scenario)
  if (got === null) return `not pinned: the peers, the load generator and the upstream share the machine's ${cpus().length} cores`
  if (typeof got === 'string') return `peers pinned to cores ${got}; load generator, upstream and harness on core ${bench.pinning.loadCore}`
  return `this machine has ${cpus().length} cores: the peers share core ${got} (the load generator and upstream keep core ` +
    `${bench.pinning.loadCore}), so this measures what the processes cost on one core, not how they scale; give the bench ${wanted + 1} cores or more for that`
}

async function startPeer(bench: Bench, peer: Peer, scenario: Scenario, request: PeerRequest,
  redis: RedisServer | null, otlp: OtlpSink | null): Promise<Started | Skip> {
  const dir = join(bench.tmpDir, scenario.name, peer.name)
  mkdirSync(dir, { recursive: true })
  let running: RunningPeer
  try {
    running = await peer.start({
      port: await freePort(), upstream: bench.upstream, scenario, dir, core: proxyCoresOf(bench, scenario), redisUrl: redis?.url ?? null,
      otlpEndpoint: otlp?.endpoint ?? null, tls: scenario.protocol === undefined ? null : benchCertificate(bench.tmpDir),
    })
  } catch (error) {
    return { peer: peer.name, reason: error instanceof PeerSkipped ? error.message : `failed to start: ${message(error)}` }
  }
  // What the scenario needs done first (e.g. the failure that opens a breaker); what it answers is checked below.
  const primes = peer.name === CORE_PEER ? 0 : scenario.primeRequests ?? 0
  for (let i = 0; i < primes; i++) {
    await probe(`${running.url}${request.path}`, request.method, request.body, request.headers).catch(() => undefined)
  }
  // One request first: a peer that cannot serve the scenario would only measure its error path, and one that
  // answers other than the scenario expects (a breaker that did not open) would measure something else.
  const wrong = await checkAnswer(running, request)
  if (wrong !== null) {
    await running.stop()
    return { peer: peer.name, reason: wrong }
  }
  const result = emptyResult(peer.name)
  result.rssIdleKib = running.child === null ? null : readGroupRssKib(running.child.pid)
  return { peer, running, result, request }
}

async function measure(bench: Bench, started: Started, durationMs: number, isRecorded: boolean, rep = 0): Promise<void> {
  const { running, result, request } = started
  const pid = running.child?.pid ?? null
  const sampler = pid === null ? null : setInterval(() => {
    const rss = readGroupRssKib(pid)
    if (rss !== null && isRecorded) result.rssMaxLoadKib = Math.max(result.rssMaxLoadKib ?? 0, rss)
  }, RSS_SAMPLE_MS)
  // The peer's whole process group (workers included); the others are frozen, so this is its own work.
  const cpuBefore = pid === null ? null : readGroupCpuTicks(pid)
  try {
    const outcome = await bench.load.run({
      url: `${running.url}${request.path}`, method: request.method, body: request.body, headers: request.headers,
      connections: bench.options.connections, durationMs, core: bench.pinning.loadCore, h2: request.h2,
    })
    const cpuAfter = pid === null ? null : readGroupCpuTicks(pid)
    const cpuUsPerRequest = cpuBefore === null || cpuAfter === null || outcome.requests === 0
      ? null
      : ((cpuAfter - cpuBefore) * 1e6) / clockTicksPerSecond() / outcome.requests
    if (isRecorded) result.runs.push({ ...outcome, cpuUsPerRequest, unexpected: unexpectedResponses(outcome, request.expect), rep, pid })
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
    const cpu = r.runs.map((run) => run.cpuUsPerRequest).filter((us): us is number => us !== null)
    r.cpuUsPerRequest = cpu.length === 0 ? null : spread(cpu)
  }
  const tollgate = results.find((r) => r.peer === 'tollgate')?.rps ?? null
  for (const r of results) {
    if (tollgate !== null && r.rps !== null && r.rps.median > 0) r.tollgateRatio = tollgate.median / r.rps.median
  }
}

/** What a redis-server had done at one moment: calls per command, and its connected clients. */
interface RedisSnapshot {
  readonly calls: Map<string, number>
  readonly clients: number | null
}

async function redisSnapshot(redis: RedisServer): Promise<RedisSnapshot | null> {
  try {
    const calls = await redisCommandCalls(redis.port)
    // Less the connection of this very query.
    const clients = (await redisInfo(redis.port, 'clients')).get('connected_clients')
    return { calls, clients: clients === undefined ? null : clients - 1 }
  } catch {
    return null
  }
}

/** Script calls are what the store sends; the commands inside a script count apart in commandstats. */
const SCRIPT_COMMANDS = ['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']

/** What the scenario's redis-server did during the measured runs: proof that Tollgate asked it, and how often. */
function redisNote(redis: RedisServer, before: RedisSnapshot | null, after: RedisSnapshot | null, tollgate: PeerResult | undefined): string {
  const count = (names: readonly string[] | null): number => {
    let n = 0
    for (const [name, calls] of after?.calls ?? []) if (names === null || names.includes(name)) n += calls - (before?.calls.get(name) ?? 0)
    return n
  }
  const scripts = count(SCRIPT_COMMANDS)
  const requests = tollgate?.runs.reduce((sum, run) => sum + run.requests, 0) ?? 0
  const head = `redis-server ${redis.version} (${redis.url}, pinned like the upstream), during the measured runs: ` +
    `${scripts.toLocaleString('en-US')} script calls for ${requests.toLocaleString('en-US')} tollgate requests`
  if (after === null) return `${head}: its counters could not be read`
  if (scripts === 0 && requests > 0) return `${head}: Tollgate did not ask Redis, these figures are not of the cluster store`
  const perCall = scripts > 0 ? ` (${(requests / scripts).toFixed(1)} requests decided per call)` : ''
  return `${head}${perCall}, ${count(null).toLocaleString('en-US')} commands in all (the scripts' own included)` +
    `${after.clients === null ? '' : `; ${after.clients} client connection(s) at the end`}`
}

/** What the OTLP receiver got during the measured runs: proof that the spans left the gateway. */
function otlpNote(before: OtlpSinkStats | null, after: OtlpSinkStats | null): string {
  if (before === null || after === null) return 'OTLP receiver: its counts could not be read'
  const exports = after.exports - before.exports
  return `OTLP receiver (pinned like the upstream), during the measured runs: ${exports.toLocaleString('en-US')} export requests, ` +
    `${Math.round((after.bytes - before.bytes) / 1024).toLocaleString('en-US')} KiB of spans`
}

export async function runScenario(bench: Bench, scenario: Scenario, candidates: readonly Peer[]): Promise<ScenarioReport> {
  const report: ScenarioReport = {
    name: scenario.name, description: scenario.description, path: scenario.path, method: scenario.method ?? 'GET',
    skipped: null, skippedPeers: [], results: [], notes: [],
  }
  const wanted = candidates.filter((p) => scenario.peers === undefined || scenario.peers.includes(p.name))
  const tollgateAt = wanted.findIndex((p) => p.name === 'tollgate')
  if (scenario.hasCoreBaseline === true && tollgateAt >= 0) wanted.splice(tollgateAt + 1, 0, bench.corePeer)
  if (scenario.needsTollgate === true && !wanted.some((p) => p.name === 'tollgate')) {
    report.skipped = 'tollgate is not among the peers run'
    return report
  }
  if (wanted.length === 0) {
    report.skipped = 'none of its peers is among the peers run'
    return report
  }
  if (scenario.needsRedis === true) {
    report.skipped = redisMissing()
    if (report.skipped !== null) return report
  }
  let redis: RedisServer | null = null
  if (scenario.needsRedis === true) {
    try {
      redis = await startRedis(join(bench.tmpDir, scenario.name, 'redis'), bench.pinning.loadCore)
    } catch (error) {
      report.skipped = message(error)
      return report
    }
  }
  let otlp: OtlpSink | null = null
  if (scenario.needsOtlpReceiver === true) {
    try {
      otlp = await startOtlpSink(join(bench.tmpDir, scenario.name), bench.pinning.loadCore)
    } catch (error) {
      await redis?.child.stop()
      report.skipped = message(error)
      return report
    }
  }
  try {
    await runPeers(bench, scenario, wanted, report, redis, otlp)
  } finally {
    // By its pid, like every child (processes.ts): nothing else of the machine's is touched.
    await redis?.child.stop()
    await otlp?.child.stop()
  }
  return report
}

async function runPeers(bench: Bench, scenario: Scenario, wanted: readonly Peer[], report: ScenarioReport, redis: RedisServer | null,
  otlp: OtlpSink | null): Promise<void> {
  const body = scenario.body === undefined ? null : Buffer.from(scenario.body)
  const upstreamBytes = new Map<string, number>()
  upstreamBytes.set(scenario.path, (await probe(`${bench.upstream.url}${scenario.path}`, scenario.method ?? 'GET', body)).bytes)
  if (wanted.some((p) => p.name === CORE_PEER) && !upstreamBytes.has(CORE_PATH)) {
    upstreamBytes.set(CORE_PATH, (await probe(`${bench.upstream.url}${CORE_PATH}`)).bytes)
  }
  const tollgateSkip = (): boolean => {
    const skip = report.skippedPeers.find((s) => s.peer === 'tollgate')
    if (scenario.needsTollgate !== true || skip === undefined) return false
    report.skipped = `tollgate: ${skip.reason}`
    return true
  }
  const { reps } = bench.options
  // Scenario.freshPeers: each repetition has processes of its own (Scenario says why); else one set for all.
  const rounds = scenario.freshPeers === true ? reps : 1
  /** Each peer's result across the rounds: the first round's, added to by the later ones. */
  const results = new Map<string, PeerResult>()
  let redisBefore: RedisSnapshot | null = null
  let otlpBefore: OtlpSinkStats | null = null
  for (let round = 1; round <= rounds; round++) {
    const outcomes = await Promise.all(wanted.filter((p) => round === 1 || results.has(p.name))
      .map((peer) => startPeer(bench, peer, scenario, requestFor(peer, scenario, body, upstreamBytes), redis, otlp)))
    const started: Started[] = []
    for (const outcome of outcomes) {
      if ('running' in outcome) {
        const earlier = results.get(outcome.peer.name)
        started.push(earlier === undefined ? outcome : { ...outcome, result: earlier })
        if (earlier === undefined) results.set(outcome.peer.name, outcome.result)
      } else if (round === 1) {
        report.skippedPeers.push(outcome)
        say(`skipped ${outcome.peer} (${scenario.name}): ${outcome.reason}`)
      } else {
        results.get(outcome.peer)?.failures.push(`repetition ${round}: ${outcome.reason}`)
      }
    }
    try {
      if (round === 1 && tollgateSkip()) return
      const first = round === 1 ? 1 : round
      const last = rounds === 1 ? reps : round
      await runRepetitions(bench, scenario, started, first, last, async () => {
        if (round > 1) return
        // After the first warm-up: what the measured runs did (with fresh peers, the later warm-ups too).
        if (redis !== null) redisBefore = await redisSnapshot(redis)
        if (otlp !== null) otlpBefore = await otlpSinkStats(otlp)
      })
      // Still the answer the scenario measures (e.g. the breaker still open): else its figures are of something else.
      for (const s of started) {
        if (s.request.expect === null) continue
        const wrong = await checkAnswer(s.running, s.request)
        if (wrong === null) continue
        s.result.failures.push(`after the measured runs: ${wrong}`)
        report.notes.push(`${s.peer.name}: after the measured runs${rounds > 1 ? ` of repetition ${round}` : ''}, ${wrong}: its figures may not be of this scenario`)
      }
    } finally {
      for (const s of started) {
        const exitCode = await s.running.stop()
        // null: ended by the signal itself, which is how haproxy and the peer scripts may stop.
        const isClean = exitCode === 0 || (exitCode === null && s.peer.name !== 'tollgate')
        if (s.result.exitCode === null || s.result.exitCode === 0) s.result.exitCode = exitCode
        if (s.running.child !== null && !isClean) log(`${s.peer.name} (${scenario.name}) exited with ${exitCode} on SIGTERM`)
      }
    }
  }
  if (otlp !== null) report.notes.push(otlpNote(otlpBefore, await otlpSinkStats(otlp)))
  if (rounds > 1) report.notes.push(`each of the ${rounds} repetitions ran on peer processes of its own, started and warmed up for it (Scenario.freshPeers)`)
  const coresNote = proxyCoresNote(bench, scenario)
  if (coresNote !== null) report.notes.push(coresNote)
  const all = [...results.values()]
  if (redis !== null) {
    report.notes.push(redisNote(redis, redisBefore, await redisSnapshot(redis), all.find((r) => r.peer === 'tollgate')))
  }
  report.results.push(...all)
  summarize(report.results)
}

/**
 * Warm-up of each peer, then repetitions `first`..`last`, each peer measured alone with the others frozen. The
 * order of the peers flips every repetition (A B, then B A, ...), so that neither is always the one measured
 * right after the other: on this VM speed drifts by several percent within a minute, and the same config
 * measured twice, always in the same order, came out 4% apart in 6 repetitions in a row.
 */
async function runRepetitions(bench: Bench, scenario: Scenario, started: readonly Started[], first: number, last: number,
  warmedUp: () => Promise<void>): Promise<void> {
  const { durationMs, warmupMs } = bench.options
  // Only the peer under load runs: the others are frozen meanwhile (Child.setFrozen says why).
  const alone = async (s: Started, run: () => Promise<void>): Promise<void> => {
    for (const other of started) if (other !== s) other.running.child?.setFrozen(true)
    try {
      await run()
    } finally {
      for (const other of started) other.running.child?.setFrozen(false)
    }
  }
  const warmUp = async (s: Started): Promise<void> => {
    if (warmupMs <= 0) return
    log(`${scenario.name}: warm-up ${s.peer.name}`)
    await alone(s, () => measure(bench, s, warmupMs, false))
  }
  // Fresh peers (one repetition per set of processes): each peer is measured straight after its own warm-up.
  // Warmed up one after the other first, the peer warmed first sat frozen through the other's warm-up: in
  // scenario limits with the same config on both peers (A/A, 15 repetitions), that peer came out 4.12 us of CPU
  // per request dearer (pairs 5.25; 11 of 15 pairs dearer, four quiet ones in a row by 3.8 to 4.5 us).
  const isFresh = scenario.freshPeers === true
  if (!isFresh) for (const s of started) await warmUp(s)
  await warmedUp()
  for (let rep = first; rep <= last; rep++) {
    for (const s of rep % 2 === 1 ? started : [...started].reverse()) {
      if (isFresh) await warmUp(s)
      await alone(s, () => measure(bench, s, durationMs, true, rep))
      const lastRun = s.result.runs.at(-1)
      log(`${scenario.name} ${rep}/${bench.options.reps} ${s.peer.name}: ${lastRun === undefined ? 'failed' : `${Math.round(lastRun.rps)} req/s`}`)
    }
  }
}
