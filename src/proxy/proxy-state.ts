// What the request path reads per request: the current table (replaced in one assignment on reload),
// the draining flag, the in-flight count that shutdown waits on, and the watch over response timeouts.
import type { RouteTable } from '../table/route-table.js'
import { ResponseWatch } from './response-watch.js'
import type { Metrics, RouteMetrics } from '../telemetry/metrics.js'

export class ProxyState {
  table: RouteTable
  draining = false
  inflight = 0
  readonly metrics: Metrics
  readonly unmatchedMetrics: RouteMetrics
  /** Requests waiting on an upstream, swept for timeouts.response every table.sweepMs. */
  readonly watch = new ResponseWatch(() => this.table.sweepMs)
  #idleWaiters: Array<() => void> = []

  constructor(table: RouteTable, metrics: Metrics) {
    this.table = table
    this.metrics = metrics
    this.unmatchedMetrics = metrics.forRoute('')
    metrics.inflightNow = () => this.inflight
  }

  requestStarted(): void {
    this.inflight++
  }

  requestFinished(): void {
    this.inflight--
    if (this.inflight === 0 && this.#idleWaiters.length > 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }
}
