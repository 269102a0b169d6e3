// RedisStore against a real redis-server (and a real 3-master Redis Cluster): the Lua limiters, the batching,
// and what happens when Redis stalls, dies, comes back or refuses the credentials.
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { StepContext } from '../../../src/http/request-step.js'
import { Algorithm, type ClusterDecisionSink, type ClusterLimit } from '../../../src/policy/ratelimit/cluster-store.js'
import { keySlot } from '../../../src/policy/ratelimit/redis-key-slot.js'
import { RedisStore, type RedisStoreSettings } from '../../../src/policy/ratelimit/redis-store.js'
import { startRedis, startRedisCluster, type RedisServer } from '../../helpers/redis.js'
import { freePort } from '../../helpers/upstream.js'

interface Answer {
  readonly ok: boolean
  readonly allowed: boolean
  readonly remaining: number
  readonly resetMs: number
  readonly retryAfterMs: number
}

/** The request the store must hand back: the store treats it as opaque, so a tagged object stands in. */
function ctxOf(i: number): StepContext {
  return { i } as unknown as StepContext
}
function indexOf(ctx: StepContext): number {
  return (ctx as unknown as { i: number }).i
}

/** A real sink: records every answer and checks that each decision is answered exactly once. */
class Recorder implements ClusterDecisionSink {
  readonly answers: Array<Answer | undefined>
  #left: number
  #done: () => void = () => undefined
  readonly done: Promise<Answer[]>
  constructor(readonly count: number, timeoutMs = 5000) {
    this.answers = new Array<Answer | undefined>(count)
    this.#left = count
    this.done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.#left} of ${count} decisions unanswered after ${timeoutMs} ms`)), timeoutMs)
      this.#done = () => {
        clearTimeout(timer)
        resolve(this.answers as Answer[])
      }
    })
  }
  onClusterDecision(ctx: StepContext, allowed: boolean, remaining: number, resetMs: number, retryAfterMs: number): void {
    this.#record(indexOf(ctx), { ok: true, allowed, remaining, resetMs, retryAfterMs })
  }
  onClusterFailure(ctx: StepContext): void {
    this.#record(indexOf(ctx), { ok: false, allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 })
  }
  #record(i: number, answer: Answer): void {
    if (this.answers[i] !== undefined) throw new Error(`decision ${i} answered twice`)
    this.answers[i] = answer
    if (--this.#left === 0) this.#done()
  }
}

/** `count` decisions in one tick; resolves with the answers in order. */
function decide(store: RedisStore, limit: ClusterLimit, keyValue: string, count = 1): Promise<Answer[]> {
  const sink = new Recorder(count)
  for (let i = 0; i < count; i++) store.decide(limit, keyValue, sink, ctxOf(i))
  return sink.done
}

function tokenBucket(ratePerMs: number, burst: number): ClusterLimit {
  return { storeKeyPrefix: `tollgate:rl:{t-${randomUUID()}|tb|`, algorithm: Algorithm.TokenBucket, ratePerMs, burst, limit: 0, windowMs: 0 }
}
function slidingWindow(limit: number, windowMs: number): ClusterLimit {
  return { storeKeyPrefix: `tollgate:rl:{t-${randomUUID()}|sw|`, algorithm: Algorithm.SlidingWindow, ratePerMs: 0, burst: 0, limit, windowMs }
}

interface OpenedStore {
  readonly store: RedisStore
  /** How many times onError was called. */
  errors(): number
}

const suiteStores: RedisStore[] = []
afterAll(async () => { await Promise.all(suiteStores.map((s) => s.close())) })

/** A store, ready unless `ready: false`; closed when the test ends (`suite`: after the test file). */
async function openStore(settings: Partial<RedisStoreSettings> & { ready?: boolean; suite?: boolean }): Promise<OpenedStore> {
  let errors = 0
  const store = new RedisStore({ url: settings.url ?? null, cluster: settings.cluster ?? null, timeoutMs: settings.timeoutMs ?? 1000 }, () => { errors++ })
  if (settings.suite === true) suiteStores.push(store)
  else onTestFinished(() => store.close())
  if (settings.ready !== false) await until(() => store.status().state === 'ready', 'the store is ready')
  return { store, errors: () => errors }
}

/** Polls a condition every 10 ms (the store has no events to await); fails after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await sleep(10)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Redis's clock, in ms. */
async function redisNowMs(redis: RedisServer): Promise<number> {
  const [s, us] = (await redis.cli(['TIME'])).split('\n').map(Number)
  return s! * 1000 + us! / 1000
}

