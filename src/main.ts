// Start and stop: load config, build the table, wire the proxy and admin listeners, watch for reloads,
// drain on shutdown (SPEC §9). Closes in reverse order of opening.
import { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { AdminServer } from './admin/admin-server.js'
import { parseAddress, startAdminServer } from './admin/admin-server.js'
import type { Config } from './config/schema.js'
import { FileConfigSource } from './config/file-source.js'
import { parseDurationMs } from './config/units.js'
import { watchConfigFile, type ConfigWatcher } from './config/watch.js'
import { formatIssue } from './errors.js'
import { createProxyServer, type ProxyServer } from './proxy/proxy-server.js'
import { ProxyState } from './proxy/proxy-state.js'
import { buildRouteTable, type RouteTable } from './router/route-table.js'
import { createLogger, type Logger } from './telemetry/log.js'
import { Metrics } from './telemetry/metrics.js'

export interface GatewayOptions {
  readonly configPath: string
  readonly env?: NodeJS.ProcessEnv
  readonly log?: Logger
  /** false in cluster workers: the primary serves admin. */
  readonly serveAdmin?: boolean
  /** false in cluster workers: the primary watches and sends the text. */
  readonly watchFile?: boolean
  /** Period of the stat poll that backs up the directory watch (default 2 s). */
  readonly watchPollMs?: number
  readonly metrics?: Metrics
  /** Config text to start from instead of reading the file (cluster workers get the primary's). */
  readonly initialText?: string
}

export type ReloadResult = 'applied' | 'rejected' | 'unchanged'

/** Emitted after every reload attempt; `revision` is that of the text read (null when unreadable). */
export interface ReloadEvent {
  readonly result: ReloadResult
  readonly revision: string | null
}

export class Gateway {
  /** 'reload' after every reload attempt, whatever its result (tests and the cluster worker await it). */
  readonly events = new EventEmitter<{ reload: [ReloadEvent] }>()
  readonly source: FileConfigSource
  readonly metrics: Metrics
  readonly log: Logger
  readonly state: ProxyState
  readonly #proxy: ProxyServer
  #admin: AdminServer | null = null
  #watcher: ConfigWatcher | null = null
  #shuttingDown = false
  #stopped: Promise<void> | null = null
  readyzDraining = false

  private constructor(source: FileConfigSource, table: RouteTable, metrics: Metrics, log: Logger) {
    this.source = source
    this.metrics = metrics
    this.log = log
    this.state = new ProxyState(table, metrics)
    this.#proxy = createProxyServer(this.state, table.config.limits)
  }

  static async start(options: GatewayOptions): Promise<Gateway> {
    const env = options.env ?? process.env
    const log = options.log ?? createLogger(env)
    const metrics = options.metrics ?? new Metrics()
    const source = new FileConfigSource(options.configPath, env)
    const loaded = source.loadInitial(options.initialText)
    for (const w of loaded.warnings) log.warn({ where: w.where, path: w.path }, formatIssue(w))
    for (const n of loaded.notEnforced) log.warn({ notEnforced: true }, n)
    const { table } = buildRouteTable(loaded.config, null, metrics)
    metrics.configReloads.labels('file', 'applied').inc()
    metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
    const gateway = new Gateway(source, table, metrics, log)
    await gateway.#listen(table.config, options.serveAdmin ?? true)
    if (options.watchFile ?? true) gateway.#watcher = watchConfigFile(options.configPath, () => gateway.reload(), undefined, options.watchPollMs)
    log.info({ proxy: gateway.proxyAddress, admin: gateway.adminAddress, routes: table.routes.size, revision: source.revision }, 'tollgate started')
    return gateway
  }

  async #listen(config: Config, serveAdmin: boolean): Promise<void> {
    const { host, port } = parseAddress(config.listen)
    const server = this.#proxy.server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    if (serveAdmin) this.#admin = await startAdminServer(parseAddress(config.admin), this.adminSources())
  }

  get proxyAddress(): AddressInfo {
    return this.#proxy.server.address() as AddressInfo
  }

  get adminAddress(): AddressInfo | null {
    return this.#admin?.address() ?? null
  }

  get table(): RouteTable {
    return this.state.table
  }

  /** Re-read the file (or apply `text` sent by the cluster primary). Never throws; a bad file keeps the old config. */
  reload(text?: string): ReloadResult {
    let event: ReloadEvent
    try {
      event = this.#reload(text)
    } catch (err) {
      // A bug while building the table must not take the process down from a watcher callback: the old
      // table is still in force (the swap is the last step), so report it like a rejected file.
      this.metrics.configReloads.labels('file', 'rejected').inc()
      this.log.error({ err }, 'config reload failed; the previous config stays in force')
      event = { result: 'rejected', revision: null }
    }
    this.events.emit('reload', event)
    return event.result
  }

  #reload(text: string | undefined): ReloadEvent {
    if (this.#shuttingDown) return { result: 'unchanged', revision: this.source.revision }
    const outcome = this.source.reload(text)
    if (outcome.kind === 'unchanged') return { result: 'unchanged', revision: outcome.revision }
    if (outcome.kind === 'rejected') {
      this.metrics.configReloads.labels('file', 'rejected').inc()
      this.log.error({ errors: outcome.issues.map(formatIssue) }, `config reload rejected: ${outcome.issues.length} error(s); the previous config stays in force`)
      for (const issue of outcome.issues) this.log.error(formatIssue(issue))
      return { result: 'rejected', revision: outcome.revision }
    }
    const next = outcome.result.config
    const prev = this.state.table
    if (next.listen !== prev.config.listen || next.admin !== prev.config.admin) {
      this.log.warn('listen/admin changed in the file: they apply at the next restart')
    }
    const built = buildRouteTable(next, prev, this.metrics)
    this.state.table = built.table // the swap: one assignment; requests in flight keep the table they started with
    built.commit()
    this.#applyLimits(next.limits)
    this.source.markApplied(outcome.text, outcome.result)
    this.metrics.configReloads.labels('file', 'applied').inc()
    this.metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
    for (const w of outcome.result.warnings) this.log.warn(formatIssue(w))
    for (const n of outcome.result.notEnforced) this.log.warn({ notEnforced: true }, n)
    this.log.info({ revision: outcome.revision, routes: built.table.routes.size, version: built.table.version }, 'config reloaded')
    return { result: 'applied', revision: outcome.revision }
  }

  #applyLimits(limits: Config['limits']): void {
    const server = this.#proxy.server
    server.headersTimeout = parseDurationMs(limits.headersTimeout)
    server.requestTimeout = parseDurationMs(limits.requestTimeout)
    server.keepAliveTimeout = parseDurationMs(limits.keepAliveTimeout)
  }

  notReadyReason(): string | null {
    if (this.readyzDraining || this.#shuttingDown) return 'draining'
    return null
  }

  adminSources() {
    return {
      notReadyReason: () => this.notReadyReason(),
      status: () => statusOf(this.source, this.state.table, this.state),
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
    }
  }

  /**
   * SPEC §9: /readyz 503 -> serve for shutdown.delay -> stop accepting, close idle keep-alive sockets,
   * busy ones after their response (Connection: close) -> resolve when in-flight requests finish or
   * shutdown.timeout passes.
   */
  shutdown(): Promise<void> {
    if (this.#stopped !== null) return this.#stopped
    this.#stopped = this.#shutdown()
    return this.#stopped
  }

  async #shutdown(): Promise<void> {
    const config = this.state.table.config
    this.readyzDraining = true
    await this.#watcher?.close()
    const delayMs = parseDurationMs(config.shutdown.delay)
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
    this.#shuttingDown = true
    this.state.draining = true
    this.log.info({ inflight: this.state.inflight }, 'draining')
    const closed = this.#proxy.stopAccepting()
    const deadline = Date.now() + parseDurationMs(config.shutdown.timeout)
    if (await within(this.state.idle(), deadline)) {
      // Nothing in flight: close what is left (connections a response left idle, or still flushing one).
      this.#proxy.endAll()
      if (!await within(closed, deadline)) this.#proxy.destroyAll()
    } else {
      this.log.warn({ inflight: this.state.inflight }, 'shutdown.timeout passed; closing remaining connections')
      this.#proxy.destroyAll()
    }
    await closed
    await this.#admin?.close()
    await Promise.all([...this.state.table.upstreams.values()].flatMap((u) => u.pool.targets.map((t) =>
      (t.dispatcher as { destroy(): Promise<void> } | null)?.destroy().catch(() => undefined))))
    this.log.info('stopped')
  }
}

