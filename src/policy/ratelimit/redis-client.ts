// The ioredis client of redis-store.ts, set up to fail fast (README "Rate limiting", when Redis is down): no
// offline queue, no retries per command, no resending after a reconnect; the connection itself comes back
// on its own, with capped backoff. The store bounds each batch with its own timer.
import { createRequire } from 'node:module'
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import { DECIDE_LUA, REFUND_LUA } from './redis-scripts.js'

const CONNECT_TIMEOUT_MS = 2000

/**
 * ioredis, loaded when the first store opens: a gateway without a redis: section never loads it (about
 * 3 MiB of RSS at idle, bench check "tollgate idle RSS"). It is CommonJS, so require() loads it at once.
 */
let ioredis: typeof import('ioredis') | null = null
function loadIoredis(): typeof import('ioredis') {
  ioredis ??= createRequire(import.meta.url)('ioredis') as typeof import('ioredis')
  return ioredis
}

/** The commands defineCommand adds (ioredis types them only through module augmentation). */
export interface ScriptCommands {
  /** DECIDE_LUA over `numKeys` keys; argv: three numbers per key. */
  tollgateDecide(numKeys: number, keys: readonly string[], argv: readonly number[]): Promise<unknown>
  /** REFUND_LUA for one key. */
  tollgateRefund(key: string, algorithm: number, p1: number, p2: number): Promise<unknown>
}

export type StoreClient = (Redis | Cluster) & ScriptCommands

/** ioredis retryStrategy: reconnect after 100, 200, 400, 800, then every 1000 ms, forever. */
function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 5), 1000)
}

/**
 * One Redis (`url`: redis://[user:pass@]host:port[/db], rediss:// for TLS, parsed by ioredis) or a Redis
 * Cluster (`cluster`: seed URLs; user, password and TLS of the first apply to every node). Connects now.
 */
export function openClient(url: string | null, cluster: readonly string[] | null): StoreClient {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A socket that does not close within this after disconnect() (the peer is gone) is destroyed.
    disconnectTimeout: 500,
    retryStrategy: reconnectDelayMs,
    // Shown by CLIENT LIST, for the operator (and the tests) to tell the limiter's connections apart.
    connectionName: 'tollgate-ratelimit',
  }
  let client: Redis | Cluster
  if (cluster !== null) {
    const nodes = cluster.map(parseNode)
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnectDelayMs,
      slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
      redisOptions: { ...common, ...nodes[0]?.auth },
    }
    client = new (loadIoredis().Cluster)(nodes.map((n) => ({ host: n.host, port: n.port })), options)
  } else if (url !== null) {
    client = new (loadIoredis().Redis)(url, common)
  } else {
    throw new Error('RedisStore: settings need redis.url or redis.cluster, got neither')
  }
  client.defineCommand('tollgateDecide', { lua: DECIDE_LUA })
  client.defineCommand('tollgateRefund', { lua: REFUND_LUA, numberOfKeys: 1 })
  return client as StoreClient
}

interface NodeAddress {
  readonly host: string
  readonly port: number
  readonly auth: Pick<RedisOptions, 'username' | 'password' | 'tls'>
}

/** redis://[user:pass@]host[:port] or rediss:// of a cluster node. */
function parseNode(url: string): NodeAddress {
  const u = new URL(url)
  const auth: { username?: string; password?: string; tls?: RedisOptions['tls'] } = {}
  if (u.username !== '') auth.username = decodeURIComponent(u.username)
  if (u.password !== '') auth.password = decodeURIComponent(u.password)
  if (u.protocol === 'rediss:') auth.tls = {}
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 6379 : Number(u.port), auth }
}
