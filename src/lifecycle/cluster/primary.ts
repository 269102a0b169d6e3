// --workers N: the node:cluster primary. It owns the config (reads, validates and watches routes.yaml, runs
// the etcd source) and the admin listener; workers share the proxy port and serve traffic. A config is
// validated once, here, and the Config object sent to every worker, so all workers run the same revision
// and none parses YAML. A worker that dies is replaced (with the config in force). SIGTERM drains every
// worker (README "Deployment").
//
// The primary holds no route table and no connection pool: it keeps the config alone (ConfigRecord below),
// and renders /status from it. With an `etcd:` section, the one etcd connection of the instance (and
// etcd3's ~28 MB) is here too.
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import { startAdminServer, type AdminServer } from '../../admin/admin-server.js'
import { renderStatus, sumRouteTotals, type RouteTotalsById } from '../../admin/status.js'
import type { Config } from '../../config/schema.js'
import { HeapTrimmer } from '../../telemetry/heap-trim.js'
import { applyLogSettings, type Logger } from '../../telemetry/log.js'
import { Metrics } from '../../telemetry/metrics.js'
import { ConfigApplier, type BuiltConfig, type ConfigHolder, type ConfigOrigin } from '../config-applier.js'
import { ConfigSources } from '../config-sources.js'
import { Drain } from '../drain.js'
import { handleReloadSignal, handleShutdownSignals } from '../signals.js'
import { sendToWorker, toPrimary, type ToWorker } from './messages.js'
import { createProbeSet } from '../health-probes.js'
import { listenAddress } from '../../lib/host-port.js'

/** The primary's ConfigHolder: the config in force and its version, nothing built from it. */
class ConfigRecord implements ConfigHolder {
  config: Config
  version = 1
  readonly #log: Logger

  /** Puts the config's log: section in force for the primary's own lines (each worker does so for its own). */
  constructor(config: Config, log: Logger) {
    this.config = config
    this.#log = log
    applyLogSettings(log, config.log)
  }

