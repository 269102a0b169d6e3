// Start and stop: load config, build the table, wire the proxy and admin listeners, watch for reloads,
// drain on shutdown (SPEC §9). Closes in reverse order of opening.
import { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { AdminServer } from '../admin/admin-server.js'
import { parseAddress, startAdminServer } from '../admin/admin-server.js'
import type { Config } from '../config/schema.js'
import { EtcdConfigSource, type EtcdSourceOptions, type EtcdUpdate } from '../etcd/source.js'
import { FileConfigSource } from './file-source.js'
import { watchConfigFile, type ConfigWatcher } from './file-watch.js'
import { formatIssue } from '../errors.js'
import { createProxyServer, type ProxyServer } from '../proxy/proxy-server.js'
import { ProxyState } from '../proxy/proxy-state.js'
import { buildRouteTable, type RouteTable } from '../table/route-table.js'
import { HeapTrimmer } from '../telemetry/heap-trim.js'
import { createLogger, type Logger } from '../telemetry/log.js'
import { Metrics } from '../telemetry/metrics.js'

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
  /**
   * 'source' (default): when the config has an `etcd:` section, read and watch etcd here. 'external': a
   * cluster worker; the primary runs the etcd source and sends merged configs (initialConfig, applyConfig).
   */
  readonly etcd?: 'source' | 'external'
  /** The merged config to start from (a cluster worker of an etcd-backed primary). */
  readonly initialConfig?: Config
  /** Timings of the etcd source (tests shorten the watchdog). */
  readonly etcdTuning?: Omit<EtcdSourceOptions, 'settings' | 'file' | 'log'>
}

export type ReloadResult = 'applied' | 'rejected' | 'unchanged'

/** Emitted after every reload attempt; `revision` is that of the text read (null when unreadable). */
export interface ReloadEvent {
  readonly result: ReloadResult
  readonly revision: string | null
}

/** Emitted after every change from etcd was dealt with. */
export interface EtcdApplyEvent {
  /** The merged config changed and is in force now. */
  readonly applied: boolean
  /** etcd revision the config in force reflects. */
  readonly revision: number
  /** Items rejected in this change. */
  readonly rejected: number
}

export class Gateway {
  /** 'reload' after every reload attempt, whatever its result (tests and the cluster worker await it). */
  readonly events = new EventEmitter<{ reload: [ReloadEvent]; etcd: [EtcdApplyEvent] }>()
  readonly source: FileConfigSource
  /** The etcd source when the config has an `etcd:` section (null in cluster workers: the primary has it). */
  readonly etcd: EtcdConfigSource | null
  readonly metrics: Metrics
  readonly log: Logger
  readonly state: ProxyState
  readonly #proxy: ProxyServer
  #admin: AdminServer | null = null
  #watcher: ConfigWatcher | null = null
  #shuttingDown = false
  #stopped: Promise<void> | null = null
  /** Gives back the garbage of a large config load at once (heap-trim.ts says why). */
  readonly heapTrimmer = new HeapTrimmer()
  readyzDraining = false

