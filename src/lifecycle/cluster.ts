// --workers N: node:cluster. The primary owns the config (reads, validates, watches routes.yaml) and the
// admin listener; workers share the proxy port and serve traffic. A reload is validated once by the
// primary and its text sent to every worker, so all workers run the same revision. A worker that dies is
// replaced (with the primary's current config). SIGTERM on the primary drains every worker (SPEC §9).
//
// With an `etcd:` section the primary also runs the etcd source (one etcd connection per instance, and
// etcd3's ~28 MB only in the primary) and sends the merged config with the text; workers never talk to etcd.
//
// Messages (IPC). A worker's first message is `hello`, sent once its listener exists: messages that reach
// a process before it listens are lost, so the primary never sends before it.
//   worker -> primary: hello | ready {revision} | applied {revision, result} | metrics {id, metrics}
//   primary -> worker: config {text, config?} | reload {text, config?} | apply {config, revision} (etcd)
//                      | shutdown | metrics {id}
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import type { AdminServer } from '../admin/admin-server.js'
import { parseAddress, startAdminServer } from '../admin/admin-server.js'
import { EtcdConfigSource } from '../etcd/source.js'
import { FileConfigSource } from './file-source.js'
import type { Config } from '../config/schema.js'
import { watchConfigFile } from './file-watch.js'
import { formatIssue } from '../errors.js'
import { Gateway, statusOf, type ReloadResult } from './gateway.js'
import { buildRouteTable, type RouteTable } from '../table/route-table.js'
import type { Logger } from '../telemetry/log.js'
import { Metrics } from '../telemetry/metrics.js'

type ToWorker =
  // `config`: the merged file + etcd config, when the primary runs an etcd source.
  | { readonly type: 'tollgate:config'; readonly text: string; readonly config?: Config }
  | { readonly type: 'tollgate:reload'; readonly text: string; readonly config?: Config }
  | { readonly type: 'tollgate:apply'; readonly config: Config; readonly revision: string }
  | { readonly type: 'tollgate:shutdown' }
  | { readonly type: 'tollgate:metrics'; readonly id: number }
type ToPrimary =
  | { readonly type: 'tollgate:hello' }
  | { readonly type: 'tollgate:ready'; readonly revision: string }
  | { readonly type: 'tollgate:applied'; readonly revision: string; readonly result: ReloadResult }
  | { readonly type: 'tollgate:metrics'; readonly id: number; readonly metrics: object[] }

function messageType(m: unknown): string | null {
  if (typeof m !== 'object' || m === null) return null
  const type = (m as { type?: unknown }).type
  return typeof type === 'string' && type.startsWith('tollgate:') ? type : null
}

/** What the primary knows about one worker process (listed in /status). */
interface WorkerState {
  readonly worker: Worker
  readonly pid: number
  /** It said hello and got the config: reloads are sent to it from now on. */
  configured: boolean
  ready: boolean
  revision: string | null
}

const METRICS_TIMEOUT_MS = 2000

