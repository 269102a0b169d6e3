// Active health checks of one upstream (README "Health checks"): every target is probed with `GET <path>`
// over its own connection (probe-client.ts: never the traffic pool, so a probe neither queues behind
// requests nor takes a connection from them).
//
// States of a target, per URL (its identity across reloads):
//   pending   --probe passed-->                               healthy    (a new target: one good probe admits it)
//   pending   --probe failed-->                               unhealthy
//   healthy   --unhealthyThreshold failed probes in a row-->  unhealthy
//   unhealthy --healthyThreshold passed probes in a row-->    healthy
// A probe fails on a status outside expectStatus, a connect error, a reset, or no complete response within
// `timeout`. With `grpcService` (protocol: grpc upstreams) the probe is the gRPC health protocol instead:
// POST /grpc.health.v1.Health/Check over HTTP/2 for that service, passed when the call ends with grpc-status 0
// and the answer is SERVING (what Envoy's and Kubernetes' gRPC health checks ask). At most one probe per target is in flight: the next one is due `interval` (jittered by ±10%)
// after the previous one started, and never before the previous one settled (a timed-out probe settles
// when its connection is destroyed).
//
// Scheduling: one unref()ed timer per checker, set for the earliest due probe, so probes never keep the
// process alive. A removed target leaves the map at once and its client is destroyed: nothing is left to
// fire for it.
import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import type { Upstream } from '../../config/schema.js'
import { grpcStatusOfHeaders, grpcStatusOfTrailers, type UndiciTrailers } from '../grpc-status.js'
import type { TlsConnectOptions } from '../tls-connect.js'
import { createProbeClient, type ProbeClient } from './probe-client.js'

export type ActiveSettings = NonNullable<NonNullable<Upstream['healthCheck']>['active']>

export type ActiveState = 'pending' | 'healthy' | 'unhealthy'

/** One target's probe state: plain data, so it crosses the cluster IPC as it is. */
export interface ActiveReport {
  readonly upstream: string
  readonly url: string
  /** 'removed': no longer probed; whoever keeps its state forgets it. */
  readonly state: ActiveState | 'removed'
  /** Consecutive passed probes (0 after a failure). */
  readonly successes: number
  /** Consecutive failed probes (0 after a pass). */
  readonly failures: number
  /** Status of the last probe answered, null when none was. */
  readonly lastStatus: number | null
  /** Why the last probe failed, null when it passed. */
  readonly lastError: string | null
  /** Unix ms of the last probe result, null before the first. */
  readonly lastProbeAt: number | null
}

/**
 * Told after every probe result and when a target is added or removed. `previous`: the state before
 * (null for a target new to the checker).
 */
export type ReportListener = (report: ActiveReport, previous: ActiveState | null) => void

/** What a checker needs of a target. */
export interface ProbeTarget {
  readonly url: string
  readonly origin: string
}

const JITTER = 0.1
const PROBE_TIMEOUT = Object.assign(new Error('probe timed out'), { code: 'TOLLGATE_PROBE_TIMEOUT' })
const PROBE_HEADERS = ['user-agent', 'tollgate-health-check']
const GRPC_PROBE_PATH = '/grpc.health.v1.Health/Check'
const GRPC_PROBE_HEADERS = ['user-agent', 'tollgate-health-check', 'content-type', 'application/grpc', 'te', 'trailers']
/** HealthCheckResponse.ServingStatus (grpc/grpc doc/health-checking.md). */
const SERVING = 1
const SERVING_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN']

/**
 * One length-prefixed gRPC message holding HealthCheckRequest { string service = 1 }: made once per checker.
 * Protobuf by hand: one optional string field needs no library.
 */
export function grpcHealthRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8')
  const field = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name])
  const frame = Buffer.alloc(5 + field.length)
  frame.writeUInt32BE(field.length, 1)
  field.copy(frame, 5)
  return frame
}

function varint(n: number): Buffer {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Buffer.from(out)
}

