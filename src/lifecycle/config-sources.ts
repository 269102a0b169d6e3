// Where configs come from: routes.yaml (read, validated, watched) and, with an `etcd:` section, etcd merged
// over it. The single process and the cluster primary run one each; cluster workers none (they apply what
// the primary sends). Every change goes through a ConfigApplier; this file only reads and merges.
import { EventEmitter } from 'node:events'
import type { Config } from '../config/schema.js'
import { EtcdConfigSource, type EtcdSourceOptions, type EtcdUpdate } from '../etcd/source.js'
import { ConfigError, formatIssue, type ConfigIssue } from '../errors.js'
import { loadConfigText, readConfigText, type LoadResult } from '../config/load.js'
import { pluginModules } from '../policy/plugins/plugin-modules.js'
import { superviseForPlugins } from './plugin-guard.js'
import type { HeapTrimmer } from '../telemetry/heap-trim.js'
import type { Logger } from '../telemetry/log.js'
import type { Metrics } from '../telemetry/metrics.js'
import type { ApplyResult, ConfigApplier } from './config-applier.js'
import { FileConfigSource } from './file-source.js'
import { watchConfigFile, type ConfigWatcher } from './file-watch.js'

/** Emitted after every reload attempt of the file; `revision` is that of the text read (null: unreadable). */
export interface ReloadEvent {
  readonly result: ApplyResult
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

export interface ConfigSourcesOptions {
  readonly configPath: string
  readonly env: NodeJS.ProcessEnv
  readonly log: Logger
  readonly metrics: Metrics
  readonly heapTrimmer: HeapTrimmer
  /** Watch routes.yaml and reload on change (default true). */
  readonly watchFile?: boolean
  /** Period of the stat poll that backs up the directory watch (default 2 s). */
  readonly watchPollMs?: number
  /** Timings of the etcd source (tests shorten the watchdog). */
  readonly etcdTuning?: Omit<EtcdSourceOptions, 'settings' | 'file' | 'log'>
}

export class ConfigSources {
  /** 'reload' after every file reload attempt, 'etcd' after every etcd change (tests and the primary await them). */
  readonly events = new EventEmitter<{ reload: [ReloadEvent]; etcd: [EtcdApplyEvent] }>()
  readonly file: FileConfigSource
  /** The etcd source when the file has an `etcd:` section. */
  readonly etcd: EtcdConfigSource | null
  readonly #options: ConfigSourcesOptions
  #applier: ConfigApplier | null = null
  #watcher: ConfigWatcher | null = null
  /** One watch per file of tls: in force (README "TLS": a renewed certificate is a reload). */
  readonly #tlsWatchers = new Map<string, ConfigWatcher>()
  #closed = false

  private constructor(file: FileConfigSource, etcd: EtcdConfigSource | null, options: ConfigSourcesOptions) {
    this.file = file
    this.etcd = etcd
    this.#options = options
  }

  /** Reads and validates the file (a ConfigError lists every problem) and opens etcd without waiting for it. */
  static async open(options: ConfigSourcesOptions): Promise<ConfigSources> {
    const file = new FileConfigSource(options.configPath, options.env)
    const loaded = await loadInitialWithPlugins(file, options.log)
    for (const w of loaded.warnings) options.log.warn({ where: w.where, path: w.path }, formatIssue(w))
    for (const n of loaded.notEnforced) options.log.warn({ notEnforced: true }, n)
    const settings = loaded.config.etcd
    // Starts from the snapshot (or the file alone) without waiting for etcd; /readyz says when it answered.
    const etcd = settings === undefined ? null
      : await EtcdConfigSource.open({ ...options.etcdTuning, settings, file: loaded.config, log: options.log })
    return new ConfigSources(file, etcd, options)
  }

  /** The config to start with: the file, with etcd's items merged over it. */
  get config(): Config {
    return this.etcd?.config ?? this.file.current!.config
  }

