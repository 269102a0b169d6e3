// What a cluster-scope limiter asks of its shared store (redis-store.ts: one Redis, or a Redis Cluster).
// The rate-limit step (ratelimit-step.ts) suspends the request, hands the store the limit, the key value,
// itself (the sink) and the request (ctx); the store answers through the sink, once per decide() call,
// with no closure per request. Decisions use the store's own clock, never the gateway's.
import type { StepContext } from '../../http/request-step.js'

export const Algorithm = { TokenBucket: 0, SlidingWindow: 1 } as const
export type Algorithm = (typeof Algorithm)[keyof typeof Algorithm]

/** One cluster-scope limiter, built once per config (its fields never change). */
export interface ClusterLimit {
  /**
   * Prefix of its store keys: route id + limiter name, stable across instances and config versions. The
   * full key is prefix + key value; see redis-store.ts for the hash tag.
   */
  readonly storeKeyPrefix: string
  readonly algorithm: Algorithm
  /** Token bucket: tokens added per ms; the bucket holds `burst`. */
  readonly ratePerMs: number
  readonly burst: number
  /** Sliding window: `limit` requests per `windowMs`. */
  readonly limit: number
  readonly windowMs: number
}

/** Told the answer of one decide() call: exactly one of the two methods, exactly once. */
export interface ClusterDecisionSink {
  /**
   * `remaining`: whole requests left after this one (0 when refused); `resetMs`: until the quota is fully
   * restored; `retryAfterMs`: until a request would be admitted (0 when allowed).
   */
  onClusterDecision(ctx: StepContext, allowed: boolean, remaining: number, resetMs: number, retryAfterMs: number): void
  /** The store failed or did not answer within redis.timeout: the limiter's onStoreError applies. */
  onClusterFailure(ctx: StepContext): void
}

export interface ClusterStoreStatus {
  readonly kind: 'redis' | 'redis-cluster'
  /** ready: decisions are answered; connecting/down: they fail fast (onStoreError applies). */
  readonly state: 'ready' | 'connecting' | 'down'
  readonly errors: number
  readonly lastError: string | null
  readonly lastErrorAt: string | null
}

export interface ClusterStore {
  /** Hot path: take one unit of `limit` for `keyValue` if the quota allows. Answers later, through `sink`. */
  decide(limit: ClusterLimit, keyValue: string, sink: ClusterDecisionSink, ctx: StepContext): void
  /** Gives back one unit taken by an allowed decide() (another limiter refused the request). Best effort. */
  refund(limit: ClusterLimit, keyValue: string): void
  status(): ClusterStoreStatus
  close(): Promise<void>
}
