// Config circuitBreaker -> a route's CompiledBreaker: the Breaker (its state), its failOn, its metric
// children, the fallback and the BreakerStep that admits requests. The Breaker is one component with its
// own reuse key (reuse.ts): the route id and its circuitBreaker settings. A reload that leaves them
// unchanged keeps the object, so an open breaker stays open whatever else changed; a changed breaker
// starts closed. A breaker owns no timer (breaker.ts rotates its window on the clock readings it is given),
// so one that goes away needs no closing: retireBreaker() only removes its metric series.
import type { CircuitBreaker, Route } from '../config/schema.js'
import type { RequestStep } from '../http/request-step.js'
import { Breaker, BreakerState, STATE_NAMES, type BreakerListener } from '../policy/breaker/breaker.js'
import { BreakerStep, REFUSE, type Fallback } from '../policy/breaker/breaker-step.js'
import type { Metrics } from '../telemetry/metrics.js'
import { FailOn } from '../upstream/fail-on.js'
import type { CompiledUpstream } from './compiled-upstream.js'
import { reuse, type Keyed } from './reuse.js'

/** The state machine and what is built from the same settings: kept together across reloads. */
export interface BreakerPart {
  readonly breaker: Breaker
  readonly failOn: FailOn
  readonly metrics: BreakerMetrics
}

export class CompiledBreaker {
  constructor(
    readonly breaker: Breaker,
    readonly failOn: FailOn,
    readonly step: BreakerStep,
    /** fallback: { upstream }: where an open breaker sends requests; null otherwise. */
    readonly fallbackUpstream: CompiledUpstream | null,
    readonly part: Keyed<BreakerPart>,
  ) {}
}

/** The gauge and transition counters of one route's breaker, bound when it is built. */
export class BreakerMetrics implements BreakerListener {
  readonly #state
  readonly #to
  /** False once a reload replaced or removed the breaker: requests still ending on it write no series. */
  #isLive = true

  constructor(metrics: Metrics, routeId: string) {
    this.#state = metrics.breakerState.labels(routeId)
    this.#state.set(BreakerState.Closed)
    this.#to = STATE_NAMES.map((name) => metrics.breakerTransitions.labels(routeId, name))
    for (const child of this.#to) child.inc(0)
  }

  retire(): void {
    this.#isLive = false
  }

  onTransition(to: BreakerState): void {
    if (!this.#isLive) return
    this.#state.set(to)
    this.#to[to]!.inc()
  }
}

export function compileBreaker(
  route: Route,
  upstream: CompiledUpstream,
  upstreams: ReadonlyMap<string, CompiledUpstream>,
  old: CompiledBreaker | null,
  metrics: Metrics,
  nowMs: number,
): CompiledBreaker | null {
  const spec = route.circuitBreaker
  if (spec === undefined) return null
  const part = reuse(old?.part, { route: route.id, circuitBreaker: spec }, () => {
    const listener = new BreakerMetrics(metrics, route.id)
    return { breaker: new Breaker(settingsOf(spec), nowMs, listener), failOn: new FailOn(spec.failOn), metrics: listener }
  })
  const fallbackSpec = spec.fallback
  const fallbackUpstream = fallbackSpec !== undefined && 'upstream' in fallbackSpec ? upstreams.get(fallbackSpec.upstream) ?? null : null
  if (old !== null && old.part === part && old.fallbackUpstream === fallbackUpstream && old.step.next === upstream.bulkhead) return old
  let fallback: Fallback = REFUSE
  if (fallbackUpstream !== null) fallback = { kind: 'upstream', bulkhead: fallbackUpstream.bulkhead as RequestStep }
  else if (fallbackSpec !== undefined && 'status' in fallbackSpec) {
    const body = Buffer.from(fallbackSpec.body)
    const headers = Object.entries(fallbackSpec.headers)
      .filter(([name]) => name.toLowerCase() !== 'content-length')
      .flatMap(([name, value]) => [name, value])
    headers.push('content-length', String(body.length))
    fallback = Object.freeze({ kind: 'respond', status: fallbackSpec.status, headers: Object.freeze(headers), body })
  }
  const step = new BreakerStep(part.value.breaker, upstream.bulkhead, fallback)
  return new CompiledBreaker(part.value.breaker, part.value.failOn, step, fallbackUpstream, part)
}

/**
 * A breaker the new table no longer has: it stops writing metrics, and unless the route still has a
 * (new) breaker, its series go.
 */
export function retireBreaker(part: BreakerPart, routeId: string, metrics: Metrics, removeSeries: boolean): void {
  part.metrics.retire()
  if (!removeSeries) return
  metrics.breakerState.remove(routeId)
  for (const name of STATE_NAMES) metrics.breakerTransitions.remove(routeId, name)
}

function settingsOf(spec: CircuitBreaker): ConstructorParameters<typeof Breaker>[0] {
  return {
    windowMs: spec.window,
    minRequests: spec.minRequests,
    errorRate: spec.errorRate,
    openForMs: spec.openFor,
    halfOpenRequests: spec.halfOpenRequests,
  }
}