const BUILT_STORE = resolve(import.meta.dirname, '../../../dist/src/policy/ratelimit/redis-store.js')

/** `count` decisions made by a RedisStore in a child process whose clock is shifted by faketime `offset`. */
function runSkewed(offset: string, url: string, limit: ClusterLimit, keyValue: string, count: number): Promise<{ nowMs: number; answers: Answer[] }> {
  const script = `
    const { RedisStore } = await import(process.argv[1])
    const [url, limit, keyValue, count] = [process.argv[2], JSON.parse(process.argv[3]), process.argv[4], Number(process.argv[5])]
    const store = new RedisStore({ url, cluster: null, timeoutMs: 2000 }, () => {})
    while (store.status().state !== 'ready') await new Promise((r) => setTimeout(r, 10))
    const answers = []
    await new Promise((done) => {
      const push = (a) => { answers.push(a); if (answers.length === count) done() }
      const sink = {
        onClusterDecision: (ctx, allowed, remaining, resetMs, retryAfterMs) => push({ ok: true, allowed, remaining, resetMs, retryAfterMs }),
        onClusterFailure: () => push({ ok: false, allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 }),
      }
      for (let i = 0; i < count; i++) store.decide(limit, keyValue, sink, {})
    })
    console.log(JSON.stringify({ nowMs: Date.now(), answers }))
    await store.close()
  `
  return new Promise((resolvePromise, reject) => {
    execFile('faketime', ['-f', offset, process.execPath, '--input-type=module', '-e', script, BUILT_STORE, url, JSON.stringify(limit), keyValue, String(count)],
      { timeout: 15_000 }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`faketime child: ${stderr || err.message}`))
        else resolvePromise(JSON.parse(stdout) as { nowMs: number; answers: Answer[] })
      })
  })
}

const allowedOf = (answers: readonly Answer[]): boolean[] => answers.map((a) => a.allowed)

