// The health of one upstream's targets as this process routes by it (README "Health checks"): the active
// probe state (from the local ProbeSet or the cluster primary, through a HealthFeed) and passive ejection
// (passive.ts, from this process's own traffic). One UpstreamHealth per upstream name, kept across
// reloads; state per target URL, kept while the URL stays (also when the Target object is replaced).
//
// A target is eligible (`Target.healthy`) when its active state is healthy or there are no active checks,
// and it is not ejected:
//   no active checks: up | pending: down until its first probe passes | healthy: up | unhealthy: down
//   ejected (passive): down until ejectedUntil, then re-admitted by one shared unref()ed timer.
import type { ActiveReport } from './active.js'
import type { HealthFeed } from './health-feed.js'
import type { Target } from '../target.js'

/** Where health changes are told (the table wires them to tollgate_upstream_target_up and _ejections_total). */
export interface HealthEvents {
  targetUp(hostPort: string, up: boolean): void
  ejected(hostPort: string, reason: 'active' | 'passive'): void
}

const PENDING = (upstream: string, url: string): ActiveReport => ({
  upstream, url, state: 'pending', successes: 0, failures: 0, lastStatus: null, lastError: null, lastProbeAt: null,
})

/** One target's health. Times are performance.now() milliseconds; 0 means never. */
export class TargetHealth {
  readonly url: string
  readonly hostPort: string
  /** The Target object routing by this state now (a reload may replace it with one of the same URL). */
  target: Target | null = null
  /** The last probe report; null when the upstream has no active checks. */
  active: ActiveReport | null = null
  /** Passive: consecutive failed attempts. */
  failures = 0
  /** Passive: ejected until then; 0 when not ejected. */
  ejectedUntilMs = 0
  timesEjected = 0
  lastEjectedMs = 0
  readmittedMs = 0

  constructor(url: string, hostPort: string) {
    this.url = url
    this.hostPort = hostPort
  }

  get activeUp(): boolean {
    return this.active === null || this.active.state === 'healthy'
  }

  get eligible(): boolean {
    return this.activeUp && this.ejectedUntilMs === 0
  }
}

function onReadmitTimer(health: UpstreamHealth): void {
  health.readmitDue(performance.now())
}

export class UpstreamHealth {
  readonly name: string
  readonly #events: HealthEvents
  readonly #states = new Map<string, TargetHealth>()
  #timer: NodeJS.Timeout | null = null
  #timerDueMs = Infinity

  constructor(name: string, events: HealthEvents) {
    this.name = name
    this.#events = events
  }

  /**
   * At table build: binds each target to its state (made for a URL new to this upstream) and sets its
   * `healthy`. With active checks on, a target without a report is pending: no traffic before its first
   * good probe. Nothing else changes until the table is committed.
   */
  prepare(targets: readonly Target[], activeChecks: boolean, feed: HealthFeed | null): void {
    for (const target of targets) {
      let state = this.#states.get(target.url)
      const isNew = state === undefined
      if (state === undefined) {
        state = new TargetHealth(target.url, target.hostPort)
        this.#states.set(target.url, state)
      }
      const wasUp = state.eligible
      if (!activeChecks) state.active = null
      else if (state.active === null) state.active = feed?.get(this.name, target.url) ?? PENDING(this.name, target.url)
      state.target = target
      target.health = state
      target.healthy = state.eligible
      // A new target's gauge is set by the table builder when it opens the target's connection pool.
      if (!isNew && state.eligible !== wasUp) this.#events.targetUp(state.hostPort, state.eligible)
    }
  }

