// The cluster-scope limiters' store: one Redis (redis.url) or a Redis Cluster (redis.cluster), README "Rate
// limiting". Decisions are made by Lua inside Redis with Redis's clock (redis-scripts.ts).
//
// Batching: decide() only appends to a batch; the batches are sent once per event-loop turn (setImmediate),
// each as ONE script call over up to MAX_BATCH keys (numkeys = N), answered by one `.then` that walks the
// flat reply. A batch is atomic as a whole, so each of its decisions is. On Redis Cluster a batch holds keys
// of one slot only. Batches are pooled and their handlers made once, so a decision costs its key string and
// a few array pushes.
// Measured with bench/micro/redis-store-bench.ts (one local redis-server, 2-core machine): see BATCHING below.
//
// Failure: no offline queue and no retries per command, so nothing waits for a Redis that is away. A batch
// is sent only while the client is ready (else it fails at once) and gets one timer of redis.timeout; when
// it fires, or the command fails, every decision of the batch goes to onClusterFailure. The client
// reconnects on its own (capped backoff) and decisions resume without a new store. A decision that timed
// out may still be applied by Redis later (it was sent): the store errs towards counting it.
//
// Scripts: ioredis defineCommand sends EVAL the first time on each connection (so a restarted Redis, which
// has no scripts, or a new cluster node gets the script), then EVALSHA; a NOSCRIPT reply (SCRIPT FLUSH on
// a live connection) is answered by resending as EVAL, still inside the batch's one timer.
import { performance } from 'node:perf_hooks'
import type { StepContext } from '../../http/request-step.js'
import { Algorithm, type ClusterDecisionSink, type ClusterLimit, type ClusterStore, type ClusterStoreStatus } from './cluster-store.js'
import { openClient, type StoreClient } from './redis-client.js'
import { keySlot } from './redis-key-slot.js'
import { REPLY_FIELDS } from './redis-scripts.js'

export interface RedisStoreSettings {
  /** redis://[user:pass@]host:port[/db] or rediss:// (TLS); null when `cluster` is given. */
  readonly url: string | null
  /** Seed nodes of a Redis Cluster, as URLs; null when `url` is given. */
  readonly cluster: readonly string[] | null
  /** Bound on every decision (redis.timeout). */
  readonly timeoutMs: number
}

// BATCHING, measured by bench/micro/redis-store-bench.ts (closed loop, token bucket over 10k keys, one local
// redis-server sharing this 2-core machine, two runs): decisions/s and the gateway's CPU µs per decision.
//   concurrent   batched (this file)    one EVALSHA each      one EVALSHA each + enableAutoPipelining
//   1            12-18k/s, 29-46 µs     17-18k/s, 27-34 µs    12k/s, 56-59 µs
//   16           84k/s, 4.1 µs          38k/s, 13.7 µs        39k/s, 14.5 µs
//   64           119k/s, 2.3 µs         47k/s, 11.0 µs        49k/s, 10.8 µs
//   256          130-134k/s, 1.9 µs     41-52k/s, 10-12 µs    47-50k/s, 10-11 µs
// Redis's CPU per decision drops too (256 concurrent: 5.6 vs 9-10 µs). A lone decision waits one
// event-loop turn (setImmediate) before it is sent; setImmediate rather than nextTick so that decisions
// of all the sockets read in one turn share a call.
const MAX_BATCH = 64
/** Batches sent and not yet answered by Redis; past this (Redis stalled), new batches fail at once. */
const MAX_IN_FLIGHT = 1024
const POOL_SIZE = 64
/**
 * Batches have timed out, and none was answered, for this long: the connection is taken for dead and
 * replaced. A Redis host that vanished without a TCP reset would otherwise hold the socket for the
 * kernel's retransmission timeout (about 15 min on Linux), every decision failing meanwhile.
 */
const STALL_RECONNECT_MS = 2000
const CLOSE_TIMEOUT_MS = 1000

interface BatchHooks {
  answer(batch: Batch, reply: unknown): void
  fail(batch: Batch, err: unknown): void
  expire(batch: Batch): void
}

