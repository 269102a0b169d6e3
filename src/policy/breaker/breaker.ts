// A route's circuit breaker (README "Circuit breakers"): Hystrix's state machine with a rolling window of
// 10 buckets and `halfOpenRequests` trial calls. Time comes in as an argument (performance.now() ms);
// the window rotates lazily on the clock readings it is given, so a breaker owns no timer at all.
//
//   closed    --(calls in window >= minRequests and failed % >= errorRate)-->  open (until now + openFor)
//   open      --(a request or a read at or after openFor)-->                   half-open
//   half-open --(halfOpenRequests trials admitted; others refused as open)-->
//                 every trial succeeded -> closed (window cleared, as Hystrix resets its metrics)
//                 a trial failed        -> open (until now + openFor)
//   a trial that ends without a verdict (the client left, the gateway refused before forwarding)
//   gives its slot back to the half-open period it belongs to.
//
// Why our own rather than opossum (the project's default unless measured figures or the configured semantics say
// otherwise):
// - Semantics. opossum's half-open admits exactly one call (its PENDING_CLOSE flag); circuitBreaker.halfOpenRequests wants
//   `halfOpenRequests`. Its `fire(fn)` takes the action as a function, so the pipeline would need a closure
//   and a promise per request, against STYLE's "no closure per request"; our pipeline is a step array and
//   learns outcomes at the end-of-request record, not from a promise. Its buckets rotate on a setInterval
//   per breaker (or a shared rotateBucketController), and each bucket pushes every latency into an array
//   even with rollingPercentilesEnabled: false (nodeshift/opossum#648).
// - Figures. bench/micro/breaker-vs-opossum.mjs (its header has the command): node 20.20, opossum 9.0.0,
//   2M calls x 5 runs, median, on the shared 2-core machine (load average 10 at the time, so both sides
//   are slower than on a quiet one; the ratio is what counts). opossum with lean options: timeout false,
//   enableSnapshots false, rollingPercentilesEnabled false, volumeThreshold 20, allowWarmUp false.
//     closed path, admit + record a success:   ours 0.013 us   opossum fire() 1.29 us   (~100x)
//     open path, a refusal:                    ours 0.009 us   opossum fire() 9.6 us    (an Error per call)
//   A proxied request costs ~40 us in all (fast-metrics.ts), so opossum's closed path would add ~3% to
//   it and ~10 us to every refusal; ours is noise, and its window is 20 numbers.
// So: our own, ~150 lines, below.

export const BreakerState = { Closed: 0, HalfOpen: 1, Open: 2 } as const
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState]

export const STATE_NAMES: readonly string[] = Object.freeze(['closed', 'half-open', 'open'])

/** What admit() returns besides a trial number (> 0): a closed breaker's admission, or a refusal. */
export const Admit = { Closed: 0, Refused: -1 } as const

export interface BreakerSettings {
  readonly windowMs: number
  readonly minRequests: number
  /** Percent, 1-100. */
  readonly errorRate: number
  readonly openForMs: number
  readonly halfOpenRequests: number
}

/** Told of every state change (metrics). */
export interface BreakerListener {
  onTransition(to: BreakerState): void
}

/** /status: the breaker as of a clock reading. */
export interface BreakerSnapshot {
  readonly state: BreakerState
  /** Calls and failed calls in the rolling window. */
  readonly requests: number
  readonly failures: number
  /** Failed calls as a percent of calls in the window (0 when none). */
  readonly errorRate: number
  /** Open: ms until it turns half-open (0 when due); otherwise null. */
  readonly retryInMs: number | null
}

const BUCKETS = 10

export class Breaker {
  readonly settings: BreakerSettings
  readonly #listener: BreakerListener
  readonly #bucketMs: number
  // The window, drawn: calls[i]/failures[i] for bucket i; #current is the bucket of [#bucketStartMs,
  // #bucketStartMs + #bucketMs); the 9 before it, in ring order, are the older ones. Invariant: #calls and
  // #failures are the sums over all 10.
  readonly #calls = new Float64Array(BUCKETS)
  readonly #failures = new Float64Array(BUCKETS)
  #current = 0
  #bucketStartMs: number
  #callCount = 0
  #failureCount = 0
  #state: BreakerState = BreakerState.Closed
  #openUntilMs = 0
  /** The half-open period in progress (or the last one): a trial carries its number. */
  #trialPeriod = 0
  #trialsLeft = 0
  #trialsPassed = 0

