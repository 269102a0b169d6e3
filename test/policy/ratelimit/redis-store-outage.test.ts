// RedisStore when Redis is stopped, killed, absent, or refuses the credentials; and what a URL carries.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { makeRedisCertificates, startRedis, type RedisServer } from '../../helpers/redis.js'
import { freePort } from '../../helpers/upstream.js'
import { allowedOf, decide, decideInChild, openStore, sleep, tokenBucket, until } from './redis-decisions.js'

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

  it('replaces a connection that has not answered for 2 s of timeouts, and decides on the new one', async () => {
    const redis = await startRedis()
    const { store } = await openStore({ url: redis.url, timeoutMs: 100 })
    const limit = tokenBucket(1e-9, 1000)
    expect(allowedOf(await decide(store, limit, 'k'))).toEqual([true])
    const connections = async (): Promise<string[]> => (await redis.cli(['CLIENT', 'LIST']))
      .split('\n').filter((line) => line.includes(' name=tollgate-ratelimit ')).map((line) => /^id=(\d+)/.exec(line)![1]!)
    const [first] = await connections()
    redis.pause() // the socket stays open: only the store's own timing can tell
    const deadline = Date.now() + 6000
    while (!/reconnecting/.test(store.status().lastError ?? '')) {
      expect(Date.now()).toBeLessThan(deadline)
      expect((await decide(store, limit, 'k')).map((a) => a.ok)).toEqual([false])
      await sleep(200)
    }
    // The old socket is ended, then destroyed when Redis does not close its side (disconnectTimeout).
    await until(() => store.status().state !== 'ready', 'the old connection is gone')
    redis.resume()
    await until(() => store.status().state === 'ready', 'the store reconnected')
    expect(allowedOf(await decide(store, limit, 'k'))).toEqual([true])
    const now = await connections()
    expect(now).toHaveLength(1)
    expect(now[0]).not.toBe(first)
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

  it('lets decisions made before the first connection is up wait for it (within redis.timeout) rather than fail', async () => {
    const redis = await startRedis()
    const { store, errors } = await openStore({ url: redis.url, timeoutMs: 2000, ready: false })
    expect(store.status().state).toBe('connecting')
    const answers = await decide(store, tokenBucket(1 / 1000, 2), 'early', 3)
    expect(answers.map((a) => a.ok)).toEqual([true, true, true])
    expect(allowedOf(answers)).toEqual([true, true, false])
    expect(errors()).toBe(0)
    await store.close()
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

describe('RedisStore URLs: credentials, database, TLS', () => {
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

  it('decides over TLS with a rediss:// url', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-tls-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    const tls = makeRedisCertificates(dir)
    const secure = await startRedis({ tls })
    expect(secure.url).toMatch(/^rediss:\/\//)
    // A child process, so that it can trust the test CA the standard way (NODE_EXTRA_CA_CERTS is read at start).
    const limit = tokenBucket(1e-9, 2)
    const out = await decideInChild(secure.url, limit, 'k', 3, { env: { NODE_EXTRA_CA_CERTS: tls.ca } })
    expect(out.answers.map((a) => a.ok)).toEqual([true, true, true])
    expect(allowedOf(out.answers)).toEqual([true, true, false])
    expect(await secure.cli(['EXISTS', `${limit.storeKeyPrefix}k}`])).toBe('1')
  })
})
