// The error log (README "Admin endpoints and metrics", logs): a request that ended in a 5xx, or that the
// gateway refused with a 4xx of its own, is logged once with its route, target, failure kind and request id,
// so that a failing upstream is visible without an access log. 5xx go out at warn (seen at the default
// level), gateway-made 4xx at debug (a scanner's 404s are not news). A flood cannot flood the log: at most
// BURST lines at once and RATE_PER_S a second after that; the lines held back are counted in the next one.
import { performance } from 'node:perf_hooks'
import type { Logger } from '../telemetry/log.js'
import type { CompiledRoute } from '../table/compiled-route.js'
import { FailureKind, type Outcome } from '../upstream/outcome.js'
import type { OutcomeSink } from './record.js'

const RATE_PER_S = 10
const BURST = 50

const FAILURE_WORDS: Readonly<Record<FailureKind, string | null>> = {
  [FailureKind.None]: null,
  [FailureKind.ConnectFailure]: 'connect-failure',
  [FailureKind.Reset]: 'reset',
  [FailureKind.Timeout]: 'timeout',
  [FailureKind.ClientCaused]: 'client',
  [FailureKind.Other]: 'other',
}

export class ErrorLogSink implements OutcomeSink {
  readonly #log: Logger
  readonly #now: () => number
  #tokens = BURST
  #lastMs: number
  #suppressed = 0

  constructor(log: Logger, now: () => number = () => performance.now()) {
    this.#log = log
    this.#now = now
    this.#lastMs = now()
  }

  record(route: CompiledRoute | null, method: string, outcome: Outcome): void {
    const status = outcome.status
    if (status < 400 || outcome.causedByClient) return
    const isServerError = status >= 500
    if (!isServerError && outcome.refusal === null) return // the upstream's own 4xx: the application's business
    if (!(isServerError ? this.#log.isLevelEnabled('warn') : this.#log.isLevelEnabled('debug'))) return
    if (!this.#take()) {
      this.#suppressed++
      return
    }
    // The access log's fields (access-log.ts), so that a failure and its access line read alike.
    const line = {
      requestId: outcome.requestId,
      traceId: outcome.traceId,
      route: route?.id ?? null,
      method,
      httpVersion: outcome.httpVersion,
      path: outcome.canonicalPath === '' ? null : outcome.canonicalPath,
      status,
      code: outcome.refusal?.code ?? null,
      upstream: outcome.upstreamName,
      target: outcome.lastTarget,
      consumer: outcome.consumer,
      failure: FAILURE_WORDS[outcome.failure],
      attempts: outcome.attempts,
      durationMs: Math.round(outcome.durationMs * 1000) / 1000,
      suppressed: this.#suppressed,
    }
    this.#suppressed = 0
    if (isServerError) this.#log.warn(line, 'request failed')
    else this.#log.debug(line, 'request refused')
  }

  #take(): boolean {
    const now = this.#now()
    const tokens = this.#tokens + ((now - this.#lastMs) * RATE_PER_S) / 1000
    this.#tokens = tokens < BURST ? tokens : BURST
    this.#lastMs = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}
