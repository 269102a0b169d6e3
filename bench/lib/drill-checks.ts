// The fault drill's judges (bench/drill.ts), pure functions over what the drill recorded, so a test can
// hand them a deliberately wrong expectation and watch them fail:
// - explainedBy / unexpectedErrors: every 5xx (and every request that got no response at all) must be
//   covered by an explanation the fault in progress gives: which gateway, route, status, error code and
//   time span. Whatever no explanation covers is an unexpected error.
// - limitBreaches: what the upstream of a cluster-limited route received, per fixed window of the limiter.
// - convergence: the time until every gateway serves etcd's revision, against its limit.

/** One request of the load, as the load generator saw it. Status 0: no response (a socket error). */
export interface DrillOutcome {
  readonly gateway: number
  readonly path: string
  readonly status: number
  /** x-tollgate-error of a response the gateway made itself, else null. */
  readonly code: string | null
  readonly startMs: number
  readonly endMs: number
  /** The socket error of a request that got no response, else null. */
  readonly error: string | null
}

/**
 * Why some errors are expected while a fault is in progress. It covers an outcome whose request overlapped
 * [fromMs, toMs] (wall clock), with one of `statuses` (0: no response) and, when given, one of `codes`, to
 * one of `paths` (null: any), through `gateway` (null: any).
 */
export interface Explanation {
  readonly why: string
  readonly fromMs: number
  readonly toMs: number
  readonly gateway: number | null
  readonly paths: readonly string[] | null
  readonly statuses: readonly number[]
  readonly codes: readonly string[] | null
}

/** An error is a 5xx, or no response at all. 429 and 404 are answers, not errors. */
export const isError = (o: DrillOutcome): boolean => o.status === 0 || o.status >= 500

export function explainedBy(o: DrillOutcome, e: Explanation): boolean {
  return o.startMs <= e.toMs && o.endMs >= e.fromMs &&
    (e.gateway === null || e.gateway === o.gateway) &&
    (e.paths === null || e.paths.includes(o.path)) &&
    e.statuses.includes(o.status) &&
    (e.codes === null || (o.code !== null && e.codes.includes(o.code)))
}

/** The errors among `outcomes` that no explanation covers. */
export function unexpectedErrors(outcomes: readonly DrillOutcome[], explanations: readonly Explanation[]): DrillOutcome[] {
  return outcomes.filter((o) => isError(o) && !explanations.some((e) => explainedBy(o, e)))
}

/** One request as the counting upstream received it: the load's send time (x-drill-sent) and the arrival. */
export interface Hit {
  readonly sentMs: number
  readonly arrivedMs: number
}

/** A span of time in which a window may admit up to `bound` (say, while the limiter's store is stalled). */
export interface Allowance {
  readonly why: string
  readonly fromMs: number
  readonly toMs: number
  readonly bound: number
}

export interface WindowCount {
  /** Start of the window, wall clock ms (windows are aligned to the epoch, as the Redis script's are). */
  readonly startMs: number
  readonly admitted: number
  readonly bound: number
}

export interface LimitReport {
  /** The fullest window and its bound. */
  readonly fullest: WindowCount | null
  /** The fullest window that an allowance covered (a bound over the limit), if any. */
  readonly fullestAllowed: WindowCount | null
  readonly breaches: readonly WindowCount[]
  /** Hits whose window is not certain (sent in one window, arrived in the next): not counted. */
  readonly uncertain: number
}

/**
 * Per fixed window of a sliding-window limiter (`limit` per `windowMs`): the decision to admit a request
 * fell between its send time and its arrival at the upstream, on the same clock Redis reads (TIME, one
 * machine). A request sent and received in window k was admitted in window k, and the script admits at most
 * `limit` in one window (its `cur` never passes the limit). Hits that straddle a boundary are not counted,
 * so the check can miss a breach at a boundary, never invent one.
 */
export function limitBreaches(hits: readonly Hit[], limit: number, windowMs: number, allowances: readonly Allowance[] = []): LimitReport {
  const counts = new Map<number, number>()
  let uncertain = 0
  for (const h of hits) {
    const k = Math.floor(h.sentMs / windowMs)
    if (Math.floor(h.arrivedMs / windowMs) !== k) {
      uncertain++
      continue
    }
    counts.set(k, (counts.get(k) ?? 0) + 1)
  }
  const breaches: WindowCount[] = []
  let fullest: WindowCount | null = null
  let fullestAllowed: WindowCount | null = null
  for (const [k, admitted] of [...counts].sort((a, b) => a[0] - b[0])) {
    const startMs = k * windowMs
    const bound = allowances.reduce((b, a) => (a.fromMs < startMs + windowMs && a.toMs >= startMs ? Math.max(b, a.bound) : b), limit)
    const window = { startMs, admitted, bound }
    if (fullest === null || admitted / bound > fullest.admitted / fullest.bound) fullest = window
    if (bound > limit && (fullestAllowed === null || admitted > fullestAllowed.admitted)) fullestAllowed = window
    if (admitted > bound) breaches.push(window)
  }
  return { fullest, fullestAllowed, breaches, uncertain }
}

/** Null when every gateway converged within `limitMs`, else why not. */
export function convergenceProblem(convergeMs: number | null, limitMs: number): string | null {
  if (convergeMs === null) return `the gateways did not all reach etcd's revision`
  return convergeMs <= limitMs ? null : `converged in ${Math.round(convergeMs)} ms, over the ${limitMs} ms allowed`
}
