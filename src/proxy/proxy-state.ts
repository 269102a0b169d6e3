// What the request path reads per request: the current table (replaced in one assignment on reload),
// the draining flag, the in-flight count that shutdown waits on, the watch over response timeouts, the
// end-of-request record and the span tracer.
import type { RouteTable } from '../table/route-table.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { SpanTracer } from '../telemetry/tracer.js'
import { Recorder } from './record.js'
import { ResponseWatch, sweepIntervalMs } from './response-watch.js'
import { Tunnels } from './websocket-tunnel.js'

export class ProxyState {
  table: RouteTable
  draining = false
  /** The proxy listener's scheme (X-Forwarded-Proto, url.scheme of spans); set when the listener is made. */
  scheme: 'http' | 'https' = 'http'
  inflight = 0
  readonly metrics: Metrics
  /** Requests waiting on an upstream, swept for timeouts.response every tenth of the shortest one. */
  readonly watch = new ResponseWatch(() => sweepIntervalMs([this.table.minResponseTimeoutMs]))
  /** Where every ended request is told (record.ts). */
  readonly recorder: Recorder
  /** Where sampled requests' spans go; null while tracing.exporter is none (the SDK is not even loaded). */
  tracer: SpanTracer | null = null
  /** Upgraded WebSocket connections (websocket-tunnel.ts): not requests in flight, and not any table's. */
  readonly tunnels = new Tunnels()
  #idleWaiters: Array<() => void> = []

  constructor(table: RouteTable, metrics: Metrics) {
    this.table = table
    this.metrics = metrics
    this.recorder = new Recorder(metrics)
    metrics.inflightNow = () => this.inflight
    metrics.websocketsNow = () => this.tunnels.counts(websocketRouteIds(this.table))
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

function* websocketRouteIds(table: RouteTable): Generator<string> {
  for (const route of table.routes.values()) if (route.websocket) yield route.id
}
