// The cluster the fault drill (bench/drill.ts) breaks: a 3-member etcd cluster, one redis-server, two
// upstream targets (bench/upstream-server.js, separate processes so one can be SIGKILLed), a counting
// upstream for the cluster-limited routes (in this process: it records when each request was sent and when
// it arrived) and N built gateways (dist/src/cli.js), each with an `etcd:` and a `redis:` section and its
// own snapshot file. Every process is started on 127.0.0.1 with a free port and stopped by its pid; one
// that exits without the drill asking is a crash.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import type { Etcd3 } from 'etcd3'
import { createEtcdClient } from '../../src/etcd/client.js'
import type { Hit } from './drill-checks.js'
import { startEtcdCluster, type EtcdCluster } from './etcd.js'
import { benchScript, tollgateCli } from './paths.js'
import { freePort, probe, spawnChild, tailOf, waitUntilReady, type Child } from './processes.js'
import { startRedis, type RedisServer } from './redis.js'

export const PREFIX = '/drill'
/** The routes the load sends to; the two limited ones go to the counting upstream. */
export const API_PATHS = ['/api/a', '/api/b', '/api/c'] as const
export const DENY_PATH = '/limited/deny'
export const LOCAL_PATH = '/limited/local'

export interface DrillSettings {
  readonly gateways: number
  /** The cluster limit: `limit` requests per `windowMs` on each limited route. */
  readonly limit: number
  readonly windowMs: number
  /** The gateways' redis.timeout. */
  readonly redisTimeoutMs: number
  readonly dir: string
}

/** A process the drill started; `expectExit()` before stopping it on purpose. */
export interface Watched {
  readonly name: string
  isRunning(): boolean
  isExpectedDown(): boolean
}

export class DrillGateway implements Watched {
  readonly name: string
  readonly url: string
  readonly adminUrl: string
  readonly snapshotPath: string
  #child: Child | null = null
  #expectedDown = false
  readonly #configPath: string
  readonly #logPath: string

