// A route's rate limits as one step of its pipeline (src/proxy/pipeline.ts), chosen when the table is built.
// Every limiter must admit, and a refused request is counted by none of them:
//   1. local limiters, two phases on the request's one clock reading: all are asked, then all take;
//   2. cluster limiters, one store decision each, in order: the request suspends and the store's answer
//      (onClusterDecision, no closure per request) asks the next one or resumes the request. A refusal
//      there gives back what the limiters before it took.
// A refusal is 429 RATE_LIMITED with Retry-After, a frozen value, not an Error. Every response of the route
// carries the RateLimit-* headers of the limiter with the lowest remaining quota (ctx.reportQuota).
import { RATE_LIMITED, RATE_LIMIT_UNAVAILABLE } from '../../errors.js'
import { limiterAddress } from '../../http/client-ip.js'
import type { RequestKey } from '../../http/request-key.js'
import { Next, type QuotaSource, type RequestStep, type StepContext } from '../../http/request-step.js'
import type { ClusterDecisionSink, ClusterLimit, ClusterStore } from './cluster-store.js'
import type { KeyStore } from './key-store.js'
import type { DecisionCounters, LocalLimiter } from './local-limiter.js'

export const OnStoreError = { Local: 0, Allow: 1, Deny: 2 } as const
export type OnStoreError = (typeof OnStoreError)[keyof typeof OnStoreError]

/** A cluster-scope limiter of a route: counted in the shared store, with a local stand-in for outages. */
export class ClusterLimiter implements QuotaSource {
  constructor(
    readonly name: string,
    readonly limit: ClusterLimit,
    readonly key: RequestKey,
    readonly onStoreError: OnStoreError,
    /** onStoreError local: counts in this process while the store fails. */
    readonly fallback: LocalLimiter | null,
    readonly counters: DecisionCounters,
    readonly limitHeader: string,
    readonly policyHeader: string,
  ) {}
}

const DENY_HEADERS = Object.freeze(['retry-after', '1'])

export class RateLimitStep implements RequestStep, ClusterDecisionSink {
  readonly #routeId: string
  readonly #locals: readonly LocalLimiter[]
  readonly #clusters: readonly ClusterLimiter[]
  /**
   * #clusters.length > 0, on this object: an empty array is one more object to read per request, and out of
   * the CPU's cache (perf record of bench scenario limits: 10 of run()'s 95 samples on reading its length).
   */
  readonly #hasClusters: boolean
  readonly store: ClusterStore | null
  readonly #needsClientIp: boolean
  /** Phase-1 records of the local limiters (KeyStore offsets): filled and used within one run() (synchronous). */
  readonly #entries: number[]
  /** The store of the local limiters (one per gateway), or null without local limiters. */
  readonly #keyStore: KeyStore | null