/**
 * The ServingStatus in a HealthCheckResponse message (with its 5-byte prefix), or -1 when the bytes are not
 * one uncompressed message. Fields other than status (none today) are skipped by wire type.
 */
export function servingStatusOf(body: Buffer): number {
  if (body.length < 5 || body[0] !== 0) return -1
  const length = body.readUInt32BE(1)
  if (body.length !== 5 + length) return -1
  let status = 0 // proto3: an absent field is its zero value, UNKNOWN
  for (let i = 5; i < body.length;) {
    const key = body[i++]!
    const wire = key & 7
    let value = 0
    if (wire === 0) {
      for (let shift = 0; i < body.length; shift += 7) {
        const b = body[i++]!
        value += (b & 0x7f) * 2 ** shift
        if ((b & 0x80) === 0) break
      }
      if (key >>> 3 === 1) status = value
    } else if (wire === 2) {
      let len = 0
      for (let shift = 0; i < body.length; shift += 7) {
        const b = body[i++]!
        len += (b & 0x7f) * 2 ** shift
        if ((b & 0x80) === 0) break
      }
      i += len
    } else {
      return -1
    }
  }
  return status
}

/** expectStatus ("200-399", 204, ...) as a lookup table indexed by status. */
export function compileExpectStatus(expect: ReadonlyArray<number | string>): Uint8Array {
  const table = new Uint8Array(600)
  for (const item of expect) {
    const [lo, hi] = typeof item === 'number' ? [item, item] : item.split('-').map(Number) as [number, number?]
    table.fill(1, lo, (hi ?? lo) + 1)
  }
  return table
}

/** One probed target; it is also the undici handler of its probe (one probe at a time, no object per probe). */
class Subject implements Dispatcher.DispatchHandler {
  readonly url: string
  readonly origin: string
  readonly checker: ActiveChecker
  client: ProbeClient | null = null
  state: ActiveState = 'pending'
  successes = 0
  failures = 0
  lastStatus: number | null = null
  lastError: string | null = null
  lastProbeAt: number | null = null
  inFlight = false
  removed = false
  dueMs = 0
  startedMs = 0
  status = 0
  timedOut = false
  timer: NodeJS.Timeout | null = null
  /** gRPC probes: the response message bytes (a few) and the call's grpc-status (-1 until seen). */
  body: Buffer[] | null = null
  grpcStatus = -1

  constructor(checker: ActiveChecker, target: ProbeTarget) {
    this.checker = checker
    this.url = target.url
    this.origin = target.origin
  }

  report(upstream: string): ActiveReport {
    return {
      upstream, url: this.url, state: this.removed ? 'removed' : this.state, successes: this.successes, failures: this.failures,
      lastStatus: this.lastStatus, lastError: this.lastError, lastProbeAt: this.lastProbeAt,
    }
  }

  onConnect(): void {}
  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.status = statusCode
    if (this.body !== null) this.grpcStatus = grpcStatusOfHeaders(rawHeaders, this.grpcStatus)
    return true
  }
  onData(chunk: Buffer): boolean {
    if (this.body !== null && this.body.length < 16) this.body.push(chunk)
    return true
  }
  onComplete(trailers: UndiciTrailers): void {
    if (this.body !== null) this.grpcStatus = grpcStatusOfTrailers(trailers, this.grpcStatus)
    this.checker.settle(this, null)
  }
  onError(err: Error): void {
    this.checker.settle(this, err)
  }
}

function onProbeTimeout(subject: Subject): void {
  subject.timer = null
  subject.timedOut = true
  // Destroying the probe's own client ends whatever it hangs on (connect, headers, body); undici then
  // calls onError, which settles the probe. The next probe opens a new connection.
  const client = subject.client
  subject.client = null
  void client?.destroy(PROBE_TIMEOUT).catch(() => undefined)
}

function onTick(checker: ActiveChecker): void {
  checker.tick()
}

