// One local rate-limit decision, per call, on the real classes (src/policy/ratelimit/): the key's entry
// looked up and brought to now (LocalLimiter.entryFor: the key store's lookup, LRU touch, refill or window
// rotation), then admits and take, as RateLimitStep.run does for each limiter of a route. Not included:
// reading the key from the request, the RateLimit-* headers and the decision counters (no-ops here).
// Run by micro-bench.ts in its own process, timed by batches.ts with the other operations.
//
// The clock is injected, as the gateway injects the request's one clock reading, and advances 1 µs per
// decision so that refill and rotation really run. Limits are far above what the calls take (as in the
// bench scenario policies): every decision admits.
import type { IncomingMessage } from 'node:http'
import { RequestKey } from '../../src/http/request-key.js'
import { Next, type QuotaSource, type StepContext } from '../../src/http/request-step.js'
import { KeyStore } from '../../src/policy/ratelimit/key-store.js'
import { LocalLimiter, type DecisionCounters, type LocalAlgorithm } from '../../src/policy/ratelimit/local-limiter.js'
import { RateLimitStep } from '../../src/policy/ratelimit/ratelimit-step.js'
import { SlidingWindow } from '../../src/policy/ratelimit/sliding-window.js'
import { TokenBucket } from '../../src/policy/ratelimit/token-bucket.js'
import { CounterCell } from '../../src/telemetry/fast-metrics.js'
import { operation, type Operation } from './batches.js'
import { CALL_KEYS } from './micro-report.js'

/** limits.maxLimiterKeys's default: a store full of live keys. */
export const LIVE_KEYS = 100_000
const STEP_MS = 0.001
const RATE = 100_000_000
const PERIOD_MS = 1000
/** Short, so that the window rotates every 100,000 decisions (a few times per run), not once a minute. */
const WINDOW_MS = 100

const counters = (): DecisionCounters => ({ allowed: new CounterCell({}), rejected: new CounterCell({}) })

/** The injected clock, shared by the operations: it only moves forward. */
const clock = { nowMs: performance.now() }

function limiterOf(name: string, algorithm: LocalAlgorithm, store: KeyStore): LocalLimiter {
  return new LocalLimiter(name, algorithm, new RequestKey('header:x-k', '\u0000'), store, counters())
}

/** One decision, as RateLimitStep.run makes it for one limiter: 1 when admitted (and taken). */
function decide(limiter: LocalLimiter, key: string): number {
  const nowMs = (clock.nowMs += STEP_MS)
  const at = limiter.entryFor(key, nowMs)
  const n = limiter.store.numbers
  if (!limiter.algorithm.admits(n, at, nowMs)) return 0
  limiter.algorithm.take(n, at)
  return 1
}

/** `count` distinct client addresses, 10.x.y.z, built once: the calls pick among them. */
function clientAddresses(count: number): string[] {
  const keys: string[] = []
  for (let i = 0; i < count; i++) keys.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
  return keys
}

/**
 * What RateLimitStep.run reads and calls of a request (the proxy's Exchange): the clock reading, the client
 * address (resolved once per request there, a fixed string here) and the lowest quota reported, kept as the
 * Exchange keeps it. A refusal would throw: every call must admit.
 */
class BenchContext {
  req = { headers: {}, url: '/' } as unknown as IncomingMessage
  startMs = 0
  canonicalPath = '/'
  pending = 0
  breakerAdmission = 0
  finished = false
  quotaSource: QuotaSource | null = null
  quotaRemaining = 0
  quotaResetMs = 0
  clientIp(): string {
    return '203.0.113.7'
  }

  reportQuota(source: QuotaSource, remaining: number, resetMs: number): void {
    if (this.quotaSource !== null && remaining >= this.quotaRemaining) return
    this.quotaSource = source
    this.quotaRemaining = remaining
    this.quotaResetMs = resetMs
  }

  refuse(): void {
    throw new Error('limiter bench: a request was refused; the limits must be far above the calls')
  }
}

/** The rate-limit step of scenario policies (bench/scenarios.ts): a token bucket by client IP, a sliding window by route. */
function policiesStep(store: KeyStore): RateLimitStep {
  return new RateLimitStep('r0', [
    new LocalLimiter('tb', new TokenBucket(RATE, PERIOD_MS, RATE), new RequestKey('client-ip', '\u0000'), store, counters()),
    new LocalLimiter('sw', new SlidingWindow(RATE, 60_000), new RequestKey('route', '\u0000'), store, counters()),
  ], [], null)
}

export interface LimiterBench {
  readonly operations: Operation[]
  /** Stops the key stores' sweep timers. */
  close(): void
}

export function limiterOperations(): LimiterBench {
  const store = (): KeyStore => new KeyStore(LIVE_KEYS, () => clock.nowMs)
  const hotStore = store()
  const liveStore = store()
  const stepStore = store()
  const step = policiesStep(stepStore)
  const ctx = new BenchContext()
  const stepContext = ctx as unknown as StepContext
  const bucket = limiterOf('tb', new TokenBucket(RATE, PERIOD_MS, RATE), hotStore)
  const window = limiterOf('sw', new SlidingWindow(RATE, WINDOW_MS), hotStore)
  const many = limiterOf('tb-live', new TokenBucket(RATE, PERIOD_MS, RATE), liveStore)
  const keys = clientAddresses(LIVE_KEYS)
  // Every key live before the first call, and the store exactly full: no call adds or evicts.
  for (const key of keys) decide(many, key)
  if (liveStore.size !== LIVE_KEYS) throw new Error(`limiter bench: ${liveStore.size} keys in the store, expected ${LIVE_KEYS}`)
  let seed = 12345
  return {
    operations: [
      operation(CALL_KEYS.tokenBucketHot, 'token-bucket decision, one hot key', () => decide(bucket, '10.0.0.1'), true),
      operation(CALL_KEYS.slidingWindowHot, 'sliding-window decision, one hot key', () => decide(window, '10.0.0.1'), true),
      operation(CALL_KEYS.tokenBucketLive, `token-bucket decision, ${LIVE_KEYS.toLocaleString('en-US')} live keys (random key per call)`, () => {
        // A pseudo-random key per call: the lookup misses the CPU caches, as with many clients. The key strings
        // are built once: reading one is itself a cache miss here (a request's key was just built, in cache).
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        return decide(many, keys[(seed >>> 8) % LIVE_KEYS]!) // the high bits: an LCG's low bits cycle fast
      }, true),
      operation(CALL_KEYS.policiesStep, 'RateLimitStep.run, the two local limiters of scenario policies, one client', () => {
        // A request's whole rate-limit step, RateLimit-* quota included (the headers are written later, by the proxy).
        ctx.startMs = clock.nowMs += STEP_MS
        ctx.quotaSource = null
        return step.run(stepContext) === Next.Continue ? 1 : 0
      }, true),
      operation(CALL_KEYS.tokenBucketLiveFresh, `token-bucket decision, ${LIVE_KEYS.toLocaleString('en-US')} live keys, key string built per call`, () => {
        // As a request's key: a new string, equal to the stored key but not the same object, so the lookup
        // hashes it and compares characters (its building, ~17 ns, included).
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        const i = (seed >>> 8) % LIVE_KEYS
        return decide(many, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)
      }, true),
    ],
    close() {
      hotStore.close()
      liveStore.close()
      stepStore.close()
    },
  }
}