/** true when `promise` settles before `deadline` (epoch ms). */
async function within(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<false>((r) => { timer = setTimeout(r, Math.max(0, deadline - Date.now()), false) })
  try {
    return await Promise.race([promise.then(() => true), expired])
  } finally {
    clearTimeout(timer)
  }
}

export function statusOf(source: FileConfigSource, table: RouteTable, state?: ProxyState): unknown {
  return {
    config: {
      source: 'file',
      path: source.path,
      revision: source.revision,
      version: table.version,
      appliedAt: source.appliedAt?.toISOString() ?? null,
      rejected: source.rejected.map((i) => ({ where: i.where, path: i.path, reason: i.message })),
      rejectedAt: source.rejectedAt?.toISOString() ?? null,
      warnings: (source.current?.warnings ?? []).map(formatIssue),
      notEnforced: source.current?.notEnforced ?? [],
    },
    inflight: state?.inflight ?? null,
    draining: state?.draining ?? false,
    routes: table.config.routes.map((r) => ({ id: r.id, match: r.match, upstream: r.upstream, priority: r.priority })),
    upstreams: [...table.upstreams.values()].map((u) => ({
      name: u.name,
      balancer: u.pool.balancerKind,
      inflight: u.pool.inflight,
      maxConcurrent: u.pool.maxConcurrent,
      panic: u.pool.isPanicking,
      targets: u.pool.targets.map((t) => ({
        url: t.url, weight: t.weight, healthy: t.healthy, ejected: false, registered: false, inflight: t.inflight,
      })),
    })),
    breakers: {},
    limiterStore: { state: 'none' },
  }
}