  constructor(routeId: string, locals: readonly LocalLimiter[], clusters: readonly ClusterLimiter[], store: ClusterStore | null) {
    if (clusters.length > 0 && store === null) throw new Error(`route ${routeId}: cluster limiters need a store (load.ts checks redis:)`)
    this.#routeId = routeId
    this.#locals = locals
    this.#clusters = clusters
    this.#hasClusters = clusters.length > 0
    this.store = store
    this.#needsClientIp = locals.some((l) => l.key.needsClientIp) || clusters.some((c) => c.key.needsClientIp)
    this.#entries = locals.map(() => -1)
    this.#keyStore = locals[0]?.store ?? null
    if (locals.some((l) => l.store !== this.#keyStore)) throw new Error(`route ${routeId}: local limiters in different key stores`)
  }

  run(ctx: StepContext): Next {
    const now = ctx.startMs
    const ip = this.#clientIp(ctx)
    const locals = this.#locals
    const entries = this.#entries
    const keyStore = this.#keyStore
    if (keyStore !== null) {
      const generation = keyStore.generation
      for (let i = 0; i < locals.length; i++) {
        const limiter = locals[i]!
        const at = limiter.entryFor(this.#keyOf(limiter.key, ctx, ip), now)
        const n = keyStore.numbers
        if (!limiter.algorithm.admits(n, at, now)) {
          limiter.counters.rejected.inc()
          this.#refuse(ctx, limiter.algorithm, limiter.algorithm.resetMs(n, at, now), limiter.algorithm.retryAfterMs(n, at, now))
          return Next.Done
        }
        entries[i] = at
      }
      // A new key of a later limiter moved the records (the table grew) or evicted one (a tiny
      // limits.maxLimiterKeys): an earlier offset may hold another key by now. Look them up again; a key
      // gone counts nothing, as its quota went with it.
      if (keyStore.generation !== generation) this.#lookUpAgain(ctx, ip)
      const n = keyStore.numbers
      for (let i = 0; i < locals.length; i++) {
        const algorithm = locals[i]!.algorithm
        const at = entries[i]!
        if (at < 0) continue
        algorithm.take(n, at)
        ctx.reportQuota(algorithm, algorithm.remaining(n, at, now), algorithm.resetMs(n, at, now))
      }
    }
    if (!this.#hasClusters) {
      for (let i = 0; i < locals.length; i++) locals[i]!.admitted++
      return Next.Continue
    }
    ctx.pending = 0
    this.#ask(ctx, ip)
    return Next.Suspend
  }

  // ---- the store's answers (ClusterDecisionSink) ----

  onClusterDecision(ctx: StepContext, allowed: boolean, remaining: number, resetMs: number, retryAfterMs: number): void {
    const limiter = this.#clusters[ctx.pending]!
    if (!allowed) {
      limiter.counters.rejected.inc()
      this.#giveBack(ctx, ctx.pending)
      this.#refuse(ctx, limiter, resetMs, retryAfterMs)
      return
    }
    ctx.reportQuota(limiter, remaining, resetMs)
    this.#next(ctx)
  }

  onClusterFailure(ctx: StepContext): void {
    const index = ctx.pending
    const limiter = this.#clusters[index]!
    if (limiter.onStoreError === OnStoreError.Allow) return this.#next(ctx)
    if (limiter.onStoreError === OnStoreError.Deny || limiter.fallback === null) {
      limiter.counters.rejected.inc()
      this.#giveBack(ctx, index)
      ctx.refuse(RATE_LIMIT_UNAVAILABLE, false, DENY_HEADERS)
      return
    }
    // onStoreError local: this process counts alone until the store is back.
    const fallback = limiter.fallback
    const algorithm = fallback.algorithm
    const now = ctx.startMs
    const at = fallback.entryFor(this.#keyOf(limiter.key, ctx, this.#clientIp(ctx)), now)
    const n = fallback.store.numbers
    if (!algorithm.admits(n, at, now)) {
      limiter.counters.rejected.inc()
      this.#giveBack(ctx, index)
      this.#refuse(ctx, algorithm, algorithm.resetMs(n, at, now), algorithm.retryAfterMs(n, at, now))
      return
    }
    algorithm.take(n, at)
    ctx.reportQuota(limiter, algorithm.remaining(n, at, now), algorithm.resetMs(n, at, now))
    this.#next(ctx)
  }

  // ---- helpers ----

  /** The next cluster limiter, or on with the request when all have admitted. */
  #next(ctx: StepContext): void {
    const next = ctx.pending + 1
    if (next < this.#clusters.length && !ctx.finished) {
      ctx.pending = next
      this.#ask(ctx, this.#clientIp(ctx))
      return
    }
    const locals = this.#locals
    for (let i = 0; i < locals.length; i++) locals[i]!.admitted++
    const clusters = this.#clusters
    for (let i = 0; i < clusters.length; i++) clusters[i]!.counters.allowed.inc()
    ctx.resume()
  }

  #ask(ctx: StepContext, ip: string): void {
    const limiter = this.#clusters[ctx.pending]!
    this.store!.decide(limiter.limit, this.#keyOf(limiter.key, ctx, ip), this, ctx)
  }

  /** A limiter at cluster position `refusedAt` refused: the local limiters and the cluster ones before it give back. */
  #giveBack(ctx: StepContext, refusedAt: number): void {
    const ip = this.#clientIp(ctx)
    for (const limiter of this.#locals) {
      const at = limiter.peek(this.#keyOf(limiter.key, ctx, ip))
      if (at >= 0) limiter.algorithm.refund(limiter.store.numbers, at)
    }
    for (let i = 0; i < refusedAt; i++) {
      const limiter = this.#clusters[i]!
      const key = this.#keyOf(limiter.key, ctx, ip)
      if (limiter.fallback !== null) {
        // It may have admitted through its local stand-in; a refund there is harmless otherwise.
        const at = limiter.fallback.peek(key)
        if (at >= 0) limiter.fallback.algorithm.refund(limiter.fallback.store.numbers, at)
      }
      this.store!.refund(limiter.limit, key)
    }
  }

  /** The records of the local limiters' keys as they stand now, -1 for one evicted. */
  #lookUpAgain(ctx: StepContext, ip: string): void {
    const locals = this.#locals
    for (let i = 0; i < locals.length; i++) this.#entries[i] = locals[i]!.peek(this.#keyOf(locals[i]!.key, ctx, ip))
  }

  #refuse(ctx: StepContext, source: QuotaSource, resetMs: number, retryAfterMs: number): void {
    ctx.reportQuota(source, -1, resetMs)
    const seconds = Math.ceil(retryAfterMs / 1000)
    ctx.refuse(RATE_LIMITED, false, ['retry-after', seconds >= 1 ? String(seconds) : '1'])
  }

  #clientIp(ctx: StepContext): string {
    return this.#needsClientIp ? limiterAddress(ctx.clientIp()) : ''
  }

  #keyOf(key: RequestKey, ctx: StepContext, ip: string): string {
    // Never null: limiter keys stand in for a missing part (request-key.ts).
    return key.valueOf(ctx.req, ctx.canonicalPath, ip, this.#routeId, ctx.consumer)!
  }
}