/** Decisions that travel in one script call. Reused: the handlers are made once per Batch, not per send. */
class Batch {
  readonly keys: string[] = []
  /** Per key: algorithm, then (ratePerMs, burst) or (limit, windowMs). */
  readonly argv: number[] = []
  readonly sinks: ClusterDecisionSink[] = []
  readonly ctxs: StepContext[] = []
  /** Answered (reply, failure or timeout): later news of this send is ignored. */
  isAnswered = false
  /** Waiting for the first connection (see #park). */
  isParked = false
  timer: NodeJS.Timeout | null = null
  readonly onReply: (reply: unknown) => void
  readonly onFailure: (err: unknown) => void
  readonly onTimeout: () => void
  constructor(hooks: BatchHooks) {
    this.onReply = (reply) => hooks.answer(this, reply)
    this.onFailure = (err) => hooks.fail(this, err)
    this.onTimeout = () => hooks.expire(this)
  }
}

export class RedisStore implements ClusterStore {
  readonly #client: StoreClient
  readonly #kind: 'redis' | 'redis-cluster'
  readonly #timeoutMs: number
  readonly #onError: () => void
  /** Standalone: the batch being filled. Cluster: one per slot, in #bySlot. */
  #open: Batch | null = null
  readonly #bySlot: Map<number, Batch> | null
  /** Full batches waiting for the flush. */
  readonly #sealed: Batch[] = []
  /** Batches waiting for the first connection, each under its own redis.timeout (see #park). */
  readonly #parked: Batch[] = []
  readonly #pool: Batch[] = []
  #isScheduled = false
  #inFlight = 0
  #isClosed = false
  /** An error or a lost connection since the last 'ready': status says down rather than connecting. */
  #isDown = false
  #errors = 0
  #lastError: string | null = null
  #lastErrorAt: string | null = null
  /** The client's last 'error' event: why a decision failed fast while not connected. */
  #connectionError: string | null = null
  /** performance.now() of the first timeout since the last reply, or null. */
  #stalledSinceMs: number | null = null
  readonly #hooks: BatchHooks
  readonly #flush: () => void
  readonly #onRefundDone: () => void
  readonly #onRefundFailed: (err: unknown) => void

