// RedisStore against a real redis-server: the Lua limiters (token bucket, sliding window), exact counts
// across two clients, refund, NOSCRIPT, and Redis's clock against a skewed client (faketime).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedis, type RedisServer } from '../../helpers/redis.js'
import { allowedOf, decide, decideInChild, openStore, redisNowMs, sleep, slidingWindow, tokenBucket, type Answer } from './redis-decisions.js'

describe('RedisStore on one redis-server', () => {
  let redis: RedisServer
  let shared: Awaited<ReturnType<typeof openStore>>
  beforeAll(async () => {
    redis = await startRedis({ suite: true })
    shared = await openStore({ url: redis.url, suite: true })
  })
  afterAll(async () => {
    await shared?.store.close()
    await redis?.close()
  })

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
      // 100 decisions a store a turn: a full batch (64) and the rest.
      buckets.push(decide(shared.store, bucket, 'k', 50), decide(other.store, bucket, 'k', 50))
      windows.push(decide(shared.store, window, 'k', 50), decide(other.store, window, 'k', 50))
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
    const out = await decideInChild(redis.url, limit, 'k', 3, { faketime: '+2h' })
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

