// The store of cluster-scope limits for a redis: section: one RedisStore (one Redis, or a Redis Cluster),
// reused by route-table.ts while redis: is unchanged, its failures counted in
// tollgate_ratelimit_store_errors_total.
import type { Config } from '../config/schema.js'
import type { ClusterStore } from '../policy/ratelimit/cluster-store.js'
import { RedisStore } from '../policy/ratelimit/redis-store.js'
import type { Metrics } from '../telemetry/metrics.js'

export function openClusterStore(redis: NonNullable<Config['redis']>, metrics: Metrics): ClusterStore {
  const errors = metrics.ratelimitStoreErrors
  return new RedisStore({ url: redis.url ?? null, cluster: redis.cluster ?? null, timeoutMs: redis.timeout }, () => errors.inc())
}
