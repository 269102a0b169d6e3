// One serving process: the proxy listener over the table holder, the admin listener, and (single process)
// the config sources; closes in reverse order of opening through the drain state machine (drain.ts).
// A cluster worker is the same minus the sources and the admin listener: Gateway.serve() with the config
// its primary sent.
import { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import { startAdminServer, type AdminServer, type AdminSources } from '../admin/admin-server.js'
import { renderStatus, type RouteTotals } from '../admin/status.js'
import type { Config } from '../config/schema.js'
import type { EtcdConfigSource, EtcdSourceOptions } from '../etcd/source.js'
import { createProxyServer, type ProxyServer } from '../proxy/proxy-server.js'
import type { RouteTable } from '../table/route-table.js'
import { HeapTrimmer } from '../telemetry/heap-trim.js'
import { applyLogSettings, createLogger, type Logger } from '../telemetry/log.js'
import { Metrics } from '../telemetry/metrics.js'
import { ConfigApplier, type ApplyResult, type ConfigOrigin } from './config-applier.js'
import type { ConfigSources, EtcdApplyEvent, ReloadEvent } from './config-sources.js'
import { Drain, settlesBefore } from './drain.js'
import { AccessLogSink } from '../proxy/access-log.js'
import { JwksKeys } from '../policy/auth/jwks-keys.js'
import { ErrorLogSink } from '../proxy/error-log.js'
import { TableHolder } from './table-holder.js'
import { HealthFeed } from '../upstream/health/health-feed.js'
import type { ProbeSet } from '../upstream/health/probe-set.js'
import { createProbeSet } from './health-probes.js'
import { listenAddress, listenError } from '../lib/host-port.js'
import { TraceSink } from '../proxy/trace-spans.js'

export interface GatewayOptions {
  readonly configPath: string
  readonly env?: NodeJS.ProcessEnv
  readonly log?: Logger
  /** Watch routes.yaml and reload on change (default true). */
  readonly watchFile?: boolean
  /** Period of the stat poll that backs up the directory watch (default 2 s). */
  readonly watchPollMs?: number
  readonly metrics?: Metrics
  /** Timings of the etcd source (tests shorten the watchdog). */
  readonly etcdTuning?: Omit<EtcdSourceOptions, 'settings' | 'file' | 'log'>
}

export class Gateway {
  /** 'reload' after every file reload attempt, 'etcd' after every etcd change (never emitted in a worker). */
  readonly events: EventEmitter<{ reload: [ReloadEvent]; etcd: [EtcdApplyEvent] }>
  /** The file (and etcd) sources; null in a cluster worker, which applies what its primary sends. */
  readonly sources: ConfigSources | null
  readonly metrics: Metrics
  readonly log: Logger
  /** Gives back the garbage of a large config load at once (heap-trim.ts says why). */
  readonly heapTrimmer: HeapTrimmer
  readonly #holder: TableHolder
  readonly #applier: ConfigApplier
  readonly #proxy: ProxyServer
  readonly #drain: Drain
  readonly #accessLog: AccessLogSink
  /** Active probes (README "Health checks"): this process's own, or null in a cluster worker (its primary probes). */
  readonly probes: ProbeSet | null
  #admin: AdminServer | null = null
  /** The tracing settings the span tracer in service was made from ('' none), and the switch in progress. */
  #tracingKey = ''
  #tracingSwitch: Promise<void> = Promise.resolve()

  /** `feed`: a cluster worker's, filled by its primary; otherwise this process probes and fills its own. */
  private constructor(config: Config, sources: ConfigSources | null, metrics: Metrics, log: Logger, heapTrimmer: HeapTrimmer, workers = 1, feed: HealthFeed | null = null) {
    this.sources = sources
    this.events = sources?.events ?? new EventEmitter()
    this.metrics = metrics
    this.log = log
    this.heapTrimmer = heapTrimmer
    const healthFeed = feed ?? new HealthFeed()
    this.probes = feed === null ? createProbeSet(metrics, (report) => healthFeed.put(report)) : null
    // log: applies live (README "Observability"): the level and format first, then the access log, which
    // is on only when info lines are written.
    this.#accessLog = new AccessLogSink(log)
    // JWKS fetch failures and recoveries, once per change (README "Authentication"); before the table is
    // built, which starts the first fetches.
    JwksKeys.reportTo({ warn: (fields, message) => log.warn(fields, message), info: (fields, message) => log.info(fields, message) })
    applyLogSettings(log, config.log)
    this.#accessLog.configure(config.log)
    this.#holder = new TableHolder(config, metrics, (next) => {
      this.#applyLimits(next.limits)
      this.#applyTls(next.tls)
      this.#warnHttp2(next.http2)
      applyLogSettings(this.log, next.log)
      this.#accessLog.configure(next.log)
      this.probes?.update(next.upstreams)
      void this.#applyTracing(next.tracing)
    }, { workers, healthFeed })
    this.probes?.update(config.upstreams)
    this.#holder.state.recorder.add(new ErrorLogSink(log))
    this.#holder.state.recorder.add(new TraceSink(this.#holder.state))
    this.#holder.state.recorder.add(this.#accessLog)
    this.#applier = new ConfigApplier(this.#holder, metrics, log, heapTrimmer)
    this.#proxy = createProxyServer(this.#holder.state, config.limits, config.tls, config.http2)
    this.#drain = new Drain({
      delaying: async () => { await this.sources?.close() }, // the config is frozen from here on
      delayMs: () => this.#holder.config.shutdown.delay,
      draining: () => this.#drainConnections(),
      stopping: async () => {
        await this.probes?.close()
        await this.#admin?.close()
        await this.#holder.close()
        await this.#applyTracing(null) // exports the spans still queued
        this.log.info('stopped')
      },
    })
    this.#applier.gate(() => this.#drain.acceptsConfig)
  }

  /** The single process: routes.yaml (and etcd), the proxy and admin listeners. */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const env = options.env ?? process.env
    const log = options.log ?? createLogger(env)
    const metrics = options.metrics ?? new Metrics()
    const heapTrimmer = new HeapTrimmer()
    // Imported here, not at the top: a cluster worker (serve() below) never loads the YAML parser.
    const { ConfigSources } = await import('./config-sources.js')
    const sources = await ConfigSources.open({ ...options, env, log, metrics, heapTrimmer })
    let gateway: Gateway
    let built: Gateway | null = null // for the catch: stops the probes it started
    try {
      gateway = new Gateway(sources.config, sources, metrics, log, heapTrimmer)
      built = gateway
      gateway.#applier.started('file')
      await gateway.#applyTracing(sources.config.tracing)
      await gateway.#listen()
      gateway.#admin = await startAdminServer(listenAddress(gateway.#holder.config.admin), gateway.#adminSources(sources))
    } catch (err) {
      if (built !== null) await built.#applyTracing(null)
      await built?.probes?.close()
      await sources.close()
      throw err
    }
    sources.start(gateway.#applier)
    log.info({ proxy: gateway.proxyAddress, admin: gateway.adminAddress, routes: gateway.table.routes.size, revision: sources.file.revision }, 'tollgate started')
    heapTrimmer.afterLoad()
    return gateway
  }

  /** A cluster worker: serves `config` (validated by the primary) on the shared proxy port; no admin listener. */
  static async serve(config: Config, options: { readonly log: Logger; readonly metrics: Metrics; readonly workers: number; readonly healthFeed: HealthFeed }): Promise<Gateway> {
    const heapTrimmer = new HeapTrimmer()
    const gateway = new Gateway(config, null, options.metrics, options.log, heapTrimmer, options.workers, options.healthFeed)
    await gateway.#applyTracing(config.tracing)
    await gateway.#listen()
    heapTrimmer.afterLoad()
    return gateway
  }

  async #listen(): Promise<void> {
    const { host, port } = listenAddress(this.#holder.config.listen)
    const server = this.#proxy.server
    await new Promise<void>((resolve, reject) => {
      const failed = (err: unknown): void => reject(listenError(err, 'proxy', 'listen', host, port))
      server.once('error', failed)
      server.listen({ host, port }, () => {
        server.off('error', failed)
        resolve()
      })
    })
  }

  get proxyAddress(): AddressInfo {
    return this.#proxy.server.address() as AddressInfo
  }

  get adminAddress(): AddressInfo | null {
    return this.#admin?.address() ?? null
  }

  get table(): RouteTable {
    return this.#holder.table
  }

  get etcd(): EtcdConfigSource | null {
    return this.sources?.etcd ?? null
  }

  /** Re-reads routes.yaml now (a worker has no file: 'unchanged'). Never rejects. */
  reload(): Promise<ApplyResult> {
    return this.sources?.reload() ?? Promise.resolve('unchanged')
  }

  /** Puts a validated config in force (the cluster primary's, or a test's). Never throws. */
  applyConfig(config: Config, origin: ConfigOrigin, revision: string): ApplyResult {
    return this.#applier.apply(config, origin, revision)
  }

  /**
   * Puts the span tracer for `settings` in service (null or exporter none: no tracer). The OpenTelemetry SDK
   * is imported here, on first use, like etcd3 only with an etcd: section: a gateway that does not trace never
   * loads it (README "Tracing" has the RSS). Switches run one after another; the tracer replaced exports what
   * it still holds, then stops. sampleRatio and parentBased are not the tracer's: routes read them.
   */
  #applyTracing(settings: Config['tracing'] | null): Promise<void> {
    const key = settings === null || settings.exporter === 'none' ? '' : JSON.stringify([settings.exporter, settings.endpoint, settings.serviceName])
    this.#tracingSwitch = this.#tracingSwitch.then(async () => {
      if (key === this.#tracingKey) return
      const state = this.#holder.state
      const old = state.tracer
      state.tracer = null
      this.#tracingKey = ''
      if (settings !== null && key !== '') {
        try {
          const { OtelTracer } = await import('../telemetry/otel-tracer.js')
          const metrics = this.metrics
          state.tracer = new OtelTracer(settings, { onDropped: (n) => metrics.traceSpansDropped.inc(n) })
          metrics.exposeTraceSpansDropped()
          this.#tracingKey = key
          this.log.info({ exporter: settings.exporter, endpoint: settings.exporter === 'otlp' ? settings.endpoint : undefined }, 'tracing on')
        } catch (err) {
          this.log.error({ err }, `tracing.exporter ${settings.exporter}: the span exporter could not start; requests are served without spans`)
        }
      }
      await old?.close().catch((err: unknown) => this.log.warn({ err }, 'tracing: the spans still queued could not be exported'))
    })
    return this.#tracingSwitch
  }

  /**
   * New certificates (README "TLS"): swapped into the listener, no connection dropped. Whether the listener
   * speaks TLS at all is fixed when it is made: adding or removing tls: applies at the next restart. The
   * files were checked at load (config/tls-files.ts); what OpenSSL still refuses here keeps the old ones.
   */
  #applyTls(tls: Config['tls']): void {
    const proxy = this.#proxy as ProxyServer | undefined // undefined while the constructor builds the first table
    if (proxy === undefined) return
    if ((tls === undefined) !== (proxy.tls === null)) {
      this.log.warn(`tls: ${tls === undefined ? 'removed' : 'added'} in the config: the proxy listener changes between plaintext and TLS at the next restart`)
      return
    }
    if (tls === undefined) return
    try {
      if (proxy.applyTls(tls)) {
        this.log.info({ certificates: tls.certificates.map((c) => ({ cert: c.cert, names: c.names, validTo: c.validTo })) }, 'tls: certificates in service')
      }
    } catch (err) {
      this.log.error({ err }, 'tls: the new certificates could not be put in service; the previous ones keep serving')
    }
  }

  /** http2: decides what the listener is made as (proxy-server.ts): a change applies at the next restart. */
  #warnHttp2(http2: Config['http2']): void {
    const proxy = this.#proxy as ProxyServer | undefined // undefined while the constructor builds the first table
    if (proxy === undefined || proxy.http2 === http2) return
    this.log.warn(`http2: changed from ${String(proxy.http2)} to ${String(http2)} in the config: the proxy listener changes at the next restart`)
  }

  #applyLimits(limits: Config['limits']): void {
    ;(this.#proxy as ProxyServer | undefined)?.applyLimits(limits) // undefined while the constructor builds the first table
  }

  /** Each route's requests and 5xx answers so far in this process (a cluster worker's answer to its primary). */
  routeTotals(): Record<string, RouteTotals> {
    const out: Record<string, RouteTotals> = {}
    for (const [id, m] of this.#holder.table.routeMetrics) out[id] = m.totals()
    return out
  }

  notReadyReason(): string | null {
    return this.#drain.notReadyReason() ?? this.sources?.notReadyReason() ?? null
  }

  #adminSources(sources: ConfigSources): AdminSources {
    return {
      notReadyReason: () => this.notReadyReason(),
      status: () => {
        const table = this.#holder.table
        const state = this.#holder.state
        return renderStatus({
          file: sources.file, config: table.config, version: table.version, table,
          inflight: state.inflight, draining: state.draining, etcd: sources.etcd?.status() ?? null,
        })
      },
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
    }
  }

  /** README "Deployment", through drain.ts: /readyz 503, serve for shutdown.delay, drain, close. Idempotent. */
  shutdown(): Promise<void> {
    return this.#drain.begin()
  }

  /**
   * Stop accepting, close idle keep-alive sockets, busy ones after their response (Connection: close);
   * resolves when in-flight requests finished or shutdown.timeout passed.
   */
  async #drainConnections(): Promise<void> {
    const state = this.#holder.state
    state.draining = true
    this.log.info({ inflight: state.inflight }, 'draining')
    const closed = this.#proxy.stopAccepting()
    const deadline = Date.now() + this.#holder.config.shutdown.timeout
    // Upgraded WebSocket connections are waited for too; those still open when the time is up get a close
    // frame 1001 (README "WebSocket").
    // A handshake in flight is a request until its 101, which registers its tunnel before it ends.
    const work = state.idle().then(() => state.tunnels.empty())
    if (await settlesBefore(work, deadline)) {
      // Nothing in flight: close what is left (connections a response left idle, or still flushing one).
      this.#proxy.endAll()
      if (!await settlesBefore(closed, deadline)) this.#proxy.destroyAll()
    } else {
      this.log.warn({ inflight: state.inflight, websockets: state.tunnels.size }, 'shutdown.timeout passed; closing remaining connections')
      await state.tunnels.goAway()
      this.#proxy.destroyAll()
    }
    await closed
  }
}