  private constructor(source: FileConfigSource, etcd: EtcdConfigSource | null, table: RouteTable, metrics: Metrics, log: Logger) {
    this.source = source
    this.etcd = etcd
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
    let config = options.initialConfig ?? loaded.config
    let etcd: EtcdConfigSource | null = null
    if (loaded.config.etcd !== undefined && (options.etcd ?? 'source') === 'source') {
      // Starts from the snapshot (or the file alone) without waiting for etcd; /readyz says when it answered.
      etcd = await EtcdConfigSource.open({ ...options.etcdTuning, settings: loaded.config.etcd, file: loaded.config, log })
      config = etcd.config
    }
    const { table } = buildRouteTable(config, null, metrics)
    metrics.configReloads.labels('file', 'applied').inc()
    metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
    const gateway = new Gateway(source, etcd, table, metrics, log)
    try {
      await gateway.#listen(table.config, options.serveAdmin ?? true)
    } catch (err) {
      await etcd?.close()
      throw err
    }
    if (options.watchFile ?? true) gateway.#watcher = watchConfigFile(options.configPath, () => gateway.reload(), undefined, options.watchPollMs)
    if (etcd !== null) {
      metrics.etcdUp.set(0)
      etcd.events.on('up', (up) => metrics.etcdUp.set(up ? 1 : 0))
      etcd.events.on('update', (update) => gateway.#applyEtcd(update))
      etcd.start()
    }
    log.info({ proxy: gateway.proxyAddress, admin: gateway.adminAddress, routes: table.routes.size, revision: source.revision }, 'tollgate started')
    gateway.heapTrimmer.afterLoad()
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

  /**
   * Re-read the file (or apply `text` sent by the cluster primary, with `merged`, the config the primary
   * made of it and etcd). Never throws; a bad file keeps the old config.
   */
  reload(text?: string, merged?: Config): ReloadResult {
    let event: ReloadEvent
    try {
      event = this.#reload(text, merged)
    } catch (err) {
      // A bug while building the table must not take the process down from a watcher callback: the old
      // table is still in force (the swap is the last step), so report it like a rejected file.
      this.metrics.configReloads.labels('file', 'rejected').inc()
      this.log.error({ err }, 'config reload failed; the previous config stays in force')
      event = { result: 'rejected', revision: null }
    }
    this.heapTrimmer.afterLoad()
    this.events.emit('reload', event)
    return event.result
  }

  #reload(text: string | undefined, merged: Config | undefined): ReloadEvent {
    if (this.#shuttingDown) return { result: 'unchanged', revision: this.source.revision }
    const outcome = this.source.reload(text)
    if (outcome.kind === 'unchanged') {
      if (merged !== undefined) this.applyConfig(merged, 'file', outcome.revision)
      return { result: 'unchanged', revision: outcome.revision }
    }
    if (outcome.kind === 'rejected') {
      this.metrics.configReloads.labels('file', 'rejected').inc()
      this.log.error({ errors: outcome.issues.map(formatIssue) }, `config reload rejected: ${outcome.issues.length} error(s); the previous config stays in force`)
      for (const issue of outcome.issues) this.log.error(formatIssue(issue))
      return { result: 'rejected', revision: outcome.revision }
    }
    let next = merged ?? outcome.result.config
    if (merged === undefined && this.etcd !== null) {
      const update = this.etcd.setFile(outcome.result.config)
      this.metrics.configReloads.labels('etcd', 'rejected').inc(update.newRejections.length)
      next = update.config
    }
    const prev = this.state.table
    if (next.listen !== prev.config.listen || next.admin !== prev.config.admin) {
      this.log.warn('listen/admin changed in the file: they apply at the next restart')
    }
    if (JSON.stringify(outcome.result.config.etcd) !== JSON.stringify(this.source.current?.config.etcd)) {
      this.log.warn('the etcd section changed in the file: it applies at the next restart')
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

  /** An update from the etcd source: build and swap when the merged config changed. */
  #applyEtcd(update: EtcdUpdate): void {
    this.metrics.configReloads.labels('etcd', 'rejected').inc(update.newRejections.length)
    let applied = false
    if (update.changed && !this.#shuttingDown) {
      applied = this.applyConfig(update.config, 'etcd', String(update.revision)) === 'applied'
    }
    this.events.emit('etcd', { applied, revision: update.revision, rejected: update.newRejections.length })
  }

  /**
   * Puts a merged config in force (from etcd, or sent by the cluster primary). Never throws: a failure
   * to build keeps the table in force.
   */
  applyConfig(config: Config, source: 'etcd' | 'file', revision: string): ReloadResult {
    if (this.#shuttingDown) return 'unchanged'
    const prev = this.state.table
    if (config === prev.config) return 'unchanged'
    try {
      const built = buildRouteTable(config, prev, this.metrics)
      this.state.table = built.table
      built.commit()
      this.metrics.configReloads.labels(source, 'applied').inc()
      this.metrics.lastReloadSuccess.labels(source).set(Date.now() / 1000)
      this.log.info({ source, revision, routes: built.table.routes.size, version: built.table.version }, 'config reloaded')
      return 'applied'
    } catch (err) {
      this.metrics.configReloads.labels(source, 'rejected').inc()
      this.log.error({ err, source, revision }, 'config reload failed; the previous config stays in force')
      return 'rejected'
    } finally {
      this.heapTrimmer.afterLoad()
    }
  }

  #applyLimits(limits: Config['limits']): void {
    const server = this.#proxy.server
    server.headersTimeout = limits.headersTimeout
    server.requestTimeout = limits.requestTimeout
    server.keepAliveTimeout = limits.keepAliveTimeout
  }

  notReadyReason(): string | null {
    if (this.readyzDraining || this.#shuttingDown) return 'draining'
    if (this.etcd !== null && !this.etcd.isReady) return `waiting for the first full read of etcd (${this.etcd.status().lastError ?? 'connecting'})`
    return null
  }

  adminSources() {
    return {
      notReadyReason: () => this.notReadyReason(),
      status: () => statusOf(this.source, this.state.table, this.state, this.etcd),
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
    await this.etcd?.close() // config is frozen from here on; does not wait for an unreachable etcd
    const delayMs = config.shutdown.delay
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs))
    this.#shuttingDown = true
    this.state.draining = true
    this.log.info({ inflight: this.state.inflight }, 'draining')
    const closed = this.#proxy.stopAccepting()
    const deadline = Date.now() + config.shutdown.timeout
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
    await this.state.table.close()
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

export function statusOf(source: FileConfigSource, table: RouteTable, state?: ProxyState, etcd?: EtcdConfigSource | null): unknown {
  const etcdStatus = etcd?.status() ?? null
  const registered = new Set<string>()
  for (const r of etcdStatus?.registrations ?? []) if (r.attached) registered.add(`${r.upstream} ${new URL(r.url).origin}`)
  return {
    config: {
      source: etcdStatus === null ? 'file' : 'file+etcd',
      path: source.path,
      revision: source.revision,
      version: table.version,
      appliedAt: source.appliedAt?.toISOString() ?? null,
      rejected: [
        ...source.rejected.map((i) => ({ where: i.where, path: i.path, reason: i.message })),
        ...(etcdStatus?.rejected ?? []).map((r) => ({
          where: `etcd ${r.key} (rev ${r.revision})`, path: '', reason: r.reason, key: r.key, revision: r.revision, keptRevision: r.keptRevision,
        })),
      ],
      rejectedAt: source.rejectedAt?.toISOString() ?? null,
      warnings: (source.current?.warnings ?? []).map(formatIssue),
      notEnforced: source.current?.notEnforced ?? [],
      etcd: etcdStatus === null ? null : { ...etcdStatus, rejected: undefined },
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
        url: t.url, weight: t.weight, healthy: t.healthy, ejected: false, registered: registered.has(`${u.name} ${t.origin}`), inflight: t.inflight,
      })),
    })),
    breakers: {},
    limiterStore: { state: 'none' },
  }
}
