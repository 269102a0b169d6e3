// etcd as a live config source (README.md "Running several instances against etcd"): read the prefix,
// watch it, and hand the merged config to the caller whenever what is in force changes. Robustness is the
// point; the failure modes are etcd's and microsoft/etcd3's (etcd-io/etcd#8668, microsoft/etcd3#72,
// apache/apisix#13067 for a gateway that lost changes):
//
//   connecting ──full read ok──> watching ──watch canceled (compaction) / watchdog──> connecting
//       ^  └─fails: back-off (jittered, capped), etcd_up 0, one warning per 10 s        │
//       └───────────────────────────────────────────────────────────────────────────────┘
//
// - Full read: the whole prefix, paginated, every page at the first page's revision R; then watch from
//   R + 1 (etcd-watch.ts). Keys missing from a full read are deletions.
// - Our revision only moves with events of our prefix and with progress notifications, never on a
//   timeout or a reconnect (apache/apisix#13067). A read that runs beside a watch and comes back older
//   than what the watch applied meanwhile is ignored.
// - The snapshot (snapshot.ts) serves only until etcd answers the first full read, and that read replaces
//   it whatever its revision: a live etcd always wins over a file on disk.
// - "The same etcd" is the same cluster id (etcd's response header) and a revision that never goes back.
//   A read that shows another cluster id, or a revision lower than one we had before it started (reads
//   are linearizable, so the same etcd cannot answer older), means etcd was replaced, wiped or restored
//   from a backup: we drop everything we had, the snapshot's items included (none of them is a "last good
//   version" of what this etcd holds), log it once, take etcd's items, and watch from etcd's revision.
//   The watchdog makes the same check while watching. A wiped or restored etcd of the same cluster id
//   that has since gone past our revision cannot be told apart; its full read still replaces every item,
//   deletes included, and only an item it holds in an invalid version keeps the version we had.
// - etcd3 reconnects a broken watch stream itself (from our revision); then we read everything again and
//   apply what changed. A watch that ends (canceled by etcd, or the watchdog) costs the client: a new
//   one, with new connections, does a full read and watches again.
import { EventEmitter } from 'node:events'
import { resolve } from 'node:path'
import type { Etcd3, IOptions, IWatchResponse } from 'etcd3'
import type { ConfigIssue } from '../errors.js'
import { describeEtcdError, etcdClientOptions, loadEtcd3, readPrefix, type Etcd3Module } from './client.js'
import { EtcdItems, type EtcdEntry, type EtcdRejection, type Registration } from './items.js'
import { etcdWhere, keyPrefix } from './keys.js'
import { readEtcdSnapshot, SnapshotWriter } from './snapshot.js'
import { watchPrefix } from './watch.js'
import type { Config } from '../config/schema.js'
import { equalJitterMs, fullJitterMs } from '../lib/backoff.js'

export type EtcdSettings = NonNullable<Config['etcd']>

/** The part of a pino logger this file uses. */
export interface EtcdSourceLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface EtcdSourceOptions {
  readonly settings: EtcdSettings
  /** The file's config, validated: the base the etcd items merge into. */
  readonly file: Config
  readonly log: EtcdSourceLog
  /** Period of the watchdog read. Default 5 s. */
  readonly watchdogMs?: number
  /** Deadline of the watchdog read. Default 3 s. */
  readonly probeTimeoutMs?: number
  /** Keys per page of a full read. Default 256. */
  readonly pageSize?: number
  /** Reconnect back-off: full jitter, exponential from base to cap. Defaults 250 ms, 3 s. */
  readonly retryBaseMs?: number
  readonly retryCapMs?: number
  /** At most one warning about etcd being unreachable per this period. Default 10 s. */
  readonly warnEveryMs?: number
  /** Deadline of other unary calls. Default 5 s. */
  readonly callTimeoutMs?: number
}

