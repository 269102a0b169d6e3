// A per-route step of the request pipeline (src/proxy/pipeline.ts runs them in order): the access list,
// key auth, a limiter, the plugins, the breaker's admission, the upstream's bulkhead. The table builder (src/table/) chooses a route's steps once
// per config version; a request only walks the array.
import { performance } from 'node:perf_hooks'
import type { IncomingMessage } from 'node:http'
import type { Refusal } from '../errors.js'

/** What a step tells the pipeline. */
export const Next = {
  /** Go on with the next step (then forward). */
  Continue: 0,
  /** The step answered the request (a refusal): stop here. */
  Done: 1,
  /** The step waits for something (a store's decision) and calls ctx.resume() or ctx.refuse() later. */
  Suspend: 2,
} as const
export type Next = (typeof Next)[keyof typeof Next]

/** Something admitted per request and given back when it ends (a bulkhead slot). */
export interface Admission {
  release(): void
}

/** A limiter as the RateLimit-* response headers name it (src/policy/ratelimit/). */
export interface QuotaSource {
  /** RateLimit-Limit and RateLimit-Policy, made once per limiter. */
  readonly limitHeader: string
  readonly policyHeader: string
}

/** The request as a step sees it; the exchange (src/proxy/exchange.ts) implements it. */
export interface StepContext {
  readonly req: IncomingMessage
  /** performance.now() read once when the request started: the one clock reading of a request. */
  readonly startMs: number
  /** The canonical path (src/http/canonical-path.ts), without the query. */
  readonly canonicalPath: string
  /** `?...` of the request target, '' when none. */
  readonly query: string
  /** The client address (X-Forwarded-For past trusted proxies), resolved on first use. */
  clientIp(): string
  /** Hold `admission` until the request ends. One per request. */
  hold(admission: Admission): void
  /** Answer with a gateway-made response; `headers`: extra [name, value, ...] pairs (Retry-After...). */
  refuse(refusal: Refusal, close: boolean, headers?: readonly string[]): void
  /** A suspended step is done: run the next steps (does nothing if the request has ended meanwhile). */
  resume(): void
  /** The request has ended (answered, or the client went away): a suspended step stops here. */
  readonly finished: boolean
  /**
   * A limiter's quota after this request; the response's RateLimit-* headers show the lowest remaining.
   * A refusing limiter reports remaining -1 so that it is the one shown (as 0).
   */
  reportQuota(source: QuotaSource, remaining: number, resetMs: number): void
  /** The authenticated consumer (src/policy/auth/), set by the route's auth step; null before it or without auth. */
  consumer: string | null
  /** Where a suspended step is: which of its store decisions is pending. 0 when the request starts. */
  pending: number
  /**
   * What the route's circuit breaker admitted the request as (src/policy/breaker/): 0 closed (or no
   * breaker), > 0 a half-open trial (the period's number), -1 refused as open (it got the fallback).
   */
  breakerAdmission: number
  /** Answer with a fixed response (a breaker's fallback): `headers` [name, value, ...]; x-request-id is added. */
  respond(status: number, headers: readonly string[], body: Buffer): void
  /** The breaker is open and the route has `fallback: { upstream }`: forward to that upstream instead. */
  useFallbackUpstream(): void
  /** The route's weighted split (src/upstream/traffic-split.ts) chose its upstream number `choice`. */
  useSplitUpstream(choice: number): void
  /**
   * The request's run through its route's plugins (src/policy/plugins/plugin-call.ts), set by the plugin
   * step; null on routes without plugins. Typed loosely here: http/ sits below policy/.
   */
  plugins: object | null
}

export interface RequestStep {
  /** Hot path: no closure, no Error; a refusal is a frozen value (src/errors.ts). */
  run(ctx: StepContext): Next
}