  /** After the swap: forgets the states of URLs the upstream no longer has. */
  retain(targets: readonly Target[]): void {
    const live = new Set<string>()
    for (const t of targets) live.add(t.url)
    for (const url of this.#states.keys()) if (!live.has(url)) this.#states.delete(url)
  }

  /** A probe report (ActiveChecker via the feed). Ignored for unknown URLs or when active checks are off here. */
  applyActive(report: ActiveReport): void {
    if (report.state === 'removed') return
    const state = this.#states.get(report.url)
    if (state === undefined || state.active === null) return
    const wasUp = state.eligible
    state.active = report
    this.#refresh(state, wasUp)
  }

  /** Passive (passive.ts): ejects until `untilMs`. */
  eject(state: TargetHealth, nowMs: number, untilMs: number): void {
    const wasUp = state.eligible
    state.ejectedUntilMs = untilMs
    state.lastEjectedMs = nowMs
    state.timesEjected++
    state.failures = 0
    this.#events.ejected(state.hostPort, 'passive')
    this.#refresh(state, wasUp)
    this.#arm(nowMs)
  }

  /** Re-admits every target whose ejection ended by `nowMs`, then sets the timer for the next one. */
  readmitDue(nowMs: number): void {
    this.#timer = null
    this.#timerDueMs = Infinity
    for (const state of this.#states.values()) {
      if (state.ejectedUntilMs === 0 || state.ejectedUntilMs > nowMs) continue
      const wasUp = state.eligible
      state.ejectedUntilMs = 0
      state.readmittedMs = nowMs
      state.failures = 0
      this.#refresh(state, wasUp)
    }
    this.#arm(nowMs)
  }

  /** Targets ejected now, among `targets`. */
  ejectedAmong(targets: readonly Target[]): number {
    let n = 0
    for (let i = 0; i < targets.length; i++) {
      const h = targets[i]!.health
      if (h !== null && h.ejectedUntilMs !== 0 && !targets[i]!.closing) n++
    }
    return n
  }

  stateOf(url: string): TargetHealth | undefined {
    return this.#states.get(url)
  }

  /** The upstream is gone: stops the re-admission timer. */
  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerDueMs = Infinity
  }

  #refresh(state: TargetHealth, wasUp: boolean): void {
    const up = state.eligible
    if (state.target !== null) state.target.healthy = up
    if (up !== wasUp) this.#events.targetUp(state.hostPort, up)
  }

  #arm(nowMs: number): void {
    let due = Infinity
    for (const state of this.#states.values()) if (state.ejectedUntilMs !== 0 && state.ejectedUntilMs < due) due = state.ejectedUntilMs
    if (due === this.#timerDueMs) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerDueMs = due
    if (due === Infinity) return
    this.#timer = setTimeout(onReadmitTimer, Math.max(0, due - nowMs), this)
    this.#timer.unref()
  }
}

/** A performance.now() time as an ISO date. */
function isoOf(perfMs: number): string {
  return new Date(Date.now() - (performance.now() - perfMs)).toISOString()
}

/** One target's health for /status (README "Health checks"): its state, why, and the facts behind it. */
export function describeHealth(state: TargetHealth | null, passiveChecks: boolean): Record<string, unknown> {
  if (state === null) return { state: 'up', reason: 'no health checks', active: null, passive: null }
  const a = state.active
  const active = a === null ? null : {
    state: a.state, successes: a.successes, failures: a.failures, lastStatus: a.lastStatus, lastError: a.lastError,
    lastProbeAt: a.lastProbeAt === null ? null : new Date(a.lastProbeAt).toISOString(),
  }
  const ejected = state.ejectedUntilMs !== 0
  const passive = !passiveChecks && state.timesEjected === 0 ? null : {
    failures: state.failures, ejected, ejectedUntil: ejected ? isoOf(state.ejectedUntilMs) : null, timesEjected: state.timesEjected,
    lastEjectedAt: state.lastEjectedMs === 0 ? null : isoOf(state.lastEjectedMs),
  }
  let kind: string
  let reason: string
  if (ejected) {
    kind = 'ejected'
    reason = `passive: ejected (${ordinal(state.timesEjected)} time) after consecutive failed requests, until ${isoOf(state.ejectedUntilMs)}`
  } else if (a !== null && a.state === 'pending') {
    kind = 'pending'
    reason = a.lastProbeAt === null ? 'active: waiting for its first probe' : 'active: no probe passed yet'
  } else if (a !== null && a.state === 'unhealthy') {
    kind = 'unhealthy'
    reason = `active: ${a.failures} probe(s) failed in a row${a.lastError === null ? '' : `, last: ${a.lastError}`}` +
      (a.successes > 0 ? `; ${a.successes} passed since` : '')
  } else {
    kind = 'up'
    reason = a !== null ? `active: last probe passed${a.lastStatus === null ? '' : ` (status ${a.lastStatus})`}` +
      (a.failures > 0 ? `; ${a.failures} failed since` : '') : passiveChecks ? 'passive checks only; not ejected' : 'no health checks'
  }
  return { state: kind, reason, active, passive }
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : ['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'
  return `${n}${s}`
}