  build(next: Config): BuiltConfig {
    const version = this.version + 1
    return {
      version,
      routes: next.routes.length,
      swap: () => {
        this.config = next
        this.version = version
        applyLogSettings(this.#log, next.log)
      },
      commit: () => undefined,
    }
  }
}

/** What the primary knows about one worker process (listed in /status). */
interface WorkerState {
  readonly worker: Worker
  readonly pid: number
  /** It said hello and got the config: later configs are sent to it. */
  configured: boolean
  ready: boolean
  revision: string | null
  /** Its metrics at the last scrape it answered: stand in when it does not answer, kept when it dies. */
  lastMetrics: object[] | null
  /** Its route counts at the last /status it answered (the same way). */
  lastTotals: RouteTotalsById | null
}

/**
 * The counters and histograms of a metrics snapshot (prom-client JSON): what may only grow. A dead worker's
 * are kept in the sum, so the primary's /metrics never goes backwards (Prometheus would read a counter
 * reset, and rate() a spike); its gauges (in flight, keys held) go with it.
 */
function monotonicOf(snapshot: readonly object[]): object[] {
  return snapshot.filter((m) => {
    const type = (m as { type?: string }).type
    return type === 'counter' || type === 'histogram'
  })
}

const METRICS_TIMEOUT_MS = 2000
/** /status waits this long for a worker's route counts, then uses its last answer. */
const TOTALS_TIMEOUT_MS = 1000

export interface PrimaryOptions {
  readonly configPath: string
  readonly env: NodeJS.ProcessEnv
  readonly count: number
  readonly log: Logger
}

export async function runPrimary(options: PrimaryOptions): Promise<number> {
  const { configPath, env, count, log } = options
  const metrics = new Metrics({ defaultMetrics: false, data: false, control: true })
  const heapTrimmer = new HeapTrimmer()
  // A ConfigError here means exit 1 before any worker starts.
  const sources = await ConfigSources.open({ configPath, env, log, metrics, heapTrimmer })
  const record = new ConfigRecord(sources.config, log)
  const applier = new ConfigApplier(record, metrics, log, heapTrimmer)
  applier.started('file')
  const workers = new Map<Worker, WorkerState>()
  let allReadyOnce = false
  let restarts = 0
  let recentRestarts: number[] = []
  let nextMetricsId = 0
  const metricsReplies = new Map<number, (metrics: object[] | null) => void>()
  const totalsReplies = new Map<number, (totals: RouteTotalsById | null) => void>()
  /** The route counts of every worker that died, summed: the sum on /status does not go back when one does. */
  let retiredTotals: RouteTotalsById = {}
  const readyCount = (): number => [...workers.values()].filter((w) => w.ready).length
  // Active health checks run here, once per instance, never in the workers: each change of a target's state
  // goes to every configured worker; a worker that says hello gets every state after its config (README
  // "Health checks"). Passive ejection stays in each worker.
  const probes = createProbeSet(metrics, (report, previous) => {
    if (previous === report.state) return
    const message: ToWorker = { type: 'tollgate:health', reports: [report] }
    for (const state of workers.values()) if (state.configured) sendToWorker(state.worker, message)
  })
  const configMessage = (origin: ConfigOrigin): ToWorker =>
    ({ type: 'tollgate:config', config: record.config, origin, revision: sources.file.revision })

  /** The workers' exit: told to drain, then killed if they outlive shutdown.delay + timeout (+ 5 s). */
  const stopWorkers = async (): Promise<void> => {
    const all = [...workers.values()].map((w) => w.worker)
    const { delay, timeout } = record.config.shutdown
    const timer = setTimeout(() => {
      for (const w of all) if (!w.isDead()) w.process.kill('SIGKILL')
    }, delay + timeout + 5000)
    await Promise.all(all.map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) return resolve()
      w.once('exit', () => resolve())
      // A worker that has not said hello yet is told to stop when it does.
      sendToWorker(w, { type: 'tollgate:shutdown' })
    })))
    clearTimeout(timer)
  }
  let admin: AdminServer | null = null
  // The workers keep serving through shutdown.delay themselves; the primary's /readyz is 503 from the signal on.
  const drain = new Drain({
    delaying: () => sources.close(),
    delayMs: () => 0,
    draining: stopWorkers,
    stopping: async () => {
      await probes.close()
      await admin?.close()
      log.info('stopped')
    },
  })
  applier.gate(() => drain.acceptsConfig)

  const onMessage = (state: WorkerState, m: unknown): void => {
    const message = toPrimary(m)
    switch (message?.type) {
      case 'tollgate:hello':
        if (drain.state !== 'serving') return void sendToWorker(state.worker, { type: 'tollgate:shutdown' })
        state.configured = true
        sendToWorker(state.worker, configMessage('file'))
        sendToWorker(state.worker, { type: 'tollgate:health', reports: probes.reports() })
        return
      case 'tollgate:ready': {
        state.ready = true
        state.revision = message.revision
        const ready = readyCount()
        if (ready >= count) allReadyOnce = true
        log.info({ worker: state.pid, revision: state.revision, ready }, 'worker ready')
        return
      }
      case 'tollgate:applied':
        state.revision = message.revision
        return
      case 'tollgate:metrics':
        metricsReplies.get(message.id)?.(message.metrics)
        return
      case 'tollgate:route-totals':
        totalsReplies.get(message.id)?.(message.totals)
        return
      default:
    }
  }

  const fork = (): void => {
    if (drain.state !== 'serving') return
    const worker = cluster.fork({ ...env, TOLLGATE_WORKER: '1', TOLLGATE_WORKERS: String(count) })
    const state: WorkerState = { worker, pid: worker.process.pid ?? 0, configured: false, ready: false, revision: null, lastMetrics: null, lastTotals: null }
    workers.set(worker, state)
    worker.on('message', (m: unknown) => onMessage(state, m))
  }
  cluster.on('exit', (worker, code, signal) => {
    const gone = workers.get(worker)
    if (gone?.lastTotals != null) retiredTotals = sumRouteTotals([retiredTotals, gone.lastTotals])
    if (gone?.lastMetrics != null) {
      const last = monotonicOf(gone.lastMetrics)
      retired = retired.then(async (sum) => sum.length === 0 ? last : await AggregatorRegistry.aggregate([sum, last]).getMetricsAsJSON() as object[])
    }
    workers.delete(worker)
    if (drain.state !== 'serving') return
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a replacement')
    restarts++
    const now = Date.now()
    recentRestarts = recentRestarts.filter((t) => now - t < 10_000)
    recentRestarts.push(now)
    // A worker that dies at once in a loop is not restarted faster than once a second.
    setTimeout(fork, recentRestarts.length > 5 ? 1000 : 0)
  })

  /** The counters and histograms of every worker that died, summed (monotonicOf). */
  let retired: Promise<object[]> = Promise.resolve([])

  /** One worker's metrics as JSON, or null when it does not answer in time (dying, stuck). */
  const metricsOf = (state: WorkerState): Promise<object[] | null> => new Promise((resolve) => {
    const id = nextMetricsId++
    const done = (value: object[] | null): void => {
      clearTimeout(timer)
      metricsReplies.delete(id)
      if (value !== null) state.lastMetrics = value
      resolve(value ?? (state.lastMetrics === null ? null : monotonicOf(state.lastMetrics)))
    }
    const timer = setTimeout(done, METRICS_TIMEOUT_MS, null)
    metricsReplies.set(id, done)
    if (!sendToWorker(state.worker, { type: 'tollgate:metrics', id }, () => done(null))) done(null)
  })

  /** One worker's route counts, or its last ones when it does not answer in time. */
  const totalsOf = (state: WorkerState): Promise<RouteTotalsById | null> => new Promise((resolve) => {
    const id = nextMetricsId++
    const done = (value: RouteTotalsById | null): void => {
      clearTimeout(timer)
      totalsReplies.delete(id)
      if (value !== null) state.lastTotals = value
      resolve(value ?? state.lastTotals)
    }
    const timer = setTimeout(done, TOTALS_TIMEOUT_MS, null)
    totalsReplies.set(id, done)
    if (!sendToWorker(state.worker, { type: 'tollgate:route-totals', id }, () => done(null))) done(null)
  })

  try {
    admin = await startAdminServer(listenAddress(record.config.admin), {
      notReadyReason: () => {
        const reason = drain.notReadyReason() ?? sources.notReadyReason()
        if (reason !== null) return reason
        const ready = readyCount()
        // Ready once every worker started; after that a crashed worker being replaced does not take the
        // instance out of rotation while the others serve.
        if (!allReadyOnce) return `${ready} of ${count} workers ready`
        return ready === 0 ? 'no worker is ready' : null
      },
      status: async () => {
        const answers = await Promise.all([...workers.values()].filter((w) => w.ready).map(totalsOf))
        const answered = answers.filter((a): a is RouteTotalsById => a !== null)
        // No worker has answered yet and none died: no counts, rather than zeros.
        const routeTotals = answered.length === 0 && Object.keys(retiredTotals).length === 0 ? null : sumRouteTotals([...answered, retiredTotals])
        return {
          ...renderStatus({
            file: sources.file, config: record.config, version: record.version, table: null, inflight: null,
            draining: drain.state !== 'serving', etcd: sources.etcd?.status() ?? null, activeReports: probes.reports(), routeTotals,
          }),
          workers: {
            configured: count,
            ready: readyCount(),
            restarts,
            processes: [...workers.values()].map((w) => ({ pid: w.pid, ready: w.ready, revision: w.revision })),
          },
        }
      },
      metrics: async () => {
        // Only ready workers are asked: one still starting, or one that died, must not fail the scrape.
        const answers = await Promise.all([...workers.values()].filter((w) => w.ready).map(metricsOf))
        const all = answers.filter((a): a is object[] => a !== null)
        const dead = await retired
        if (dead.length > 0) all.push(dead)
        all.push(await metrics.registry.getMetricsAsJSON())
        return { contentType: metrics.registry.contentType, body: await AggregatorRegistry.aggregate(all).metrics() }
      },
    })
  } catch (err) {
    await sources.close()
    throw err
  }

  // Every config put in force here goes to every worker that has said hello; the others get it when they do.
  const broadcast = (origin: ConfigOrigin): void => {
    const message = configMessage(origin)
    for (const state of workers.values()) if (state.configured) sendToWorker(state.worker, message)
    // After the config, so a worker knows a new target before its first report arrives.
    probes.update(record.config.upstreams)
  }
  sources.events.on('reload', (event) => { if (event.result === 'applied') broadcast('file') })
  sources.events.on('etcd', (event) => { if (event.applied) broadcast('etcd') })
  sources.start(applier)
  probes.update(record.config.upstreams)
  for (let i = 0; i < count; i++) fork()

  handleReloadSignal(() => sources.reload(), log)
  return handleShutdownSignals(() => drain.begin(), log).exitCode
}