  constructor(readonly index: number, port: number, adminPort: number, dir: string, etcdEndpoints: readonly string[], redisUrl: string, redisTimeoutMs: number) {
    this.name = `gateway ${index}`
    this.url = `http://127.0.0.1:${port}`
    this.adminUrl = `http://127.0.0.1:${adminPort}`
    this.snapshotPath = join(dir, `gateway-${index}-etcd-snapshot.json`)
    this.#configPath = join(dir, `gateway-${index}.yaml`)
    this.#logPath = join(dir, `gateway-${index}.log`)
    // No routes in the file: all of them come from etcd, so the snapshot is all there is when etcd is down.
    // redis.timeout: 250 ms by default (bench/drill.ts), not the gateway's 50 ms: on a shared 2-core machine
    // with 3 etcd members, Redis, 3 gateways and the load all busy, CPU starvation alone misses 50 ms now and
    // then (a 503 on the deny route in a phase whose fault is not Redis's); the drill is about the faults.
    writeFileSync(this.#configPath, `listen: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
etcd: { endpoints: [${etcdEndpoints.map((e) => `"${e}"`).join(', ')}], prefix: ${PREFIX}, snapshotFile: "${this.snapshotPath}" }
redis: { url: "${redisUrl}", timeout: ${redisTimeoutMs}ms }
log: { level: warn, access: false }
`)
  }

  get pid(): number | null { return this.#child?.pid ?? null }
  get logPath(): string { return this.#logPath }
  isRunning(): boolean { return this.#child !== null && !this.#child.hasExited() }
  isExpectedDown(): boolean { return this.#expectedDown }

  /** Starts the process; resolves once `ready` says so (default: /readyz answers 200). */
  async start(ready: 'readyz' | 'healthz' = 'readyz'): Promise<void> {
    this.#expectedDown = false
    this.#child = spawnChild(this.name, process.execPath, [tollgateCli, '--config', this.#configPath], { core: null, logPath: this.#logPath })
    const notReady = await waitUntilReady(`${this.adminUrl}/${ready}`, 20_000, this.#child)
    if (notReady !== null) throw new Error(`${this.name} ${notReady}`)
  }

  /** SIGTERM (drain), wait for the exit; resolves with the exit code. */
  async terminate(): Promise<number | null> {
    this.#expectedDown = true
    return this.#child === null ? null : this.#child.stop(30_000)
  }

  setFrozen(isFrozen: boolean): void { this.#child?.setFrozen(isFrozen) }

  /** /status's etcd facts, or null when it does not answer. */
  async etcdStatus(): Promise<{ revision: number; startedFrom: string; up: boolean } | null> {
    try {
      const r = await fetch(`${this.adminUrl}/status`, { signal: AbortSignal.timeout(2_000) })
      const body = (await r.json()) as { config: { etcd: { revision: number; startedFrom: string; up: boolean } | null } }
      return body.config.etcd
    } catch {
      return null
    }
  }

  async get(path: string): Promise<number> {
    return (await probe(`${this.url}${path}`)).status
  }

  tail(): string { return tailOf(this.#logPath, 10) }
}

/** A node:http server that answers 200 and records every request's x-drill-sent and arrival per path. */
export class CountingUpstream {
  readonly hits = new Map<string, Hit[]>()
  #server: Server | null = null
  url = ''

  async start(): Promise<void> {
    this.#server = createServer({ keepAliveTimeout: 120_000 }, (req: IncomingMessage, res: ServerResponse) => {
      const arrivedMs = Date.now()
      const sent = Number(req.headers['x-drill-sent'])
      const path = req.url ?? ''
      let list = this.hits.get(path)
      if (list === undefined) this.hits.set(path, list = [])
      // A request without the header (a probe by the drill) is not part of the load.
      if (Number.isFinite(sent)) list.push({ sentMs: sent, arrivedMs })
      req.resume()
      req.once('end', () => res.end('ok'))
    })
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  /** Hits on `path` sent in [fromMs, toMs). */
  hitsBetween(path: string, fromMs: number, toMs: number): Hit[] {
    return (this.hits.get(path) ?? []).filter((h) => h.sentMs >= fromMs && h.sentMs < toMs)
  }

  async close(): Promise<void> {
    if (this.#server === null) return
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server!.close(() => resolve()))
  }
}

export interface UpstreamTarget extends Watched {
  readonly url: string
  kill(): Promise<void>
  stop(): Promise<void>
}

async function startTarget(index: number, dir: string): Promise<UpstreamTarget> {
  const port = await freePort()
  const name = `target ${index}`
  const child = spawnChild(name, process.execPath, [benchScript('upstream-server.js'), '--port', String(port)], { core: null, logPath: join(dir, `target-${index}.log`) })
  const url = `http://127.0.0.1:${port}`
  const notReady = await waitUntilReady(`${url}/`, 10_000, child)
  if (notReady !== null) throw new Error(`${name} ${notReady}`)
  let expectedDown = false
  return {
    name, url,
    isRunning: () => !child.hasExited(),
    isExpectedDown: () => expectedDown,
    async kill() {
      expectedDown = true
      process.kill(child.pid, 'SIGKILL')
      await child.exited
    },
    async stop() {
      expectedDown = true
      await child.stop()
    },
  }
}

export interface DrillCluster {
  readonly etcd: EtcdCluster
  /** Which etcd members the drill has stopped on purpose (by name). */
  readonly etcdDown: Set<string>
  readonly redis: RedisServer
  readonly targets: readonly UpstreamTarget[]
  readonly counted: CountingUpstream
  readonly gateways: readonly DrillGateway[]
  /** The drill's own etcd client, for writes and for etcd's revision. */
  readonly client: Etcd3
  /** Every process that must be running unless the drill stopped it; names of those that are not. */
  crashed(): string[]
  close(): Promise<void>
}

/** The routes and upstreams in etcd before the gateways start. */
function initialItems(targets: readonly UpstreamTarget[], countedUrl: string, s: DrillSettings): Record<string, unknown> {
  const limited = (onStoreError: string): unknown[] => [{
    name: 'cluster', algorithm: 'sliding-window', limit: s.limit, window: `${s.windowMs}ms`, key: 'route', scope: 'cluster', onStoreError,
  }]
  return {
    'upstreams/api': {
      targets: targets.map((t) => ({ url: t.url })),
      timeouts: { connect: '1s', response: '10s' },
      // A dead target is absorbed: a refused connection is retried on the other one, and passive health
      // ejects the dead one after 3 failures.
      retry: { attempts: 2, on: ['connect-failure', 'reset', 502, 503, 504], backoff: '10ms' },
      healthCheck: { passive: { consecutiveFailures: 3, ejectionTime: '30s' } },
    },
    'upstreams/counted': { targets: [{ url: countedUrl }] },
    'routes/api': { match: { path: '/api/*' }, upstream: 'api' },
    'routes/deny': { match: { path: DENY_PATH }, upstream: 'counted', rateLimit: limited('deny') },
    'routes/local': { match: { path: LOCAL_PATH }, upstream: 'counted', rateLimit: limited('local') },
  }
}

export async function startDrillCluster(s: DrillSettings, log: (line: string) => void): Promise<DrillCluster> {
  const closers: Array<() => Promise<void>> = []
  const close = async (): Promise<void> => {
    for (const c of closers.reverse()) await c().catch(() => undefined)
    closers.length = 0
  }
  try {
    log('etcd: 3 members')
    const etcd = await startEtcdCluster(3)
    closers.push(() => etcd.close())
    const client = await createEtcdClient({ endpoints: etcd.endpoints }, { callTimeoutMs: 2_000 })
    closers.push(async () => { client.close() })
    log('redis-server')
    const redis = await startRedis(join(s.dir, 'redis'), null)
    closers.push(async () => { await redis.child.stop() })
    const targets = [await startTarget(0, s.dir), await startTarget(1, s.dir)]
    closers.push(async () => { await Promise.all(targets.map((t) => t.stop())) })
    const counted = new CountingUpstream()
    await counted.start()
    closers.push(() => counted.close())
    for (const [key, value] of Object.entries(initialItems(targets, counted.url, s))) {
      await client.put(`${PREFIX}/${key}`).value(JSON.stringify(value))
    }
    const gateways: DrillGateway[] = []
    for (let i = 0; i < s.gateways; i++) {
      gateways.push(new DrillGateway(i, await freePort(), await freePort(), s.dir, etcd.endpoints, redis.url, s.redisTimeoutMs))
    }
    closers.push(async () => { await Promise.all(gateways.map((g) => g.terminate())) })
    log(`${s.gateways} gateways`)
    await Promise.all(gateways.map((g) => g.start()))
    const etcdDown = new Set<string>()
    return {
      etcd, etcdDown, redis, targets, counted, gateways, client, close,
      crashed() {
        const watched: Watched[] = [...gateways, ...targets,
          { name: 'redis-server', isRunning: () => !redis.child.hasExited(), isExpectedDown: () => false },
          ...etcd.members.map((m) => ({ name: `etcd ${m.name}`, isRunning: () => m.isRunning, isExpectedDown: () => etcdDown.has(m.name) }))]
        return watched.filter((w) => !w.isRunning() && !w.isExpectedDown()).map((w) => w.name)
      },
    }
  } catch (err) {
    await close()
    throw err
  }
}
