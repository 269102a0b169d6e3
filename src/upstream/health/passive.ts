// Passive ejection (outlier detection, README "Health checks"): every attempt on a target tells how it
// went; `consecutiveFailures` failed attempts in a row eject it. Hot path: record() runs once per attempt.
//
// A failure is a 5xx response, a connect failure, a reset or a timeout of that attempt, also when the
// request is then retried on another target; failures the client caused never count and a 4xx is a
// success (SPEC §10). The n-th ejection of a target lasts min(ejectionTime × n, maxEjectionTime); a target
// that stayed in for maxEjectionTime since its last re-admission starts again from n = 1.
// maxEjectionPercent is checked after the ejection it would allow: with 3 targets and 50%, one ejection
// (33%) is allowed, a second (67%) is refused and that target keeps serving.
//
// State is per process (per cluster worker): each worker ejects from the traffic it sees.
import type { Upstream } from '../../config/schema.js'
import type { Target } from '../target.js'
import type { UpstreamHealth } from './upstream-health.js'

export type PassiveSettings = NonNullable<NonNullable<Upstream['healthCheck']>['passive']>

/** One config version's passive settings over one pool's targets; the state lives in UpstreamHealth. */
export class PassiveHealth {
  readonly consecutiveFailures: number
  readonly ejectionTimeMs: number
  readonly maxEjectionTimeMs: number
  readonly maxEjectionPercent: number
  readonly #targets: readonly Target[]
  readonly #health: UpstreamHealth
  /** Ejections maxEjectionPercent refused (shown in /status). */
  refused = 0

  constructor(settings: PassiveSettings, targets: readonly Target[], health: UpstreamHealth) {
    this.consecutiveFailures = settings.consecutiveFailures
    this.ejectionTimeMs = settings.ejectionTime
    this.maxEjectionTimeMs = Math.max(settings.maxEjectionTime, settings.ejectionTime)
    this.maxEjectionPercent = settings.maxEjectionPercent
    this.#targets = targets
    this.#health = health
  }

  /** Hot path. `failed`: the attempt failed in a way that counts (see the top of this file). */
  record(target: Target, failed: boolean): void {
    const state = target.health
    if (state === null) return
    if (!failed) {
      state.failures = 0
      return
    }
    // An ejected target still gets traffic in panic mode and finishes requests already sent: not counted.
    if (state.ejectedUntilMs !== 0 || ++state.failures < this.consecutiveFailures) return
    const total = this.#live()
    if ((this.#health.ejectedAmong(this.#targets) + 1) * 100 > this.maxEjectionPercent * total) {
      this.refused++
      return
    }
    const now = performance.now()
    if (state.timesEjected > 0 && now - Math.max(state.readmittedMs, state.lastEjectedMs) >= this.maxEjectionTimeMs) state.timesEjected = 0
    this.#health.eject(state, now, now + this.durationMs(state.timesEjected + 1))
  }

  /** How long the n-th ejection lasts. */
  durationMs(n: number): number {
    return Math.min(this.ejectionTimeMs * n, this.maxEjectionTimeMs)
  }

  #live(): number {
    let n = 0
    for (let i = 0; i < this.#targets.length; i++) if (!this.#targets[i]!.closing) n++
    return n
  }
}