/** What happened to the config in force; emitted whenever it changed or an etcd item was rejected. */
export interface EtcdUpdate {
  readonly config: Config
  /** The merged config differs from the one before this update. */
  readonly changed: boolean
  /** etcd revision this config reflects. */
  readonly revision: number
  readonly cause: 'read' | 'watch' | 'file'
  readonly newRejections: readonly EtcdRejection[]
  readonly warnings: readonly ConfigIssue[]
}

export interface EtcdStatus {
  readonly endpoints: readonly string[]
  readonly prefix: string
  readonly up: boolean
  /** The first full read is done (until then /readyz is 503). */
  readonly ready: boolean
  readonly startedFrom: 'snapshot' | 'file'
  readonly revision: number
  /** etcd's cluster id of the items in force (the snapshot's until the first full read; null if unknown). */
  readonly clusterId: string | null
  readonly appliedAt: string | null
  readonly lastError: string | null
  readonly lastErrorAt: string | null
  readonly resyncs: number
  readonly lastResync: { readonly at: string; readonly reason: string } | null
  readonly snapshot: { readonly path: string; readonly writtenAt: string | null; readonly error: string | null }
  readonly rejected: readonly EtcdRejection[]
  readonly registrations: readonly Registration[]
}

export class EtcdConfigSource {
  readonly events = new EventEmitter<{ update: [EtcdUpdate]; up: [boolean]; ready: [] }>()
  readonly settings: EtcdSettings
  readonly #etcd3: Etcd3Module
  readonly #clientOptions: IOptions
  readonly #log: EtcdSourceLog
  readonly #items: EtcdItems
  readonly #prefix: string
  readonly #snapshot: SnapshotWriter
  readonly #startedFrom: 'snapshot' | 'file'
  readonly #watchdogMs: number
  readonly #probeTimeoutMs: number
  readonly #pageSize: number
  readonly #retryBaseMs: number
  readonly #retryCapMs: number
  readonly #warnEveryMs: number
  #file: Config
  /** Cluster id of the etcd our items came from (the snapshot's, then each applied full read's). */
  #clusterId: string | null = null
  #config: Config
  #configJson: string
  /** What the snapshot file holds (cluster id and items in force), to write it only when that changes. */
  #snapshotJson: string
  #appliedAt: Date | null = null
  #up = false
  #ready = false
  #closed = false
  #loop: Promise<void> | null = null
  #wake: (() => void) | null = null
  #endWatch: ((reason: string) => void) | null = null
  #client: Etcd3 | null = null
  #pendingMerge: NodeJS.Immediate | null = null
  #lastError: string | null = null
  #lastErrorAt: Date | null = null
  #lastWarnMs = -Infinity
  #suppressedWarnings = 0
  #resyncs = 0
  #lastResync: { at: Date; reason: string } | null = null

  private constructor(etcd3: Etcd3Module, options: EtcdSourceOptions) {
    this.#etcd3 = etcd3
    this.settings = options.settings
    this.#log = options.log
    this.#file = options.file
    this.#prefix = keyPrefix(options.settings.prefix)
    this.#items = new EtcdItems(options.settings.prefix)
    this.#watchdogMs = options.watchdogMs ?? 5_000
    this.#probeTimeoutMs = options.probeTimeoutMs ?? 3_000
    this.#pageSize = options.pageSize ?? 256
    this.#retryBaseMs = options.retryBaseMs ?? 250
    this.#retryCapMs = options.retryCapMs ?? 3_000
    this.#warnEveryMs = options.warnEveryMs ?? 10_000
    this.#clientOptions = etcdClientOptions(options.settings, { callTimeoutMs: options.callTimeoutMs ?? 5_000 })
    this.#snapshot = new SnapshotWriter(resolve(options.settings.snapshotFile),
      (message) => this.#log.warn({}, `etcd: snapshotFile: ${message}; starting without etcd will fall back to the file alone`))
    this.#snapshot.prepare()
    const read = readEtcdSnapshot(this.#snapshot.path, options.settings.prefix)
    if (read.kind === 'loaded') {
      this.#items.loadSnapshot(read.snapshot.items, read.snapshot.revision)
      this.#clusterId = read.snapshot.clusterId ?? null
      this.#startedFrom = 'snapshot'
      this.#log.info({ snapshot: this.#snapshot.path, revision: read.snapshot.revision, writtenAt: read.snapshot.writtenAt, items: read.snapshot.items.length },
        'etcd: starting from the snapshot until etcd answers')
    } else {
      if (read.kind === 'unusable') this.#log.warn({ snapshot: this.#snapshot.path }, `etcd: snapshot not used: ${read.reason}`)
      this.#startedFrom = 'file'
    }
    const merged = this.#items.merge(this.#file)
    this.#config = merged.config
    this.#configJson = JSON.stringify(merged.config)
    this.#snapshotJson = JSON.stringify([this.#clusterId, this.#items.inForce()])
  }