export async function runPrimary(configPath: string, env: NodeJS.ProcessEnv, count: number, log: Logger): Promise<number> {
  const source = new FileConfigSource(configPath, env)
  const loaded = source.loadInitial() // ConfigError -> exit 1 before any worker starts
  for (const w of loaded.warnings) log.warn(formatIssue(w))
  for (const n of loaded.notEnforced) log.warn({ notEnforced: true }, n)
  const metrics = new Metrics({ defaultMetrics: false, data: false, control: true })
  const statusMetrics = new Metrics({ defaultMetrics: false, data: false, control: false })
  const etcd = loaded.config.etcd === undefined ? null : await EtcdConfigSource.open({ settings: loaded.config.etcd, file: loaded.config, log })
  let table: RouteTable = buildRouteTable(etcd?.config ?? loaded.config, null, statusMetrics).table
  metrics.configReloads.labels('file', 'applied').inc()
  metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
  const workers = new Map<Worker, WorkerState>()
  let allReadyOnce = false
  let shuttingDown = false
  let restarts = 0
  let recentRestarts: number[] = []
  let nextMetricsId = 0
  const metricsReplies = new Map<number, (metrics: object[] | null) => void>()

  const onMessage = (state: WorkerState, m: unknown): void => {
    switch (messageType(m)) {
      case 'tollgate:hello':
        if (shuttingDown) return void send(state.worker, { type: 'tollgate:shutdown' })
        state.configured = true
        send(state.worker, etcd === null ? { type: 'tollgate:config', text: source.text } : { type: 'tollgate:config', text: source.text, config: etcd.config })
        return
      case 'tollgate:ready': {
        state.ready = true
        state.revision = (m as ToPrimary & { type: 'tollgate:ready' }).revision
        const ready = [...workers.values()].filter((w) => w.ready).length
        if (ready >= count) allReadyOnce = true
        log.info({ worker: state.pid, revision: state.revision, ready }, 'worker ready')
        return
      }
      case 'tollgate:applied':
        state.revision = (m as ToPrimary & { type: 'tollgate:applied' }).revision
        return
      case 'tollgate:metrics': {
        const reply = m as ToPrimary & { type: 'tollgate:metrics' }
        metricsReplies.get(reply.id)?.(reply.metrics)
        return
      }
      default:
    }
  }

  const fork = (): void => {
    if (shuttingDown) return
    const worker = cluster.fork({ ...env, TOLLGATE_WORKER: '1' })
    const state: WorkerState = { worker, pid: worker.process.pid ?? 0, configured: false, ready: false, revision: null }
    workers.set(worker, state)
    worker.on('message', (m: unknown) => onMessage(state, m))
  }
  cluster.on('exit', (worker, code, signal) => {
    workers.delete(worker)
    if (shuttingDown) return
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a replacement')
    restarts++
    const now = Date.now()
    recentRestarts = recentRestarts.filter((t) => now - t < 10_000)
    recentRestarts.push(now)
    // A worker that dies at once in a loop is not restarted faster than once a second.
    setTimeout(fork, recentRestarts.length > 5 ? 1000 : 0)
  })
  for (let i = 0; i < count; i++) fork()

  /** One worker's metrics as JSON, or null when it does not answer in time (dying, stuck). */
  const metricsOf = (state: WorkerState): Promise<object[] | null> => new Promise((resolve) => {
    const id = nextMetricsId++
    const done = (value: object[] | null): void => {
      clearTimeout(timer)
      metricsReplies.delete(id)
      resolve(value)
    }
    const timer = setTimeout(done, METRICS_TIMEOUT_MS, null)
    metricsReplies.set(id, done)
    if (!send(state.worker, { type: 'tollgate:metrics', id })) done(null)
  })

  const admin: AdminServer = await startAdminServer(parseAddress(loaded.config.admin), {
    notReadyReason: () => {
      if (shuttingDown) return 'draining'
      if (etcd !== null && !etcd.isReady) return `waiting for the first full read of etcd (${etcd.status().lastError ?? 'connecting'})`
      const ready = [...workers.values()].filter((w) => w.ready).length
      // Ready once every worker started; after that a crashed worker being replaced does not take the
      // instance out of rotation while the others serve.
      if (!allReadyOnce) return `${ready} of ${count} workers ready`
      return ready === 0 ? 'no worker is ready' : null
    },
    status: () => ({
      ...(statusOf(source, table, undefined, etcd) as object),
      workers: {
        configured: count,
        ready: [...workers.values()].filter((w) => w.ready).length,
        restarts,
        processes: [...workers.values()].map((w) => ({ pid: w.pid, ready: w.ready, revision: w.revision })),
      },
    }),
    metrics: async () => {
      // Only ready workers are asked: one still starting, or one that died, must not fail the scrape.
      const answers = await Promise.all([...workers.values()].filter((w) => w.ready).map(metricsOf))
      const all = answers.filter((a): a is object[] => a !== null)
      all.push(await metrics.registry.getMetricsAsJSON())
      return { contentType: metrics.registry.contentType, body: await AggregatorRegistry.aggregate(all).metrics() }
    },
  })

  const watcher = watchConfigFile(configPath, () => {
    if (shuttingDown) return
    const outcome = source.reload()
    if (outcome.kind === 'unchanged') return
    if (outcome.kind === 'rejected') {
      metrics.configReloads.labels('file', 'rejected').inc()
      log.error({ errors: outcome.issues.map(formatIssue), revision: outcome.revision },
        `config reload rejected: ${outcome.issues.length} error(s); the previous config stays in force`)
      for (const issue of outcome.issues) log.error(formatIssue(issue))
      return
    }
    const merged = etcd?.setFile(outcome.result.config) ?? null
    if (merged !== null) metrics.configReloads.labels('etcd', 'rejected').inc(merged.newRejections.length)
    const built = buildRouteTable(merged?.config ?? outcome.result.config, table, statusMetrics)
    table = built.table
    built.commit()
    source.markApplied(outcome.text, outcome.result)
    metrics.configReloads.labels('file', 'applied').inc()
    metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
    // Workers that have not said hello yet get this text as their config when they do.
    const message: ToWorker = merged === null ? { type: 'tollgate:reload', text: outcome.text } : { type: 'tollgate:reload', text: outcome.text, config: merged.config }
    for (const state of workers.values()) if (state.configured) send(state.worker, message)
    log.info({ revision: outcome.revision }, 'config reloaded; sent to every worker')
  })

  if (etcd !== null) {
    metrics.etcdUp.set(0)
    etcd.events.on('up', (up) => metrics.etcdUp.set(up ? 1 : 0))
    etcd.events.on('update', (update) => {
      metrics.configReloads.labels('etcd', 'rejected').inc(update.newRejections.length)
      if (!update.changed || shuttingDown) return
      try {
        const built = buildRouteTable(update.config, table, statusMetrics)
        table = built.table
        built.commit()
      } catch (err) {
        metrics.configReloads.labels('etcd', 'rejected').inc()
        log.error({ err, revision: update.revision }, 'config from etcd failed to build; the previous config stays in force')
        return
      }
      metrics.configReloads.labels('etcd', 'applied').inc()
      metrics.lastReloadSuccess.labels('etcd').set(Date.now() / 1000)
      const message: ToWorker = { type: 'tollgate:apply', config: update.config, revision: String(update.revision) }
      for (const state of workers.values()) if (state.configured) send(state.worker, message)
      log.info({ source: 'etcd', revision: update.revision, routes: table.routes.size }, 'config reloaded; sent to every worker')
    })
    etcd.start()
  }

  return new Promise<number>((resolve) => {
    let signalled = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) {
        log.warn({ signal }, 'second signal: exiting now')
        process.exit(1) // workers see the IPC channel close and exit at once
      }
      signalled = true
      shuttingDown = true
      log.info({ signal }, 'shutting down workers')
      void watcher.close()
      void etcd?.close()
      const all = [...workers.values()].map((w) => w.worker)
      const limitMs = table.config.shutdown.delay + table.config.shutdown.timeout + 5000
      const exited = Promise.all(all.map((w) => new Promise<void>((r) => {
        if (w.isDead()) return r()
        w.once('exit', () => r())
        // A worker that has not said hello yet is told to stop when it does.
        send(w, { type: 'tollgate:shutdown' })
      })))
      const timer = setTimeout(() => {
        for (const w of all) if (!w.isDead()) w.process.kill('SIGKILL')
      }, limitMs)
      void exited.then(async () => {
        clearTimeout(timer)
        await admin.close()
        log.info('stopped')
        resolve(0)
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}

function send(worker: Worker, message: ToWorker): boolean {
  if (!worker.isConnected()) return false
  worker.send(message)
  return true
}

function toPrimary(message: ToPrimary): void {
  if (process.connected) process.send?.(message)
}

export async function runWorker(configPath: string, env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const metrics = new Metrics({ defaultMetrics: true, data: true, control: false })
  let gateway: Gateway | null = null
  let starting = false
  let stopping = false
  let pendingText: string | null = null // a reload that arrived while the gateway was starting
  let pendingConfig: Config | null = null // the newest merged config that arrived then (etcd)
  let resolveExit!: (code: number) => void
  const exit = new Promise<number>((r) => { resolveExit = r })

  const apply = (g: Gateway, text: string, config: Config | undefined): void => {
    const result = g.reload(text, config)
    toPrimary({ type: 'tollgate:applied', revision: g.source.revision, result })
  }
  const applyMerged = (g: Gateway, config: Config, revision: string): void => {
    const result = g.applyConfig(config, 'etcd', revision)
    toPrimary({ type: 'tollgate:applied', revision: g.source.revision, result })
  }
  const stop = (): void => {
    if (stopping) return
    stopping = true
    if (gateway === null) return resolveExit(0) // nothing served yet: nothing to drain
    gateway.shutdown().then(() => resolveExit(0), () => resolveExit(1))
  }
  const start = async (text: string, config: Config | undefined): Promise<void> => {
    starting = true
    let g: Gateway
    try {
      g = await Gateway.start({
        configPath, env, log, serveAdmin: false, watchFile: false, metrics, initialText: text,
        etcd: 'external', ...(config === undefined ? {} : { initialConfig: config }),
      })
    } catch (err) {
      log.error({ err }, 'worker failed to start')
      return resolveExit(1)
    }
    gateway = g
    if (stopping) {
      stopping = false
      return stop()
    }
    toPrimary({ type: 'tollgate:ready', revision: g.source.revision })
    if (pendingText !== null) apply(g, pendingText, pendingConfig ?? undefined)
    else if (pendingConfig !== null) applyMerged(g, pendingConfig, 'pending')
    pendingText = null
    pendingConfig = null
  }

  process.on('message', (m: unknown) => {
    switch (messageType(m)) {
      case 'tollgate:config': {
        const message = m as ToWorker & { type: 'tollgate:config' }
        if (!starting) void start(message.text, message.config)
        return
      }
      case 'tollgate:reload': {
        const { text, config } = m as ToWorker & { type: 'tollgate:reload' }
        if (gateway === null) {
          pendingText = text
          if (config !== undefined) pendingConfig = config
        } else apply(gateway, text, config)
        return
      }
      case 'tollgate:apply': {
        const { config, revision } = m as ToWorker & { type: 'tollgate:apply' }
        if (gateway === null) pendingConfig = config
        else applyMerged(gateway, config, revision)
        return
      }
      case 'tollgate:shutdown':
        return stop()
      case 'tollgate:metrics': {
        const id = (m as ToWorker & { type: 'tollgate:metrics' }).id
        metrics.registry.getMetricsAsJSON().then((json) => toPrimary({ type: 'tollgate:metrics', id, metrics: json }), () => undefined)
        return
      }
      default:
    }
  })
  // The whole process group gets ^C; the primary coordinates, so workers only drain once told.
  process.on('SIGINT', () => undefined)
  process.on('SIGTERM', stop)
  toPrimary({ type: 'tollgate:hello' })
  return exit
}
