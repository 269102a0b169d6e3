// The one way a validated config goes into service: build -> swap -> commit -> count -> log. Used by the
// single process, each cluster worker (configs the primary sends) and the primary itself (which keeps the
// config alone, no table: its workers hold the connection pools).
//
// Nothing here parses or validates: a config arrives validated and frozen (config/load.ts, or the etcd
// source's merge). A build failure is a bug, not a bad config; it is counted and logged as a rejection and
// the config in force stays, because the swap comes after the build.
import type { Config } from '../config/schema.js'
import { formatIssue, type ConfigIssue } from '../errors.js'
import type { HeapTrimmer } from '../telemetry/heap-trim.js'
import type { Logger } from '../telemetry/log.js'
import type { Metrics } from '../telemetry/metrics.js'

/** Where a config came from: the `source` label of tollgate_config_reloads_total (README "Admin endpoints and metrics"). */
export type ConfigOrigin = 'file' | 'etcd'

export type ApplyResult = 'applied' | 'rejected' | 'unchanged'

/** What holds the config in force: the proxy's route table (table-holder.ts), or the primary's config. */
export interface ConfigHolder {
  readonly config: Config
  /** Builds what serves `next` without putting it in service. */
  build(next: Config): BuiltConfig
}

export interface BuiltConfig {
  readonly version: number
  readonly routes: number
  /** Puts it in service in one step; requests in flight keep what they started with. */
  swap(): void
  /** Right after the swap: releases what only the previous version used. */
  commit(): void
}

export class ConfigApplier {
  readonly #holder: ConfigHolder
  readonly #metrics: Metrics
  readonly #log: Logger
  readonly #heapTrimmer: HeapTrimmer | null
  #isOpen: () => boolean = () => true

  constructor(holder: ConfigHolder, metrics: Metrics, log: Logger, heapTrimmer: HeapTrimmer | null = null) {
    this.#holder = holder
    this.#metrics = metrics
    this.#log = log
    this.#heapTrimmer = heapTrimmer
  }

  get config(): Config {
    return this.#holder.config
  }

  /** From now on every apply() answers 'unchanged' while `isOpen` is false (shutdown: drain.ts). */
  gate(isOpen: () => boolean): void {
    this.#isOpen = isOpen
  }

  /** The config the holder was made with is in force: count it like an applied one. */
  started(origin: ConfigOrigin): void {
    this.#countApplied(origin)
  }

  /** build -> swap -> commit -> count -> log. Never throws. */
  apply(config: Config, origin: ConfigOrigin, revision: string): ApplyResult {
    if (!this.#isOpen() || config === this.#holder.config) return 'unchanged'
    try {
      const built = this.#holder.build(config)
      built.swap()
      built.commit()
      this.#countApplied(origin)
      this.#log.info({ source: origin, revision, routes: built.routes, version: built.version }, 'config reloaded')
      return 'applied'
    } catch (err) {
      this.#metrics.configReloads.labels(origin, 'rejected').inc()
      this.#log.error({ err, source: origin, revision }, 'config reload failed; the previous config stays in force')
      return 'rejected'
    } finally {
      this.#heapTrimmer?.afterLoad()
    }
  }

  /** A config its source refused (invalid file): counted and logged, every reason on its own line too. */
  reject(origin: ConfigOrigin, issues: readonly ConfigIssue[], revision: string | null): void {
    this.#metrics.configReloads.labels(origin, 'rejected').inc()
    this.#log.error({ source: origin, revision, errors: issues.map(formatIssue) },
      `config reload rejected: ${issues.length} error(s); the previous config stays in force`)
    for (const issue of issues) this.#log.error(formatIssue(issue))
  }

  /** etcd items rejected on their own (the etcd source logged each); the rest of the change still applies. */
  countRejectedItems(count: number): void {
    if (count > 0) this.#metrics.configReloads.labels('etcd', 'rejected').inc(count)
  }

  #countApplied(origin: ConfigOrigin): void {
    this.#metrics.configReloads.labels(origin, 'applied').inc()
    this.#metrics.lastReloadSuccess.labels(origin).set(Date.now() / 1000)
  }
}