describe('RedisStore on one redis-server', () => {
  let redis: RedisServer
  let shared: OpenedStore
  beforeAll(async () => {
    redis = await startRedis({ suite: true })
    shared = await openStore({ url: redis.url, suite: true })
  })
  afterAll(async () => { await redis?.close() })

  it('a token bucket admits exactly burst at once, then refuses with retryAfter of about 1/rate', async () => {
    const limit = tokenBucket(1 / 1000, 5) // one token a second
    const answers = await decide(shared.store, limit, 'client-a', 8)
    expect(answers.every((a) => a.ok)).toBe(true)
    expect(allowedOf(answers)).toEqual([true, true, true, true, true, false, false, false])
    expect(answers.map((a) => a.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0, 0])
    for (const a of answers.slice(0, 5)) expect(a.retryAfterMs).toBe(0)
    for (const a of answers.slice(5)) expect(a.retryAfterMs).toBeGreaterThan(900)
    for (const a of answers.slice(5)) expect(a.retryAfterMs).toBeLessThanOrEqual(1000)
    expect(answers[4]!.resetMs).toBeGreaterThan(4900)
    expect(answers[4]!.resetMs).toBeLessThanOrEqual(5000)
    // Another key has its own bucket.
    expect(allowedOf(await decide(shared.store, limit, 'client-b', 1))).toEqual([true])
  })

  it('a refused token-bucket decision takes no token', async () => {
    // burst 3: the key lives 900 ms after the last take, so it has not expired (a full bucket) by the check.
    const limit = tokenBucket(1 / 300, 3)
    expect(allowedOf(await decide(shared.store, limit, 'k', 3))).toEqual([true, true, true])
    const [first] = await decide(shared.store, limit, 'k')
    for (let round = 0; round < 3; round++) {
      expect(allowedOf(await decide(shared.store, limit, 'k', 10)).some((a) => a)).toBe(false)
    }
    // Had the 31 refusals taken tokens, the bucket would be 31 tokens in debt here.
    await sleep(first!.retryAfterMs + 20)
    expect(allowedOf(await decide(shared.store, limit, 'k', 2))).toEqual([true, false])
  })

  it('a token bucket refills at its rate but never beyond burst', async () => {
    const limit = tokenBucket(1 / 100, 2)
    expect(allowedOf(await decide(shared.store, limit, 'k', 2))).toEqual([true, true])
    await sleep(450) // 4.5 tokens' worth of time
    expect(allowedOf(await decide(shared.store, limit, 'k', 3))).toEqual([true, true, false])
  })

  it('a sliding window admits exactly limit in a window; retryAfter is when the count has slid out enough', async () => {
    const windowMs = 60_000
    const limit = slidingWindow(4, windowMs)
    for (let attempt = 0; ; attempt++) {
      const before = await redisNowMs(redis)
      const key = `fresh-${attempt}`
      const answers = await decide(shared.store, limit, key, 7)
      const after = await redisNowMs(redis)
      if (Math.floor(before / windowMs) !== Math.floor(after / windowMs) && attempt < 2) continue // crossed a boundary
      expect(allowedOf(answers)).toEqual([true, true, true, true, false, false, false])
      expect(answers.map((a) => a.remaining)).toEqual([3, 2, 1, 0, 0, 0, 0])
      // Next window: the 4 become the previous count, weighted (1 - f); a request fits once 4(1 - f) <= 3.
      const w = Math.floor(before / windowMs)
      const admitAt = (w + 1) * windowMs + 0.25 * windowMs
      for (const a of answers.slice(4)) {
        expect(a.retryAfterMs).toBeGreaterThanOrEqual(Math.floor(admitAt - after))
        expect(a.retryAfterMs).toBeLessThanOrEqual(Math.ceil(admitAt - before))
      }
      // resetMs: the 4 stop counting when the next window ends.
      expect(answers[3]!.resetMs).toBeLessThanOrEqual(Math.ceil((w + 2) * windowMs - before))
      expect(answers[3]!.resetMs).toBeGreaterThanOrEqual(Math.floor((w + 2) * windowMs - after))
      // Refused requests were not counted.
      expect(await redis.cli(['HGET', `${limit.storeKeyPrefix}${key}}`, 'cur'])).toBe('4')
      return
    }
  })

  it('a sliding window weights the previous window by its overlap and gives the exact retryAfter inside the window', async () => {
    const windowMs = 60_000
    const limit = slidingWindow(100, windowMs)
    for (let attempt = 0; ; attempt++) {
      const key = `weighted-${attempt}`
      const now = await redisNowMs(redis)
      const w = Math.floor(now / windowMs)
      // The previous window was full: 100 requests.
      await redis.cli(['HSET', `${limit.storeKeyPrefix}${key}}`, 'w', String(w - 1), 'cur', '100', 'prev', '0'])
      const before = await redisNowMs(redis)
      const answers = await decide(shared.store, limit, key, 101)
      const after = await redisNowMs(redis)
      if (Math.floor(after / windowMs) !== w && attempt < 2) continue // crossed a boundary
      // Admitted: the k with 100 (1 - f) + k <= 100, so k = floor(100 f).
      const f = (t: number): number => (t - w * windowMs) / windowMs
      const admitted = answers.filter((a) => a.allowed).length
      expect(admitted).toBeGreaterThanOrEqual(Math.floor(100 * f(before)))
      expect(admitted).toBeLessThanOrEqual(Math.floor(100 * f(after)))
      expect(allowedOf(answers)).toEqual(answers.map((_, i) => i < admitted))
      // The next one fits once 100 (1 - f) + k <= 99: f = (k + 1) / 100, in this window.
      const admitAt = w * windowMs + ((admitted + 1) / 100) * windowMs
      const refused = answers[admitted]!
      expect(refused.retryAfterMs).toBeGreaterThanOrEqual(Math.floor(admitAt - after))
      expect(refused.retryAfterMs).toBeLessThanOrEqual(Math.ceil(admitAt - before))
      return
    }
  })

  it('two stores (two connections) admit exactly the limit between them under concurrent load', async () => {
    const other = await openStore({ url: redis.url })
    const bucket = tokenBucket(1e-9, 50)
    const window = slidingWindow(50, 3_600_000)
    const buckets: Array<Promise<Answer[]>> = []
    const windows: Array<Promise<Answer[]>> = []
    for (let round = 0; round < 10; round++) {
      buckets.push(decide(shared.store, bucket, 'k', 20), decide(other.store, bucket, 'k', 20))
      windows.push(decide(shared.store, window, 'k', 20), decide(other.store, window, 'k', 20))
      await sleep(1) // the next round in a later turn, while these batches are in flight
    }
    const bucketAnswers = (await Promise.all(buckets)).flat()
    const windowAnswers = (await Promise.all(windows)).flat()
    expect([...bucketAnswers, ...windowAnswers].filter((a) => !a.ok)).toEqual([])
    expect(bucketAnswers.filter((a) => a.allowed).length).toBe(50)
    expect(windowAnswers.filter((a) => a.allowed).length).toBe(50)
  })

  it('refund gives back what an allowed decision took', async () => {
    const bucket = tokenBucket(1e-9, 1)
    const window = slidingWindow(1, 3_600_000)
    for (const limit of [bucket, window]) {
      expect(allowedOf(await decide(shared.store, limit, 'k', 2))).toEqual([true, false])
      // Sent now; the next decision goes out on the same connection later, so Redis sees the refund first.
      shared.store.refund(limit, 'k')
      expect(allowedOf(await decide(shared.store, limit, 'k', 2))).toEqual([true, false])
    }
  })

  it('answers after SCRIPT FLUSH (NOSCRIPT) by sending the script again', async () => {
    const limit = tokenBucket(1e-9, 3)
    expect(allowedOf(await decide(shared.store, limit, 'k'))).toEqual([true])
    const noscripts = async (): Promise<number> => Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(await redis.cli(['INFO', 'errorstats']))?.[1] ?? 0)
    const before = await noscripts()
    expect(await redis.cli(['SCRIPT', 'FLUSH'])).toBe('OK')
    const answers = await decide(shared.store, limit, 'k', 3)
    expect(answers.every((a) => a.ok)).toBe(true)
    expect(allowedOf(answers)).toEqual([true, true, false])
    expect(await noscripts()).toBe(before + 1) // the EVALSHA did meet NOSCRIPT, and the EVAL after it answered
  })

  it('decides by Redis\'s clock: an instance whose clock is 2 hours ahead (faketime) gets no extra tokens', async () => {
    const limit = tokenBucket(1 / 3_600_000, 3) // one token an hour
    expect(allowedOf(await decide(shared.store, limit, 'k', 3))).toEqual([true, true, true])
    const out = await runSkewed('+2h', redis.url, limit, 'k', 3)
    // faketime worked: the child's clock really is ahead...
    expect(out.nowMs - Date.now()).toBeGreaterThan(7_000_000)
    // ...yet its decisions see the bucket as this process left it: empty, a token due in about an hour.
    expect(out.answers.map((a) => a.ok)).toEqual([true, true, true])
    expect(allowedOf(out.answers)).toEqual([false, false, false])
    for (const a of out.answers) expect(a.retryAfterMs).toBeGreaterThan(3_500_000)
  })

  it('keys a decision as prefix + key value + "}", whatever the key value holds', async () => {
    const limit = tokenBucket(1e-9, 3)
    await decide(shared.store, limit, 'with}brace and ü')
    expect(await redis.cli(['EXISTS', `${limit.storeKeyPrefix}with}brace and ü}`])).toBe('1')
  })
})