  /** `onError`: called once per failed decision (tollgate_ratelimit_store_errors_total). */
  constructor(settings: RedisStoreSettings, onError: () => void) {
    this.#timeoutMs = settings.timeoutMs
    this.#onError = onError
    this.#hooks = {
      answer: (batch, reply) => this.#answer(batch, reply),
      fail: (batch, err) => this.#failed(batch, err),
      expire: (batch) => this.#expire(batch),
    }
    this.#flush = () => this.#flushAll()
    this.#onRefundDone = () => { this.#inFlight-- }
    this.#onRefundFailed = (err) => {
      // A refund is best effort: a failure is remembered for status() but is no failed decision.
      this.#inFlight--
      this.#remember(err)
    }
    this.#client = openClient(settings.url, settings.cluster)
    this.#kind = settings.cluster !== null ? 'redis-cluster' : 'redis'
    this.#bySlot = settings.cluster !== null ? new Map() : null
    this.#client.on('ready', () => {
      this.#isDown = false
      this.#sendParked()
    })
    this.#client.on('error', (err: unknown) => {
      this.#isDown = true
      this.#remember(err)
      this.#connectionError = this.#lastError
      this.#failParked(this.#lastError)
    })
    this.#client.on('node error', (err: unknown) => this.#remember(err))
    this.#client.on('close', () => {
      this.#isDown = true
      this.#failParked('connection closed')
    })
  }

  // Hot path: once per request per cluster limiter. Appends to a batch; the answer comes through `sink`.
  decide(limit: ClusterLimit, keyValue: string, sink: ClusterDecisionSink, ctx: StepContext): void {
    // One hash tag, '{' in the prefix to this '}': the key has one Redis Cluster slot.
    const key = limit.storeKeyPrefix + keyValue + '}'
    let batch: Batch
    let slot = 0
    if (this.#bySlot === null) {
      batch = this.#open ??= this.#takeBatch()
    } else {
      slot = keySlot(key)
      const found = this.#bySlot.get(slot)
      if (found === undefined) {
        batch = this.#takeBatch()
        this.#bySlot.set(slot, batch)
      } else {
        batch = found
      }
    }
    batch.keys.push(key)
    if (limit.algorithm === Algorithm.TokenBucket) batch.argv.push(0, limit.ratePerMs, limit.burst)
    else batch.argv.push(1, limit.limit, limit.windowMs)
    batch.sinks.push(sink)
    batch.ctxs.push(ctx)
    if (batch.keys.length >= MAX_BATCH) {
      this.#sealed.push(batch)
      if (this.#bySlot === null) this.#open = null
      else this.#bySlot.delete(slot)
    }
    if (!this.#isScheduled) {
      // Never answer inside decide(): the caller has not suspended the request yet.
      this.#isScheduled = true
      setImmediate(this.#flush)
    }
  }

  refund(limit: ClusterLimit, keyValue: string): void {
    if (this.#isClosed || this.#client.status !== 'ready' || this.#inFlight >= MAX_IN_FLIGHT) return
    this.#inFlight++
    const isBucket = limit.algorithm === Algorithm.TokenBucket
    this.#client.tollgateRefund(limit.storeKeyPrefix + keyValue + '}', isBucket ? 0 : 1,
      isBucket ? limit.ratePerMs : limit.limit, isBucket ? limit.burst : limit.windowMs)
      .then(this.#onRefundDone, this.#onRefundFailed)
  }

  status(): ClusterStoreStatus {
    const s = this.#client.status
    return {
      kind: this.#kind,
      state: this.#isClosed ? 'down' : s === 'ready' ? 'ready' : this.#isDown ? 'down' : 'connecting',
      errors: this.#errors,
      lastError: this.#lastError,
      lastErrorAt: this.#lastErrorAt,
    }
  }

  /** Fails what was not sent yet, QUITs (bounded), then drops the connection. */
  async close(): Promise<void> {
    if (this.#isClosed) return
    this.#isClosed = true
    this.#flushAll()
    this.#failParked('store closed')
    const client = this.#client
    if (client.status === 'ready') {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        client.quit().catch(() => undefined),
        new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_TIMEOUT_MS) }),
      ])
      clearTimeout(timer)
    }
    client.disconnect()
  }

  #takeBatch(): Batch {
    return this.#pool.pop() ?? new Batch(this.#hooks)
  }

  #flushAll(): void {
    this.#isScheduled = false
    for (const batch of this.#sealed) this.#send(batch)
    this.#sealed.length = 0
    if (this.#open !== null) {
      this.#send(this.#open)
      this.#open = null
    }
    if (this.#bySlot !== null) {
      for (const batch of this.#bySlot.values()) this.#send(batch)
      this.#bySlot.clear()
    }
  }

  #send(batch: Batch): void {
    batch.isAnswered = false
    if (!this.#isClosed && this.#client.status !== 'ready' && !this.#isDown && this.#inFlight < MAX_IN_FLIGHT) {
      this.#park(batch)
      return
    }
    const why = this.#isClosed ? 'store closed'
      : this.#client.status !== 'ready' ? `not connected (${this.#client.status}): ${this.#connectionError ?? 'no error yet'}`
        : this.#inFlight >= MAX_IN_FLIGHT ? `${MAX_IN_FLIGHT} batches unanswered` : null
    if (why !== null) {
      this.#failAll(batch, why)
      this.#recycle(batch)
      return
    }
    this.#inFlight++
    batch.timer = setTimeout(batch.onTimeout, this.#timeoutMs)
    this.#client.tollgateDecide(batch.keys.length, batch.keys, batch.argv).then(batch.onReply, batch.onFailure)
  }

  /**
   * The first connection is still being made (the gateway just started, or redis: just changed) and has
   * not failed: the batch waits for it, within its redis.timeout, instead of failing at once. Otherwise
   * every gateway start would answer its first requests by onStoreError. Once a connection was lost
   * (#isDown), batches fail at once until it is back.
   */
  #park(batch: Batch): void {
    this.#inFlight++
    batch.isParked = true
    batch.timer = setTimeout(batch.onTimeout, this.#timeoutMs)
    this.#parked.push(batch)
  }

  #sendParked(): void {
    for (const batch of this.#parked.splice(0)) {
      batch.isParked = false
      if (batch.isAnswered) { // timed out while waiting
        this.#inFlight--
        this.#recycle(batch)
        continue
      }
      this.#client.tollgateDecide(batch.keys.length, batch.keys, batch.argv).then(batch.onReply, batch.onFailure)
    }
  }

  #failParked(why: string | null): void {
    for (const batch of this.#parked.splice(0)) {
      batch.isParked = false
      this.#inFlight--
      if (!batch.isAnswered) {
        clearTimeout(batch.timer ?? undefined)
        this.#failAll(batch, why ?? 'not connected')
      }
      this.#recycle(batch)
    }
  }

  #answer(batch: Batch, reply: unknown): void {
    this.#inFlight--
    this.#stalledSinceMs = null
    if (batch.isAnswered) return this.#recycle(batch)
    clearTimeout(batch.timer ?? undefined)
    const n = batch.keys.length
    if (!Array.isArray(reply) || reply.length !== n * REPLY_FIELDS) {
      this.#failAll(batch, `unexpected script reply (${Array.isArray(reply) ? reply.length : typeof reply})`)
      return this.#recycle(batch)
    }
    batch.isAnswered = true
    const r = reply as readonly number[]
    for (let i = 0, j = 0; i < n; i++, j += REPLY_FIELDS) {
      try {
        batch.sinks[i]!.onClusterDecision(batch.ctxs[i]!, r[j] === 1, r[j + 1]!, r[j + 2]!, r[j + 3]!)
      } catch (err) {
        // One throwing sink must not cost the other requests of the batch their answer.
        process.emitWarning(err instanceof Error ? err : new Error(String(err)))
      }
    }
    this.#recycle(batch)
  }

  #failed(batch: Batch, err: unknown): void {
    this.#inFlight--
    if (!batch.isAnswered) {
      clearTimeout(batch.timer ?? undefined)
      this.#failAll(batch, err)
    }
    this.#recycle(batch)
  }

  #expire(batch: Batch): void {
    batch.timer = null
    if (batch.isAnswered) return
    // The command stays with ioredis until Redis answers or the connection drops; #answer/#failed recycle.
    if (batch.isParked) {
      this.#failAll(batch, `not connected within ${this.#timeoutMs} ms (redis.timeout): ${this.#client.status}`)
      return // stays parked until the connection is made or fails (#sendParked, #failParked)
    }
    this.#failAll(batch, `no answer within ${this.#timeoutMs} ms (redis.timeout)`)
    const now = performance.now()
    if (this.#stalledSinceMs === null) {
      this.#stalledSinceMs = now
    } else if (now - this.#stalledSinceMs >= STALL_RECONNECT_MS) {
      this.#remember(`no answer from Redis for ${Math.round(now - this.#stalledSinceMs)} ms; reconnecting`)
      this.#stalledSinceMs = null
      this.#client.disconnect(true)
    }
  }

  #failAll(batch: Batch, err: unknown): void {
    batch.isAnswered = true
    const n = batch.sinks.length
    this.#errors += n
    this.#remember(err)
    for (let i = 0; i < n; i++) {
      this.#onError()
      try {
        batch.sinks[i]!.onClusterFailure(batch.ctxs[i]!)
      } catch (thrown) {
        process.emitWarning(thrown instanceof Error ? thrown : new Error(String(thrown)))
      }
    }
    // Let go of the requests now; keys and argv stay until the command settles (a NOSCRIPT resend reads them).
    batch.sinks.length = 0
    batch.ctxs.length = 0
  }

  #recycle(batch: Batch): void {
    batch.keys.length = 0
    batch.argv.length = 0
    batch.sinks.length = 0
    batch.ctxs.length = 0
    batch.timer = null
    if (this.#pool.length < POOL_SIZE) this.#pool.push(batch)
  }

  #remember(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    this.#lastError = message.split('\n', 1)[0] ?? message
    this.#lastErrorAt = new Date().toISOString()
  }
}