  constructor(settings: BreakerSettings, nowMs: number, listener: BreakerListener) {
    this.settings = settings
    this.#listener = listener
    this.#bucketMs = settings.windowMs / BUCKETS
    this.#bucketStartMs = nowMs
  }

  get state(): BreakerState {
    return this.#state
  }

  /**
   * Hot path. Admission of a request starting at `nowMs`: Admit.Closed, Admit.Refused (open, or half-open
   * with its trials taken), or a trial number > 0 to hand back to record()/forgo().
   */
  admit(nowMs: number): number {
    const state = this.#state
    if (state === BreakerState.Closed) return Admit.Closed
    if (state === BreakerState.Open) {
      if (nowMs < this.#openUntilMs) return Admit.Refused
      this.#halfOpen()
    }
    if (this.#trialsLeft === 0) return Admit.Refused
    this.#trialsLeft--
    return this.#trialPeriod
  }

  /** Hot path. A forwarded request ended at `nowMs`; `trial` is what admit() returned for it (>= 0). */
  record(nowMs: number, failed: boolean, trial: number): void {
    this.#rotate(nowMs)
    const i = this.#current
    this.#calls[i]!++
    this.#callCount++
    if (failed) {
      this.#failures[i]!++
      this.#failureCount++
    }
    const state = this.#state
    if (state === BreakerState.Closed) {
      if (failed && this.#callCount >= this.settings.minRequests && this.#failureCount * 100 >= this.settings.errorRate * this.#callCount) {
        this.#open(nowMs)
      }
      return
    }
    // Open, or half-open: only this period's trials decide; calls admitted earlier only count.
    if (trial !== this.#trialPeriod || trial <= 0 || state !== BreakerState.HalfOpen) return
    if (failed) return this.#open(nowMs)
    if (++this.#trialsPassed === this.settings.halfOpenRequests) this.#close(nowMs)
  }

  /** A request admitted as `trial` ended without a verdict: its slot goes back to that half-open period. */
  forgo(trial: number): void {
    if (trial > 0 && trial === this.#trialPeriod && this.#state === BreakerState.HalfOpen) this.#trialsLeft++
  }

  /** Brings state and window up to `nowMs` (an open breaker past openFor turns half-open): for reads. */
  advance(nowMs: number): void {
    this.#rotate(nowMs)
    if (this.#state === BreakerState.Open && nowMs >= this.#openUntilMs) this.#halfOpen()
  }

  snapshot(nowMs: number): BreakerSnapshot {
    this.advance(nowMs)
    const calls = this.#callCount
    return {
      state: this.#state,
      requests: calls,
      failures: this.#failureCount,
      errorRate: calls === 0 ? 0 : Math.round((this.#failureCount * 1000) / calls) / 10,
      retryInMs: this.#state === BreakerState.Open ? Math.max(0, this.#openUntilMs - nowMs) : null,
    }
  }

  #rotate(nowMs: number): void {
    const elapsed = nowMs - this.#bucketStartMs
    if (elapsed < this.#bucketMs) return // also a reading older than the current bucket: counts in it
    const steps = Math.floor(elapsed / this.#bucketMs)
    this.#bucketStartMs += steps * this.#bucketMs
    if (steps >= BUCKETS) {
      this.#clear()
      return
    }
    for (let s = 0; s < steps; s++) {
      const i = (this.#current + 1) % BUCKETS
      this.#callCount -= this.#calls[i]!
      this.#failureCount -= this.#failures[i]!
      this.#calls[i] = 0
      this.#failures[i] = 0
      this.#current = i
    }
  }

  #clear(): void {
    this.#calls.fill(0)
    this.#failures.fill(0)
    this.#callCount = 0
    this.#failureCount = 0
  }

  #open(nowMs: number): void {
    this.#state = BreakerState.Open
    this.#openUntilMs = nowMs + this.settings.openForMs
    this.#trialsLeft = 0
    this.#listener.onTransition(BreakerState.Open)
  }

  #halfOpen(): void {
    this.#state = BreakerState.HalfOpen
    this.#trialPeriod++
    this.#trialsLeft = this.settings.halfOpenRequests
    this.#trialsPassed = 0
    this.#listener.onTransition(BreakerState.HalfOpen)
  }

  #close(nowMs: number): void {
    this.#state = BreakerState.Closed
    this.#clear()
    this.#bucketStartMs = nowMs
    this.#listener.onTransition(BreakerState.Closed)
  }
}