  /** Loads etcd3 and the snapshot; does not connect yet (start() does). Throws on unreadable TLS files. */
  static async open(options: EtcdSourceOptions): Promise<EtcdConfigSource> {
    const etcd3 = await loadEtcd3()
    return new EtcdConfigSource(etcd3, options)
  }

  /** The merged config in force. */
  get config(): Config {
    return this.#config
  }

  get isReady(): boolean {
    return this.#ready
  }

  get isUp(): boolean {
    return this.#up
  }

  get revision(): number {
    return this.#items.revision
  }

  get rejections(): readonly EtcdRejection[] {
    return this.#items.rejections
  }

  /** Connects, reads, watches; keeps at it until close(). */
  start(): void {
    this.#loop ??= this.#run()
  }

  /** The file was reloaded: merge the etcd items into its config. */
  setFile(file: Config): EtcdUpdate {
    this.#file = file
    return this.#merge('file')
  }

  status(): EtcdStatus {
    return {
      endpoints: this.settings.endpoints,
      prefix: this.settings.prefix,
      up: this.#up,
      ready: this.#ready,
      startedFrom: this.#startedFrom,
      revision: this.#items.revision,
      clusterId: this.#clusterId,
      appliedAt: this.#appliedAt?.toISOString() ?? null,
      lastError: this.#lastError,
      lastErrorAt: this.#lastErrorAt?.toISOString() ?? null,
      resyncs: this.#resyncs,
      lastResync: this.#lastResync === null ? null : { at: this.#lastResync.at.toISOString(), reason: this.#lastResync.reason },
      snapshot: { path: this.#snapshot.path, writtenAt: this.#snapshot.writtenAt?.toISOString() ?? null, error: this.#snapshot.lastError },
      rejected: this.#items.rejections,
      registrations: this.#items.registrations(this.#config),
    }
  }

  /** Stops watching. Does not wait for an unreachable etcd: shutdown works with etcd down (README "Deployment"). */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#pendingMerge !== null) clearImmediate(this.#pendingMerge)
    this.#endWatch?.('closing')
    this.#wake?.()
    if (this.#client !== null) closeClient(this.#client)
    if (this.#loop !== null) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.#loop, new Promise((r) => { timer = setTimeout(r, 1_000) })])
      clearTimeout(timer)
    }
    await this.#snapshot.flush()
  }

  // ---- the loop -----------------------------------------------------------------------------------------

  async #run(): Promise<void> {
    let failures = 0
    while (!this.#closed) {
      const client = new this.#etcd3.Etcd3(this.#clientOptions)
      this.#client = client
      let watchedMs = 0
      try {
        await this.#fullRead(client)
        failures = 0
        this.#setUp(true)
        if (!this.#ready) {
          this.#ready = true
          this.#log.info({ revision: this.#items.revision, routes: this.#config.routes.length }, 'etcd: first full read done')
          this.events.emit('ready')
        }
        const startedMs = Date.now()
        const reason = await this.#watch(client)
        watchedMs = Date.now() - startedMs
        if (!this.#closed) {
          this.#resyncs++
          this.#lastResync = { at: new Date(), reason }
          this.#log.warn({ revision: this.#items.revision }, `etcd: ${reason}; reading the prefix again`)
        }
      } catch (err) {
        if (!this.#closed) {
          failures++
          this.#failed(err)
        }
      } finally {
        this.#client = null
        closeClient(client)
      }
      if (this.#closed) break
      // A watch that ends at once every time (etcd cancels it over and over) backs off like a failure.
      if (watchedMs > 0 && watchedMs < 1_000) failures++
      await this.#sleep(this.#backoffMs(failures))
    }
    this.#setUp(false)
  }

  #backoffMs(failures: number): number {
    return failures === 0 ? fullJitterMs(0, this.#retryBaseMs, this.#retryCapMs) : equalJitterMs(failures - 1, this.#retryBaseMs, this.#retryCapMs)
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((done) => {
      const timer = setTimeout(() => {
        this.#wake = null
        done()
      }, ms)
      this.#wake = () => {
        clearTimeout(timer)
        this.#wake = null
        done()
      }
    })
  }