describe('RedisStore when Redis fails', () => {
  it('fails every decision within redis.timeout while Redis is stopped (SIGSTOP), and answers again after SIGCONT', async () => {
    const redis = await startRedis()
    const { store, errors } = await openStore({ url: redis.url, timeoutMs: 100 })
    const limit = tokenBucket(1e-9, 1000)
    expect(allowedOf(await decide(store, limit, 'k'))).toEqual([true])
    redis.pause()
    const started = performance.now()
    const answers = await decide(store, limit, 'k', 10)
    const tookMs = performance.now() - started
    expect(answers.map((a) => a.ok)).toEqual(new Array(10).fill(false))
    expect(tookMs).toBeLessThan(100 + 100)
    expect(errors()).toBe(10)
    expect(store.status()).toMatchObject({ state: 'ready', errors: 10, lastError: 'no answer within 100 ms (redis.timeout)' })
    redis.resume()
    const again = await decide(store, limit, 'k', 2)
    expect(again.map((a) => a.ok)).toEqual([true, true])
  })

  it('resumes deciding after Redis is killed and restarted on the same port, with no new store', async () => {
    const redis = await startRedis()
    const { store, errors } = await openStore({ url: redis.url, timeoutMs: 200 })
    const limit = tokenBucket(1e-9, 1000)
    expect(allowedOf(await decide(store, limit, 'k'))).toEqual([true])
    await redis.kill()
    await until(() => store.status().state === 'down', 'the store sees Redis gone')
    const started = performance.now()
    const down = await decide(store, limit, 'k', 3)
    expect(down.map((a) => a.ok)).toEqual([false, false, false])
    expect(performance.now() - started).toBeLessThan(100) // fails fast: nothing is sent, nothing waits
    expect(errors()).toBe(3)
    // The new redis-server has no scripts: the first call on the new connection must load it.
    await redis.restart()
    await until(() => store.status().state === 'ready', 'the store reconnected')
    const answers = await decide(store, limit, 'k', 2)
    expect(answers.map((a) => a.ok)).toEqual([true, true])
    expect(allowedOf(answers)).toEqual([true, true])
    expect(await redis.cli(['INFO', 'commandstats'])).toMatch(/cmdstat_eval:calls=1,/)
  })

  it('fails decisions fast when Redis is not running at all, and closes anyway', async () => {
    const port = await freePort()
    const { store, errors } = await openStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 500, ready: false })
    const started = performance.now()
    const answers = await decide(store, tokenBucket(1, 1), 'k', 4)
    expect(performance.now() - started).toBeLessThan(100)
    expect(answers.map((a) => a.ok)).toEqual([false, false, false, false])
    expect(errors()).toBe(4)
    expect(['connecting', 'down']).toContain(store.status().state)
    await until(() => store.status().state === 'down', 'the connection error is seen')
    expect(store.status().lastError).toMatch(/ECONNREFUSED/)
    expect(store.status().lastErrorAt).toMatch(/^\d{4}-\d\d-\d\dT/)
    await store.close()
  })

  it('closes within its bound while Redis is stopped', async () => {
    const redis = await startRedis()
    const { store } = await openStore({ url: redis.url })
    redis.pause()
    const started = performance.now()
    await store.close()
    expect(performance.now() - started).toBeLessThan(1500)
    expect(store.status().state).toBe('down')
    redis.resume()
  })
})

