// Cluster-limit decisions against one local redis-server: RedisStore's batching (many decisions per script
// call) against one EVALSHA per decision (the same Lua, one key per call), with and without ioredis
// auto-pipelining. Closed loop: `concurrency` callers each make a decision, wait for the answer, repeat.
// Prints decisions/s, latency per decision, and CPU per decision of this process and of redis-server.
//
//   npm run build && node dist/bench/micro/redis-store-bench.js [--seconds 3] [--concurrency 1,16,256]
//
// Starts its own redis-server (Debian package redis-server) on a free loopback port and stops it.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { StepContext } from '../../src/http/request-step.js'
import { Algorithm, type ClusterDecisionSink, type ClusterLimit } from '../../src/policy/ratelimit/cluster-store.js'
import { RedisStore } from '../../src/policy/ratelimit/redis-store.js'
import { DECIDE_LUA } from '../../src/policy/ratelimit/redis-scripts.js'

const KEYS = 10_000
const LIMIT: ClusterLimit = {
  storeKeyPrefix: 'tollgate:rl:{bench|per-client|', algorithm: Algorithm.TokenBucket, ratePerMs: 1, burst: 1e9, limit: 0, windowMs: 0,
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : process.argv[i + 1] ?? fallback
}

interface Result {
  readonly mode: string
  readonly concurrency: number
  readonly perSecond: number
  readonly meanUs: number
  readonly p99Us: number
  readonly nodeCpuUs: number
  readonly redisCpuUs: number
  readonly failures: number
}

/** One decision maker: starts a decision for caller `i`, calls done(i, ok) when it is answered. */
type Decide = (i: number, keyValue: string) => void

async function run(mode: string, concurrency: number, seconds: number, redisPid: number,
  make: (done: (i: number, ok: boolean) => void) => Decide): Promise<Result> {
  const latencies: number[] = []
  const startedAt = new Float64Array(concurrency)
  let count = 0
  let failures = 0
  let isMeasuring = false
  let isRunning = true
  let seq = 0
  let finish: () => void = () => undefined
  let active = concurrency
  const decide = make((i, ok) => {
    if (isMeasuring) {
      latencies.push(performance.now() - startedAt[i]!)
      count++
      if (!ok) failures++
    }
    if (!isRunning) {
      if (--active === 0) finish()
      return
    }
    startedAt[i] = performance.now()
    decide(i, String(seq++ % KEYS))
  })
  const finished = new Promise<void>((r) => { finish = r })
  for (let i = 0; i < concurrency; i++) {
    startedAt[i] = performance.now()
    decide(i, String(seq++ % KEYS))
  }
  await new Promise((r) => setTimeout(r, 500)) // warm-up
  isMeasuring = true
  const cpu = process.cpuUsage()
  const redisCpu = cpuTicks(redisPid)
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, seconds * 1000))
  isMeasuring = false
  const elapsed = (performance.now() - t0) / 1000
  const used = process.cpuUsage(cpu)
  const redisUsedUs = ((cpuTicks(redisPid) - redisCpu) / 100) * 1e6 // USER_HZ = 100 on Linux
  isRunning = false
  await finished
  latencies.sort((a, b) => a - b)
  return {
    mode, concurrency, perSecond: count / elapsed,
    meanUs: (latencies.reduce((s, x) => s + x, 0) / latencies.length) * 1000,
    p99Us: latencies[Math.floor(latencies.length * 0.99)]! * 1000,
    nodeCpuUs: (used.user + used.system) / count, redisCpuUs: redisUsedUs / count, failures,
  }
}

/** utime + stime of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return Number(fields[11]) + Number(fields[12])
}

function batched(url: string): { make: (done: (i: number, ok: boolean) => void) => Decide; close: () => Promise<void> } {
  const store = new RedisStore({ url, cluster: null, timeoutMs: 1000 }, () => undefined)
  const ctxs = Array.from({ length: 4096 }, (_, i) => ({ i }) as unknown as StepContext)
  return {
    make(done) {
      const sink: ClusterDecisionSink = {
        onClusterDecision: (ctx) => done((ctx as unknown as { i: number }).i, true),
        onClusterFailure: (ctx) => done((ctx as unknown as { i: number }).i, false),
      }
      return (i, keyValue) => store.decide(LIMIT, keyValue, sink, ctxs[i]!)
    },
    close: () => store.close(),
  }
}

interface NaiveClient { tollgateDecide(n: number, keys: string[], argv: number[]): Promise<unknown> }

function naive(url: string, autoPipelining: boolean): { make: (done: (i: number, ok: boolean) => void) => Decide; close: () => Promise<void> } {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, enableAutoPipelining: autoPipelining, commandTimeout: 1000 })
  redis.defineCommand('tollgateDecide', { lua: DECIDE_LUA })
  const client = redis as unknown as NaiveClient
  return {
    make(done) {
      // One script call and one closure per decision: what the batching avoids.
      return (i, keyValue) => {
        client.tollgateDecide(1, [LIMIT.storeKeyPrefix + keyValue + '}'], [0, LIMIT.ratePerMs, LIMIT.burst])
          .then(() => done(i, true), () => done(i, false))
      }
    },
    close: async () => { redis.disconnect() },
  }
}

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '3'))
  const levels = arg('concurrency', '1,16,256').split(',').map(Number)
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-redis-bench-'))
  const port = await freePort()
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    let out = ''
    server.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes('Ready to accept connections')) resolve() })
    server.once('exit', () => reject(new Error(`redis-server exited:\n${out}`)))
  })
  server.stdout!.resume()
  const url = `redis://127.0.0.1:${port}`
  const results: Result[] = []
  try {
    for (const concurrency of levels) {
      for (const [mode, factory] of [
        ['batched (RedisStore)', () => batched(url)],
        ['EVALSHA per decision', () => naive(url, false)],
        ['EVALSHA per decision, autoPipelining', () => naive(url, true)],
      ] as const) {
        const impl = factory()
        await new Promise((r) => setTimeout(r, 200)) // connected
        results.push(await run(mode, concurrency, seconds, server.pid!, impl.make))
        await impl.close()
      }
    }
  } finally {
    server.kill('SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(`redis-server ${port}, ${seconds} s per row, token bucket over ${KEYS} keys, node ${process.version}`)
  console.log('| mode | concurrency | decisions/s | mean µs | p99 µs | node CPU µs/decision | redis CPU µs/decision | failures |')
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const r of results) {
    console.log(`| ${r.mode} | ${r.concurrency} | ${Math.round(r.perSecond)} | ${r.meanUs.toFixed(0)} | ${r.p99Us.toFixed(0)} | ${r.nodeCpuUs.toFixed(1)} | ${r.redisCpuUs.toFixed(1)} | ${r.failures} |`)
  }
}

await main()
