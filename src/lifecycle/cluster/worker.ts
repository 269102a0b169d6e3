// A cluster worker: serves the proxy port it shares with the other workers, with the config its primary
// sends (messages.ts). It owns no config source and no admin listener, and never parses routes.yaml: the
// primary validated the config already, so a reload costs a worker the table build only.
import type { Config } from '../../config/schema.js'
import { formatIssue } from '../../errors.js'
import { pluginModules } from '../../policy/plugins/plugin-modules.js'
import { Gateway } from '../gateway.js'
import { superviseForPlugins } from '../plugin-guard.js'
import type { Logger } from '../../telemetry/log.js'
import { Metrics } from '../../telemetry/metrics.js'
import { HealthFeed } from '../../upstream/health/health-feed.js'
import { handleShutdownSignals } from '../signals.js'
import { frozen, sendToPrimary, toWorker, type ConfigMessage } from './messages.js'

export function runWorker(log: Logger): Promise<number> {
  const metrics = new Metrics({ defaultMetrics: true, data: true, control: false })
  // Active probe results from the primary (it probes once per instance); kept from the first message on,
  // so reports that arrive while the gateway starts are not lost.
  const healthFeed = new HealthFeed()
  let gateway: Gateway | null = null
  let starting: Promise<Gateway | null> | null = null
  let pending: ConfigMessage | null = null // the newest config that arrived while starting
  let revision = ''
  let resolveFailed!: (code: number) => void
  const failed = new Promise<number>((resolve) => { resolveFailed = resolve })

  // The whole process group gets ^C; the primary coordinates, so a worker only drains on SIGTERM or when told.
  const shutdown = handleShutdownSignals(async () => {
    const g = gateway ?? await starting
    await g?.shutdown()
  }, log, { signals: ['SIGTERM'], ignored: ['SIGINT', 'SIGHUP'] })

  // Configs are applied in the order they came; one with plugins waits for their import (README "Plugins").
  let applying: Promise<void> = Promise.resolve()
  const apply = (g: Gateway, message: ConfigMessage): void => {
    applying = applying.then(async () => {
      const config = frozen(message.config)
      const prepared = await preparePlugins(config, log)
      const result = prepared ? g.applyConfig(config, message.origin, message.revision) : 'rejected'
      if (result !== 'rejected') revision = message.revision
      sendToPrimary({ type: 'tollgate:applied', revision, result })
    })
  }
  const start = async (message: ConfigMessage): Promise<Gateway | null> => {
    try {
      if (!await preparePlugins(frozen(message.config), log)) throw new Error('the plugins of the first config did not load')
      // Local limiters count 1/N of their quota in each of the N workers (README "Rate limiting").
      const workers = Number(process.env['TOLLGATE_WORKERS'] ?? '1')
      const g = await Gateway.serve(frozen(message.config), { log, metrics, workers: Number.isInteger(workers) && workers > 0 ? workers : 1, healthFeed })
      revision = message.revision
      return g
    } catch (err) {
      log.error({ err }, 'worker failed to start')
      resolveFailed(1)
      return null
    }
  }

  process.on('message', (m: unknown) => {
    const message = toWorker(m)
    switch (message?.type) {
      case 'tollgate:config':
        if (gateway !== null) return apply(gateway, message)
        if (starting !== null) {
          pending = message
          return
        }
        starting = start(message)
        void starting.then((g) => {
          if (g === null) return
          gateway = g
          sendToPrimary({ type: 'tollgate:ready', revision })
          if (pending !== null) apply(g, pending)
          pending = null
        })
        return
      case 'tollgate:health':
        for (const report of message.reports) healthFeed.put(report)
        return
      case 'tollgate:shutdown':
        return shutdown.begin('told by the primary')
      case 'tollgate:metrics': {
        const id = message.id
        metrics.registry.getMetricsAsJSON().then((json) => sendToPrimary({ type: 'tollgate:metrics', id, metrics: json }), () => undefined)
        return
      }
      case 'tollgate:route-totals':
        return sendToPrimary({ type: 'tollgate:route-totals', id: message.id, totals: gateway?.routeTotals() ?? {} })
      default:
    }
  })
  sendToPrimary({ type: 'tollgate:hello' })
  return Promise.race([shutdown.exitCode, failed])
}

/**
 * The primary checked the plugins already; a worker imports them itself (modules cannot be sent). A problem
 * here (the file changed or went away in between) is logged and the config is not applied.
 */
async function preparePlugins(config: Config, log: Logger): Promise<boolean> {
  if (!config.routes.some((r) => r.plugins !== undefined && r.plugins.length > 0)) return true
  pluginModules.beforeFirstImport(() => superviseForPlugins(log))
  const issues = await pluginModules.prepare(config, null, 'routes.yaml (from the primary)')
  for (const issue of issues) log.error(formatIssue(issue))
  return issues.length === 0
}