describe('RedisStore credentials and database', () => {
  const password = 'p@ss:w/rd'
  let redis: RedisServer
  beforeAll(async () => {
    // An ACL user besides the default one, whose password differs: the URL's user name must reach Redis.
    redis = await startRedis({ suite: true, password: 'admin-pw', args: ['--requirepass', 'admin-pw', '--user', 'alice', 'on', `>${password}`, '~*', '&*', '+@all'] })
  })
  afterAll(async () => { await redis?.close() })

  it('decides with a url that has user:password and a database number', async () => {
    const { store } = await openStore({ url: `redis://alice:${encodeURIComponent(password)}@127.0.0.1:${redis.port}/3` })
    const limit = tokenBucket(1e-9, 2)
    expect(allowedOf(await decide(store, limit, 'k', 3))).toEqual([true, true, false])
    const key = `${limit.storeKeyPrefix}k}`
    expect(await redis.cli(['-n', '3', 'EXISTS', key])).toBe('1')
    expect(await redis.cli(['-n', '0', 'EXISTS', key])).toBe('0')
  })

  it('fails decisions, without crashing, when the password is wrong', async () => {
    const { store, errors } = await openStore({ url: `redis://alice:wrong@127.0.0.1:${redis.port}/3`, ready: false })
    await until(() => store.status().lastError !== null, 'the AUTH failure is seen')
    const answers = await decide(store, tokenBucket(1, 5), 'k', 2)
    expect(answers.map((a) => a.ok)).toEqual([false, false])
    expect(errors()).toBe(2)
    expect(store.status().state).not.toBe('ready')
    expect(store.status().lastError).toMatch(/WRONGPASS|invalid|NOAUTH/i)
  })
})

describe('RedisStore on a Redis Cluster (3 masters)', () => {
  it('computes the same slot as CLUSTER KEYSLOT', async () => {
    const cluster = await startRedisCluster()
    const keys = ['plain', 'tollgate:rl:{users|per-client|10.0.0.1}', 'a{}b', '{}{x}', 'x{y}z{w}', 'tollgate:rl:{r|l|ünïcødé ✓}', 'tollgate:rl:{r|l|a}b}']
    for (const key of keys) expect(keySlot(key), key).toBe(Number(await cluster.nodes[0]!.cli(['CLUSTER', 'KEYSLOT', key])))
  })

  it('two stores on the cluster admit exactly the limit for each of several keys on different masters', async () => {
    const cluster = await startRedisCluster()
    const a = await openStore({ cluster: cluster.urls })
    const b = await openStore({ cluster: [...cluster.urls].reverse() })
    const bucket = tokenBucket(1e-9, 20)
    const window = slidingWindow(20, 3_600_000)
    const keyValues = Array.from({ length: 8 }, (_, i) => `client-${i}`)
    const results = await Promise.all(keyValues.flatMap((k) => [bucket, window].flatMap((limit) => [
      decide(a.store, limit, k, 30), decide(b.store, limit, k, 30),
    ])))
    expect(results.flat().filter((r) => !r.ok)).toEqual([])
    for (let i = 0; i < results.length; i += 2) {
      expect([...results[i]!, ...results[i + 1]!].filter((r) => r.allowed).length).toBe(20)
    }
    // The keys really were spread: more than one master holds some.
    const sizes = await Promise.all(cluster.nodes.map(async (n) => Number(await n.cli(['DBSIZE']))))
    expect(sizes.filter((s) => s > 0).length).toBeGreaterThan(1)
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(16)
  })
})
