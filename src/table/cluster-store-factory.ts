// The store of cluster-scope limits for a redis: section. Replaced by the Redis store when it lands.
import type { Config } from '../config/schema.js'
import type { ClusterStore } from '../policy/ratelimit/cluster-store.js'
import type { Metrics } from '../telemetry/metrics.js'

export function openClusterStore(redis: NonNullable<Config['redis']>, metrics: Metrics): ClusterStore {
  void metrics
  throw new Error(`redis ${redis.url ?? ''}: the Redis store is not built yet`)
}