  /**
   * Reads the whole prefix at one revision and applies it, replacing every item (the snapshot's too).
   * `duringWatch`: a watch on this client runs on (a reconnect's check). Returns false when not applied.
   */
  async #fullRead(client: Etcd3, duringWatch = false): Promise<boolean> {
    const before = this.#items.revision
    const read = await readPrefix(client, this.#prefix, this.#pageSize)
    if (this.#closed) return false
    const replaced = this.#replacedBy(read.clusterId, read.revision, before)
    if (replaced !== null) {
      // The watch follows the etcd we had: end it, and the loop reads again with no watch beside it.
      if (duringWatch) {
        this.#endWatch?.(replaced)
        return false
      }
      this.#log.warn({ clusterId: read.clusterId, revision: read.revision }, `etcd: ${replaced}; serving etcd's items`)
      this.#items.forget()
      this.#snapshotJson = '' // the snapshot is rewritten for this etcd even if its items look the same
    } else if (duringWatch && read.revision < this.#items.revision) {
      // The watch got further than this read while it ran: what the read knows is in force already.
      return false
    }
    this.#clusterId = read.clusterId
    this.#items.replaceAll(read.entries, read.revision)
    this.#merge('read')
    return true
  }

  /**
   * Why etcd answering with `clusterId` at `revision` is not the etcd our items came from, or null. `before`
   * is our revision when the request was sent: a linearizable answer from the same etcd is never older.
   */
  #replacedBy(clusterId: string, revision: number, before: number): string | null {
    if (revision < before) return `etcd revision went back from ${before} to ${revision}: etcd was replaced or restored`
    if (this.#clusterId !== null && clusterId !== this.#clusterId) return `etcd's cluster id changed from ${this.#clusterId} to ${clusterId}: etcd was replaced`
    return null
  }

  /** Watches from our revision + 1 until the watch has to be replaced; resolves with the reason. */
  #watch(client: Etcd3): Promise<string> {
    let verifying = false
    const watch = watchPrefix(client, this.#prefix, { watchdogMs: this.#watchdogMs, probeTimeoutMs: this.#probeTimeoutMs }, {
      revision: () => this.#items.revision,
      keyCount: () => this.#items.keyCount,
      onResponse: (res) => this.#onWatchData(res),
      onDisconnected: (err) => this.#failed(err),
      onReconnected: () => {
        this.#setUp(true)
        this.#log.info({ revision: this.#items.revision }, 'etcd: watch reconnected; reading the prefix again')
        if (verifying) return
        verifying = true
        this.#fullRead(client, true).catch(() => undefined).finally(() => { verifying = false })
      },
      onProbeFailed: (err) => this.#failed(err),
      replacedBy: (clusterId, revision, before) => this.#replacedBy(clusterId, revision, before),
    })
    this.#endWatch = watch.end
    if (this.#closed) watch.end('closing')
    return watch.ended.finally(() => { this.#endWatch = null })
  }

  #onWatchData(res: IWatchResponse): void {
    if (res.events.length === 0) {
      // A progress notification: every event up to header.revision has been sent.
      if (!res.created && !res.canceled) {
        const revision = Number(res.header.revision)
        if (revision > this.#items.revision) this.#items.revision = revision
      }
      return
    }
    const entries: EtcdEntry[] = []
    for (const ev of res.events) {
      const modRevision = Number(ev.kv.mod_revision)
      // Already known from a full read that ran at a later revision.
      if (modRevision <= this.#items.revision) continue
      entries.push({ key: ev.kv.key.toString(), value: ev.type === 'Delete' ? null : ev.kv.value.toString(), modRevision })
    }
    if (entries.length === 0) return
    this.#items.apply(entries)
    // Responses that arrive together are merged once.
    this.#pendingMerge ??= setImmediate(() => {
      this.#pendingMerge = null
      try {
        this.#merge('watch')
      } catch (err) {
        this.#log.error({ err }, 'etcd: failed to merge the etcd items; the previous config stays in force')
      }
    })
  }

  #merge(cause: EtcdUpdate['cause']): EtcdUpdate {
    if (this.#pendingMerge !== null && cause !== 'watch') {
      clearImmediate(this.#pendingMerge)
      this.#pendingMerge = null
    }
    const result = this.#items.merge(this.#file)
    const json = JSON.stringify(result.config)
    const changed = json !== this.#configJson
    if (changed) {
      this.#config = result.config
      this.#configJson = json
      this.#appliedAt = new Date()
    }
    const inForce = this.#items.inForce()
    const snapshotJson = JSON.stringify([this.#clusterId, inForce])
    if (snapshotJson !== this.#snapshotJson) {
      this.#snapshotJson = snapshotJson
      this.#snapshot.write({
        version: 1, prefix: this.settings.prefix, revision: this.#items.revision, clusterId: this.#clusterId, writtenAt: new Date().toISOString(), items: inForce,
      })
    }
    for (const r of result.newRejections) {
      this.#log.error({ key: r.key, revision: r.revision, reason: r.reason },
        `${etcdWhere(r.key, r.revision)}: ${r.reason}; ${r.keptRevision === null ? 'nothing from this key is in force' : `keeping the previous version (rev ${r.keptRevision})`}`)
    }
    const update: EtcdUpdate = { config: this.#config, changed, revision: this.#items.revision, cause, newRejections: result.newRejections, warnings: result.warnings }
    // setFile's caller applies the result itself.
    if (cause !== 'file' && (changed || result.newRejections.length > 0)) this.events.emit('update', update)
    return update
  }

  #setUp(up: boolean): void {
    if (up === this.#up) return
    this.#up = up
    if (up && this.#lastError !== null) this.#log.info({ revision: this.#items.revision }, 'etcd: connection restored')
    this.events.emit('up', up)
  }

  /** etcd is unreachable or refused: etcd_up 0, one warning per warnEveryMs at most. */
  #failed(err: unknown): void {
    this.#setUp(false)
    this.#lastError = describeEtcdError(err)
    this.#lastErrorAt = new Date()
    const now = Date.now()
    if (now - this.#lastWarnMs < this.#warnEveryMs) {
      this.#suppressedWarnings++
      return
    }
    this.#lastWarnMs = now
    const suppressed = this.#suppressedWarnings
    this.#suppressedWarnings = 0
    this.#log.warn({ endpoints: this.settings.endpoints, suppressed, revision: this.#items.revision },
      `etcd: ${this.#lastError}; serving the last good config and retrying`)
  }
}

function closeClient(client: Etcd3): void {
  try {
    client.close()
  } catch {
    // already closed
  }
}
