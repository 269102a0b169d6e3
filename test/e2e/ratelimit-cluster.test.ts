// Cluster-scope limits through real gateway processes and a real redis-server (README "Rate limiting"):
// exact across instances, blind to the gateways' clocks, bounded and per onStoreError when Redis stalls or
// dies, and back on their own when it returns; also on a 3-master Redis Cluster.
import { existsSync, readdirSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startRedis, startRedisCluster } from '../helpers/redis.js'
import { startUpstream } from '../helpers/upstream.js'

/** Sends `n` requests to `url` at once; the status codes. */
async function burst(url: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, () => httpRequest(url, { headers }).then((r) => r.status)))
}

const count = (codes: readonly number[], code: number): number => codes.filter((c) => c === code).length

/**
 * Until the gateway's Redis store is connected (/status limiterStore.state 'ready'), bounded: before that a
 * decision falls back to onStoreError, local by default, and a loaded machine can take a while to connect
 * (a Redis Cluster client first reads the slots).
 */
async function storeReady(gw: GatewayProcess): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const state = ((await httpRequest(`${gw.adminUrl}/status`)).json() as { limiterStore: { state: string } }).limiterStore.state
    if (state === 'ready') return
    if (Date.now() > deadline) throw new Error(`the Redis store of ${gw.url} is ${state}, not ready, after 15 s`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** libfaketime, from Debian's faketime package (.ci/run installs it). */
function libfaketime(): string {
  for (const dir of ['/usr/lib/x86_64-linux-gnu/faketime', '/usr/lib/aarch64-linux-gnu/faketime', '/usr/lib/faketime']) {
    if (existsSync(dir)) {
      const lib = readdirSync(dir).find((f) => f === 'libfaketime.so.1')
      if (lib !== undefined) return `${dir}/${lib}`
    }
  }
  throw new Error('libfaketime.so.1 not found: apt-get install faketime')
}

async function metric(gw: GatewayProcess, name: string): Promise<number> {
  const text = await httpRequest(`${gw.adminUrl}/metrics`).then((r) => r.body)
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? Number.NaN : Number(m[1])
}

describe('cluster-scope rate limits on one Redis', () => {
  it('admit exactly the limit between 3 gateway processes under concurrent load', async () => {
    const redis = await startRedis()
    const up = await startUpstream()
    const config = `
redis: { url: "${redis.url}", timeout: 500ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: bucket
    match: { path: /bucket }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 25, key: route, scope: cluster }]
  - id: window
    match: { path: /window }
    upstream: api
    rateLimit: [{ algorithm: sliding-window, limit: 20, window: 1h, key: route, scope: cluster }]
`
    const gateways = await Promise.all([spawnGateway(config), spawnGateway(config), spawnGateway(config)])
    await Promise.all(gateways.map(storeReady))
    for (const [path, limit] of [['/bucket', 25], ['/window', 20]] as const) {
      const codes = (await Promise.all(gateways.map((gw) => burst(gw.url + path, 20)))).flat()
      expect(count(codes, 200), path).toBe(limit)
      expect(count(codes, 429), path).toBe(60 - limit)
    }
    expect(up.hits).toBe(45)
  }, 60_000)

  it('are exact across --workers: 2 workers share the one quota in Redis', async () => {
    const redis = await startRedis()
    const up = await startUpstream()
    const gw = await spawnGateway(`
redis: { url: "${redis.url}", timeout: 500ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /r }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 5, key: route, scope: cluster }]
`, ['--workers', '2'])
    const codes: number[] = []
    const limits = new Set<string>()
    for (let i = 0; i < 12; i++) {
      const r = await httpRequest(`${gw.url}/r`, { headers: { connection: 'close' } }) // new connections reach both workers
      codes.push(r.status)
      limits.add(String(r.headers['ratelimit-limit']))
    }
    expect(codes).toEqual([200, 200, 200, 200, 200, ...Array(7).fill(429)])
    expect([...limits]).toEqual(['5']) // the whole quota, not a worker's share
  }, 60_000)

  it('uses Redis\'s clock: a gateway whose clock is an hour ahead (faketime) changes nothing', async () => {
    const redis = await startRedis()
    const up = await startUpstream()
    const config = `
redis: { url: "${redis.url}", timeout: 500ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: bucket
    match: { path: /bucket }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 5, key: route, scope: cluster }]
  - id: window
    match: { path: /window }
    upstream: api
    rateLimit: [{ algorithm: sliding-window, limit: 4, window: 1m, key: route, scope: cluster }]
`
    const now = await spawnGateway(config)
    const ahead = await spawnGateway(config, [], { LD_PRELOAD: libfaketime(), FAKETIME: '+1h' })
    // The setup works: the second gateway lives an hour ahead.
    const appliedAt = Date.parse((await httpRequest(`${ahead.adminUrl}/status`).then((r) => r.json()) as { config: { appliedAt: string } }).config.appliedAt)
    expect(appliedAt - Date.now()).toBeGreaterThan(3_500_000)
    // Turn by turn: with the gateways' clocks, each request of `ahead` would find an hour's refill (one
    // token) and a different minute window.
    const codes: number[] = []
    for (let i = 0; i < 4; i++) {
      codes.push((await httpRequest(`${now.url}/bucket`)).status, (await httpRequest(`${ahead.url}/bucket`)).status)
    }
    expect(codes).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
    const window: number[] = []
    for (let i = 0; i < 3; i++) {
      window.push((await httpRequest(`${now.url}/window`)).status, (await httpRequest(`${ahead.url}/window`)).status)
    }
    expect(window).toEqual([200, 200, 200, 200, 429, 429])
  }, 60_000)

  it('gives up after redis.timeout when Redis is frozen (SIGSTOP) and follows onStoreError; resumes on SIGCONT', async () => {
    const redis = await startRedis()
    const up = await startUpstream()
    const TIMEOUT_MS = 100
    const limit = (onStoreError: string): string =>
      `[{ algorithm: token-bucket, rate: 1, period: 1h, burst: 3, key: route, scope: cluster, onStoreError: ${onStoreError} }]`
    const gw = await spawnGateway(`
redis: { url: "${redis.url}", timeout: ${TIMEOUT_MS}ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: local, match: { path: /local }, upstream: api, rateLimit: ${limit('local')} }
  - { id: allow, match: { path: /allow }, upstream: api, rateLimit: ${limit('allow')} }
  - { id: deny, match: { path: /deny }, upstream: api, rateLimit: ${limit('deny')} }
`)
    // Redis answers: one request each, counted in Redis.
    for (const path of ['/local', '/allow', '/deny']) expect((await httpRequest(gw.url + path)).status).toBe(200)
    expect((await httpRequest(`${gw.adminUrl}/status`).then((r) => r.json()) as { limiterStore: { state: string } }).limiterStore.state).toBe('ready')

    redis.pause()
    const timed = async (path: string): Promise<{ status: number; ms: number; error: unknown }> => {
      const start = performance.now()
      const r = await httpRequest(gw.url + path)
      return { status: r.status, ms: performance.now() - start, error: r.headers['x-tollgate-error'] }
    }
    const local: number[] = []
    const latencies: number[] = []
    for (let i = 0; i < 5; i++) {
      const r = await timed('/local')
      local.push(r.status)
      latencies.push(r.ms)
    }
    // onStoreError local: this process counts alone, with the whole burst of 3.
    expect(local).toEqual([200, 200, 200, 429, 429])
    const allow = await timed('/allow')
    expect(allow.status).toBe(200)
    const deny = await timed('/deny')
    expect(deny.status).toBe(503)
    expect(deny.error).toBe('RATE_LIMIT_UNAVAILABLE')
    latencies.push(allow.ms, deny.ms)
    // Every decision waited for its timeout, and not much longer (on a quiet machine 2-6 ms longer; the
    // bound leaves room for a busy CI machine).
    const sorted = [...latencies].sort((a, b) => a - b)
    console.log(`Redis frozen, redis.timeout ${TIMEOUT_MS} ms: request latency ms min ${sorted[0]!.toFixed(1)}, median ${sorted[3]!.toFixed(1)}, max ${sorted[6]!.toFixed(1)}`)
    expect(sorted[0]).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
    expect(sorted[6]).toBeLessThan(TIMEOUT_MS + 400)
    expect(await metric(gw, 'tollgate_ratelimit_store_errors_total')).toBeGreaterThanOrEqual(7)
    const status = (await httpRequest(`${gw.adminUrl}/status`).then((r) => r.json()) as { limiterStore: { errors: number; lastError: string | null } }).limiterStore
    expect(status.errors).toBeGreaterThanOrEqual(7)
    expect(status.lastError).not.toBeNull()

    redis.resume()
    // Redis is back: /deny is decided by Redis again (its bucket had 2 tokens left), without a restart.
    const deadline = Date.now() + 10_000
    let back = 0
    while (Date.now() < deadline && back !== 200) back = (await httpRequest(`${gw.url}/deny`)).status
    expect(back).toBe(200)
    // Redis decides again (deny would answer 503 otherwise), and the quota of 3 holds: one before the
    // freeze, `back`, and at most one more (the decision sent during the freeze may be applied late:
    // the store errs towards counting it).
    const after = await burst(`${gw.url}/deny`, 3)
    expect(count(after, 503)).toBe(0)
    expect(count(after, 200)).toBeLessThanOrEqual(1)
  }, 60_000)

  it('resumes deciding in Redis after Redis is killed and restarted, without restarting the gateway', async () => {
    const redis = await startRedis()
    const up = await startUpstream()
    const gw = await spawnGateway(`
redis: { url: "${redis.url}", timeout: 100ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /r }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 2, key: route, scope: cluster, onStoreError: deny }]
`)
    expect((await httpRequest(`${gw.url}/r`)).status).toBe(200)
    await redis.kill()
    const down = await httpRequest(`${gw.url}/r`)
    expect(down.status).toBe(503)
    expect(down.headers['retry-after']).toBe('1')
    await redis.restart() // empty: no persistence, and no scripts loaded
    const deadline = Date.now() + 15_000
    let codes: number[] = []
    while (Date.now() < deadline) {
      codes = [(await httpRequest(`${gw.url}/r`)).status]
      if (codes[0] !== 503) break
      await new Promise((r) => setTimeout(r, 100))
    }
    // The restarted Redis counts from a full bucket: this request took one of 2.
    expect(codes).toEqual([200])
    expect((await httpRequest(`${gw.url}/r`)).status).toBe(200)
    expect((await httpRequest(`${gw.url}/r`)).status).toBe(429)
  }, 60_000)
})

describe('cluster-scope rate limits on a Redis Cluster', () => {
  it('admit exactly the limit per key between 2 gateways, with keys on different masters', async () => {
    const cluster = await startRedisCluster({ masters: 3 })
    const up = await startUpstream()
    const config = `
redis: { cluster: [${cluster.urls.map((u) => `"${u}"`).join(', ')}], timeout: 500ms }
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /r }
    upstream: api
    rateLimit: [{ algorithm: sliding-window, limit: 5, window: 1h, key: "header:x-tenant", scope: cluster }]
`
    const gateways = await Promise.all([spawnGateway(config), spawnGateway(config)])
    await Promise.all(gateways.map(storeReady))
    const tenants = ['t1', 't2', 't3', 't4', 't5', 't6', 't7', 't8']
    // The keys spread over the masters (each key is its own hash tag).
    const owners = new Set<string>()
    for (const t of tenants) owners.add(await cluster.nodes[0]!.cli(['cluster', 'keyslot', `tollgate:rl:{r|sliding-window-0|${t}}`]).then((slot) => String(Math.floor(Number(slot) / 5462))))
    expect(owners.size).toBeGreaterThan(1)
    const results = await Promise.all(tenants.map(async (t) =>
      (await Promise.all(gateways.map((gw) => burst(`${gw.url}/r`, 6, { 'x-tenant': t })))).flat()))
    for (const [i, codes] of results.entries()) {
      expect(count(codes, 200), tenants[i]).toBe(5)
      expect(count(codes, 429), tenants[i]).toBe(7)
    }
  }, 90_000)
})
