// The route table in service, behind the ConfigHolder interface of config-applier.ts: build a table from the
// previous one (reusing unchanged upstreams, their pools and metric children), swap it into the proxy's
// state in one assignment, then commit (close what only the old table used). All this file needs of
// src/table and src/proxy is buildRouteTable, RouteTable's config/version/routes/close and ProxyState.table.
import type { Config } from '../config/schema.js'
import { ProxyState } from '../proxy/proxy-state.js'
import { buildRouteTable, type RouteTable, type TableOptions } from '../table/route-table.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { BuiltConfig, ConfigHolder } from './config-applier.js'

export class TableHolder implements ConfigHolder {
  /** What the request path reads: the table (swapped here), the draining flag, requests in flight. */
  readonly state: ProxyState
  readonly #metrics: Metrics
  readonly #afterSwap: (config: Config) => void
  readonly #options: TableOptions

  /** Builds the first table. `afterSwap` runs after each later swap (the listener's timeouts). */
  constructor(config: Config, metrics: Metrics, afterSwap: (config: Config) => void, options: TableOptions = {}) {
    this.#metrics = metrics
    this.#afterSwap = afterSwap
    this.#options = options
    this.state = new ProxyState(buildRouteTable(config, null, metrics, options).table, metrics)
    // Probe reports go to the table in service; one for an upstream or URL it does not have is ignored
    // (the feed keeps it for the table built next).
    options.healthFeed?.listen((report) => this.state.table.upstreams.get(report.upstream)?.health.applyActive(report))
  }

  get config(): Config {
    return this.state.table.config
  }

  get table(): RouteTable {
    return this.state.table
  }

  build(next: Config): BuiltConfig {
    const built = buildRouteTable(next, this.state.table, this.#metrics, this.#options)
    return {
      version: built.table.version,
      routes: built.table.routes.size,
      swap: () => {
        this.state.table = built.table
        this.#afterSwap(next)
      },
      commit: () => built.commit(),
    }
  }

  /** At shutdown: destroys the connection pools of the table in service. */
  close(): Promise<void> {
    return this.state.table.close()
  }
}