  /** Follows the file (and etcd); every change is put in force by `applier`. */
  start(applier: ConfigApplier): void {
    this.#applier = applier
    const { configPath, watchFile = true, watchPollMs, metrics } = this.#options
    if (watchFile) {
      this.#watcher = watchConfigFile(configPath, () => this.reload(), undefined, watchPollMs)
      this.#watchTlsFiles()
    }
    const etcd = this.etcd
    if (etcd !== null) {
      metrics.exposeEtcdUp()
      metrics.etcdUp.set(0)
      etcd.events.on('up', (up) => metrics.etcdUp.set(up ? 1 : 0))
      etcd.events.on('update', (update) => this.#onEtcd(applier, update))
      etcd.start()
    }
  }

  /** README "Running several instances against etcd": /readyz is 503 until the first full read of etcd. */
  notReadyReason(): string | null {
    if (this.etcd === null || this.etcd.isReady) return null
    return `waiting for the first full read of etcd (${this.etcd.status().lastError ?? 'connecting'})`
  }

  /**
   * Re-reads the file now. Never rejects: a bad file keeps the config in force. Reloads run one after
   * another: importing a changed plugin is asynchronous (README "Plugins").
   */
  reload(): Promise<ApplyResult> {
    const run = this.#reloading.then(() => this.#reloadOnce())
    this.#reloading = run
    return run
  }

  #reloading: Promise<unknown> = Promise.resolve()

  async #reloadOnce(): Promise<ApplyResult> {
    let event: ReloadEvent
    try {
      event = await this.#reload()
    } catch (err) {
      // A bug must not take the process down from a watcher callback; the config in force stays.
      this.#options.log.error({ err }, 'config reload failed; the previous config stays in force')
      event = { result: 'rejected', revision: null }
    }
    this.#options.heapTrimmer.afterLoad()
    if (this.#watcher !== null && !this.#closed) this.#watchTlsFiles()
    this.events.emit('reload', event)
    return event.result
  }

  async #reload(): Promise<ReloadEvent> {
    const applier = this.#applier
    if (this.#closed || applier === null) return { result: 'unchanged', revision: this.file.revision }
    const outcome = this.file.reload()
    if (outcome.kind === 'unchanged') return { result: 'unchanged', revision: outcome.revision }
    if (outcome.kind === 'rejected') {
      applier.reject('file', outcome.issues, outcome.revision)
      return { result: 'rejected', revision: outcome.revision }
    }
    const loaded = outcome.result
    // The plugins are imported and checked before anything is applied: a bad one rejects the whole file.
    const pluginIssues = await preparePlugins(loaded, this.file.path, this.#options.log)
    if (this.#closed) return { result: 'unchanged', revision: outcome.revision }
    if (pluginIssues.length > 0) {
      this.file.reject(pluginIssues, outcome.revision)
      applier.reject('file', pluginIssues, outcome.revision)
      return { result: 'rejected', revision: outcome.revision }
    }
    let next = loaded.config
    if (this.etcd !== null) {
      const update = this.etcd.setFile(loaded.config)
      applier.countRejectedItems(update.newRejections.length)
      next = update.config
    }
    const log = this.#options.log
    if (next.listen !== applier.config.listen || next.admin !== applier.config.admin) {
      log.warn('listen/admin changed in the file: they apply at the next restart')
    }
    if (JSON.stringify(loaded.config.etcd) !== JSON.stringify(this.file.current?.config.etcd)) {
      log.warn('the etcd section changed in the file: it applies at the next restart')
    }
    const result = applier.apply(next, 'file', outcome.revision)
    if (result !== 'applied') return { result, revision: outcome.revision }
    this.file.markApplied(outcome.text, loaded)
    for (const w of loaded.warnings) log.warn(formatIssue(w))
    for (const n of loaded.notEnforced) log.warn({ notEnforced: true }, n)
    return { result: 'applied', revision: outcome.revision }
  }

  /** Watches exactly the tls and plugin files of the config in force (they change with routes.yaml). */
  #watchTlsFiles(): void {
    const wanted = new Set([...this.file.tlsFiles(), ...this.file.pluginFiles()])
    for (const [file, watcher] of this.#tlsWatchers) {
      if (wanted.has(file)) continue
      void watcher.close()
      this.#tlsWatchers.delete(file)
    }
    for (const file of wanted) {
      if (!this.#tlsWatchers.has(file)) this.#tlsWatchers.set(file, watchConfigFile(file, () => this.reload(), undefined, this.#options.watchPollMs))
    }
  }

  #onEtcd(applier: ConfigApplier, update: EtcdUpdate): void {
    applier.countRejectedItems(update.newRejections.length)
    const applied = update.changed && !this.#closed && applier.apply(update.config, 'etcd', String(update.revision)) === 'applied'
    this.events.emit('etcd', { applied, revision: update.revision, rejected: update.newRejections.length })
  }

  /** Stops following the file and etcd (does not wait for an unreachable etcd). The config in force stays. */
  async close(): Promise<void> {
    this.#closed = true
    await this.#watcher?.close()
    for (const watcher of this.#tlsWatchers.values()) await watcher.close()
    this.#tlsWatchers.clear()
    await this.etcd?.close()
  }
}

/** The first load: the file, then its plugins; every problem of either as one ConfigError. */
async function loadInitialWithPlugins(file: FileConfigSource, log: Logger): Promise<LoadResult> {
  const text = readConfigText(file.path)
  const loaded = loadConfigText(text, file.path, file.env)
  const issues = await preparePlugins(loaded, file.path, log)
  if (issues.length > 0) throw new ConfigError(issues)
  file.markApplied(text, loaded)
  return loaded
}

/** Imports and checks the plugins of `loaded` (README "Plugins"); their problems, located in the file. */
export function preparePlugins(loaded: LoadResult, file: string, log: Logger): Promise<ConfigIssue[]> {
  if (!loaded.config.routes.some((r) => r.plugins !== undefined && r.plugins.length > 0)) return Promise.resolve([])
  pluginModules.beforeFirstImport(() => superviseForPlugins(log))
  return pluginModules.prepare(loaded.config, loaded.locate, file)
}