export class ActiveChecker {
  readonly upstream: string
  readonly settings: ActiveSettings
  readonly #expect: Uint8Array
  /** The gRPC health request (grpcService set), else null: GET path. */
  readonly #grpcRequest: Buffer | null
  readonly #listener: ReportListener
  readonly #random: () => number
  /** The upstream's TLS (tls-connect.ts): probes of https:// targets verify and present what traffic does. */
  readonly #tls: TlsConnectOptions
  readonly #subjects = new Map<string, Subject>()
  #timer: NodeJS.Timeout | null = null
  #timerDueMs = Infinity
  #closed = false

  constructor(upstream: string, settings: ActiveSettings, listener: ReportListener, random: () => number = Math.random, tls: TlsConnectOptions = {}) {
    this.upstream = upstream
    this.settings = settings
    this.#expect = compileExpectStatus(settings.expectStatus)
    this.#grpcRequest = settings.grpcService === undefined ? null : grpcHealthRequest(settings.grpcService)
    this.#listener = listener
    this.#random = random
    this.#tls = tls
  }

  /**
   * The targets to probe from now on. A URL already probed keeps its state; one new to this checker takes
   * the state `previous` (a checker with other settings, being replaced) had for it, else starts pending.
   * Either way it is probed at once. URLs not listed stop being probed.
   */
  setTargets(targets: readonly ProbeTarget[], previous: ActiveChecker | null = null): void {
    if (this.#closed) return
    const wanted = new Set<string>()
    const now = performance.now()
    for (const target of targets) {
      wanted.add(target.url)
      if (this.#subjects.has(target.url)) continue
      const subject = new Subject(this, target)
      const before = previous === null ? undefined : previous.#subjects.get(target.url)
      if (before !== undefined) {
        subject.state = before.state
        subject.successes = before.successes
        subject.failures = before.failures
        subject.lastStatus = before.lastStatus
        subject.lastError = before.lastError
        subject.lastProbeAt = before.lastProbeAt
      }
      subject.dueMs = now
      this.#subjects.set(target.url, subject)
      this.#listener(subject.report(this.upstream), before === undefined ? null : subject.state)
    }
    for (const [url, subject] of this.#subjects) {
      if (wanted.has(url)) continue
      void this.#drop(subject)
      this.#listener(subject.report(this.upstream), subject.state)
    }
    this.#schedule(now)
  }

  reports(): ActiveReport[] {
    return [...this.#subjects.values()].map((s) => s.report(this.upstream))
  }

  /** Probes in flight now (for tests: at most one per target). */
  get probesInFlight(): number {
    let n = 0
    for (const s of this.#subjects.values()) if (s.inFlight) n++
    return n
  }

  /** Stops every probe and timer and closes the probe connections; tells nothing (the owner is going away). */
  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const closing = [...this.#subjects.values()].map((subject) => this.#drop(subject))
    this.#subjects.clear()
    await Promise.all(closing)
  }

  /** The timer fired: start every due probe, then set the timer for the next one. */
  tick(): void {
    this.#timer = null
    this.#timerDueMs = Infinity
    if (this.#closed) return
    const now = performance.now()
    for (const subject of this.#subjects.values()) {
      if (!subject.inFlight && subject.dueMs <= now) this.#probe(subject, now)
    }
    this.#schedule(now)
  }

  /** A probe ended (undici's onComplete or onError). */
  settle(subject: Subject, err: Error | null): void {
    if (subject.timer !== null) clearTimeout(subject.timer)
    subject.timer = null
    subject.inFlight = false
    if (this.#closed || subject.removed) return
    if (subject.timedOut) err = PROBE_TIMEOUT
    const status = subject.status
    const grpcProblem = err === null && this.#grpcRequest !== null ? grpcProbeProblem(subject) : null
    const passed = err === null && (this.#grpcRequest === null ? this.#expect[status] === 1 : grpcProblem === null)
    const before = subject.state
    subject.lastProbeAt = Date.now()
    subject.lastStatus = err === null ? status : null
    subject.lastError = passed ? null : err !== null ? describeError(err, this.settings.timeout) : grpcProblem ?? `status ${status} not in expectStatus`
    if (passed) {
      subject.successes++
      subject.failures = 0
      if (subject.state === 'pending' || (subject.state === 'unhealthy' && subject.successes >= this.settings.healthyThreshold)) subject.state = 'healthy'
    } else {
      subject.failures++
      subject.successes = 0
      if (subject.state === 'pending' || (subject.state === 'healthy' && subject.failures >= this.settings.unhealthyThreshold)) subject.state = 'unhealthy'
      if (err !== null && subject.client !== null && err !== PROBE_TIMEOUT) {
        // A connection that failed is not reused for the next probe.
        void subject.client.destroy().catch(() => undefined)
        subject.client = null
      }
    }
    const now = performance.now()
    subject.dueMs = Math.max(now, subject.startedMs + this.#jitteredIntervalMs())
    this.#listener(subject.report(this.upstream), before)
    this.#schedule(now)
  }

  #probe(subject: Subject, now: number): void {
    subject.inFlight = true
    subject.startedMs = now
    subject.status = 0
    subject.timedOut = false
    const grpc = this.#grpcRequest
    const client = (subject.client ??= createProbeClient(subject.origin, this.settings.timeout, this.#tls, grpc !== null))
    subject.timer = setTimeout(onProbeTimeout, this.settings.timeout, subject)
    subject.timer.unref()
    if (grpc === null) {
      client.dispatch({ origin: subject.origin, path: this.settings.path, method: 'GET', headers: PROBE_HEADERS, headersTimeout: 0, bodyTimeout: 0 }, subject)
      return
    }
    subject.body = []
    subject.grpcStatus = -1
    client.dispatch({ origin: subject.origin, path: GRPC_PROBE_PATH, method: 'POST', headers: GRPC_PROBE_HEADERS, body: grpc, headersTimeout: 0, bodyTimeout: 0 }, subject)
  }

  #drop(subject: Subject): Promise<void> {
    subject.removed = true
    this.#subjects.delete(subject.url)
    if (subject.timer !== null) clearTimeout(subject.timer)
    subject.timer = null
    const client = subject.client
    subject.client = null
    return client === null ? Promise.resolve() : client.destroy().catch(() => undefined)
  }

  #jitteredIntervalMs(): number {
    return this.settings.interval * (1 - JITTER + 2 * JITTER * this.#random())
  }

  /** (Re)sets the one timer for the earliest due probe that is not in flight. */
  #schedule(now: number): void {
    let due = Infinity
    for (const subject of this.#subjects.values()) if (!subject.inFlight && subject.dueMs < due) due = subject.dueMs
    if (due === this.#timerDueMs) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerDueMs = due
    if (due === Infinity) return
    this.#timer = setTimeout(onTick, Math.max(0, due - now), this)
    this.#timer.unref()
  }
}

/** Why a gRPC health probe that got a response failed, or null when it passed. */
function grpcProbeProblem(subject: Subject): string | null {
  if (subject.status !== 200) return `status ${subject.status}: not a gRPC response`
  if (subject.grpcStatus !== 0) return subject.grpcStatus === -1 ? 'no grpc-status in the response' : `grpc-status ${subject.grpcStatus}`
  const serving = servingStatusOf(Buffer.concat(subject.body ?? []))
  if (serving === SERVING) return null
  return serving === -1 ? 'not a HealthCheckResponse message' : `health status ${SERVING_NAMES[serving] ?? serving}`
}

function describeError(err: Error, timeoutMs: number): string {
  if (err === PROBE_TIMEOUT) return `no complete response within ${timeoutMs} ms`
  const code = (err as { code?: string }).code
  return code === undefined ? err.message : `${code}: ${err.message}`
}
