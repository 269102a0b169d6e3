// --workers N: node:cluster. The primary owns the config (reads, validates, watches routes.yaml) and the
// admin listener; workers share the proxy port and serve traffic. A reload is validated once by the
// primary and its text sent to every worker, so all workers run the same revision. A worker that dies is
// replaced (with the primary's current config). SIGTERM on the primary drains every worker (SPEC §9).
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import type { AdminServer } from './admin/admin-server.js'
import { parseAddress, startAdminServer } from './admin/admin-server.js'
import { FileConfigSource } from './config/file-source.js'
import { parseDurationMs } from './config/units.js'
import { watchConfigFile } from './config/watch.js'
import { formatIssue } from './errors.js'
import { Gateway, statusOf } from './main.js'
import { buildRouteTable, type RouteTable } from './router/route-table.js'
import type { Logger } from './telemetry/log.js'
import { Metrics } from './telemetry/metrics.js'

type ToWorker = { type: 'tollgate:config'; text: string } | { type: 'tollgate:reload'; text: string } | { type: 'tollgate:shutdown' }
type ToPrimary = { type: 'tollgate:ready' }

function isMessage<T extends { type: string }>(m: unknown, type: T['type']): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type
}

export async function runPrimary(configPath: string, env: NodeJS.ProcessEnv, count: number, log: Logger): Promise<number> {
  const source = new FileConfigSource(configPath, env)
  const loaded = source.loadInitial() // ConfigError -> exit 1 before any worker starts
  for (const w of loaded.warnings) log.warn(formatIssue(w))
  for (const n of loaded.notEnforced) log.warn({ notEnforced: true }, n)
  const metrics = new Metrics({ defaultMetrics: false, data: false, control: true })
  const statusMetrics = new Metrics({ defaultMetrics: false, data: false, control: false })
  let table: RouteTable = buildRouteTable(loaded.config, null, statusMetrics).table
  metrics.configReloads.labels('file', 'applied').inc()
  metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
  const aggregator = new AggregatorRegistry()
  const ready = new Set<Worker>()
  let shuttingDown = false
  let recentRestarts: number[] = []

  const fork = (): void => {
    const worker = cluster.fork({ ...env, TOLLGATE_WORKER: '1' })
    worker.on('message', (m: unknown) => {
      if (isMessage<ToPrimary>(m, 'tollgate:ready')) ready.add(worker)
    })
    worker.once('online', () => send(worker, { type: 'tollgate:config', text: source.text }))
  }
  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker)
    if (shuttingDown) return
    log.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a replacement')
    const now = Date.now()
    recentRestarts = recentRestarts.filter((t) => now - t < 10_000)
    recentRestarts.push(now)
    // A worker that dies at once in a loop is not restarted faster than once a second.
    setTimeout(fork, recentRestarts.length > 5 ? 1000 : 0)
  })
  for (let i = 0; i < count; i++) fork()

  const admin: AdminServer = await startAdminServer(parseAddress(loaded.config.admin), {
    notReadyReason: () => shuttingDown ? 'draining' : ready.size < count ? `${ready.size} of ${count} workers ready` : null,
    status: () => ({ ...(statusOf(source, table) as object), workers: { configured: count, ready: ready.size } }),
    metrics: async () => ({
      contentType: metrics.registry.contentType,
      body: (await aggregator.clusterMetrics()) + '\n' + (await metrics.registry.metrics()),
    }),
  })

  const watcher = watchConfigFile(configPath, () => {
    if (shuttingDown) return
    const outcome = source.reload()
    if (outcome.kind === 'unchanged') return
    if (outcome.kind === 'rejected') {
      metrics.configReloads.labels('file', 'rejected').inc()
      log.error({ errors: outcome.issues.map(formatIssue) }, 'config reload rejected; the previous config stays in force')
      return
    }
    const built = buildRouteTable(outcome.result.config, table, statusMetrics)
    table = built.table
    built.commit()
    source.markApplied(outcome.text, outcome.result)
    metrics.configReloads.labels('file', 'applied').inc()
    metrics.lastReloadSuccess.labels('file').set(Date.now() / 1000)
    for (const worker of Object.values(cluster.workers ?? {})) if (worker !== undefined) send(worker, { type: 'tollgate:reload', text: outcome.text })
    log.info({ revision: outcome.revision }, 'config reloaded; sent to every worker')
  })

  return new Promise<number>((resolve) => {
    let signalled = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) process.exit(1)
      signalled = true
      shuttingDown = true
      log.info({ signal }, 'shutting down workers')
      void watcher.close()
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      const limitMs = parseDurationMs(table.config.shutdown.delay) + parseDurationMs(table.config.shutdown.timeout) + 5000
      const exited = Promise.all(workers.map((w) => new Promise<void>((r) => {
        if (w.isDead()) return r()
        w.once('exit', () => r())
        send(w, { type: 'tollgate:shutdown' })
      })))
      const timer = setTimeout(() => {
        for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL')
      }, limitMs)
      void exited.then(async () => {
        clearTimeout(timer)
        await admin.close()
        resolve(0)
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}

function send(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message)
}

export async function runWorker(configPath: string, env: NodeJS.ProcessEnv, log: Logger): Promise<number> {
  const text = await new Promise<string>((resolve) => {
    const onMessage = (m: unknown): void => {
      if (isMessage<ToWorker & { type: 'tollgate:config' }>(m, 'tollgate:config')) {
        process.off('message', onMessage)
        resolve(m.text)
      }
    }
    process.on('message', onMessage)
  })
  const metrics = new Metrics({ defaultMetrics: true, data: true, control: false })
  AggregatorRegistry.setRegistries([metrics.registry])
  const gateway = await Gateway.start({ configPath, env, log, serveAdmin: false, watchFile: false, metrics, initialText: text })
  process.send?.({ type: 'tollgate:ready' })
  return new Promise<number>((resolve) => {
    const stop = (): void => {
      gateway.shutdown().then(() => resolve(0), () => resolve(1))
    }
    process.on('message', (m: unknown) => {
      if (isMessage<ToWorker>(m, 'tollgate:reload')) gateway.reload((m as { text: string }).text)
      else if (isMessage<ToWorker>(m, 'tollgate:shutdown')) stop()
    })
    // The whole process group gets ^C; the primary coordinates, so workers only drain once told.
    process.on('SIGINT', () => undefined)
    process.on('SIGTERM', stop)
  })
}
