// The gateway in-process with its file watcher on, on a config path the test chooses (a symlink, say),
// and with the stat poll period the test chooses.
import { onTestFinished } from 'vitest'
import { Gateway } from '../../src/lifecycle/gateway.js'
import type { ReloadEvent } from '../../src/lifecycle/config-sources.js'
import { createLogger } from '../../src/telemetry/log.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { httpRequest, type Response } from './gateway.js'

export interface WatchedGateway {
  readonly gateway: Gateway
  get(path: string): Promise<Response>
  /** Resolves with the next reload the watcher triggered that `match` accepts. */
  nextReload(match?: (e: ReloadEvent) => boolean, timeoutMs?: number): Promise<ReloadEvent>
}

/** `configPath` must already hold a config that listens on 127.0.0.1:0. */
export async function startWatchedGateway(configPath: string, watchPollMs: number): Promise<WatchedGateway> {
  const env = { ...process.env, TOLLGATE_LOG_LEVEL: process.env['TOLLGATE_TEST_LOG'] ?? 'silent' }
  const gateway = await Gateway.start({
    configPath, env, log: createLogger(env), watchFile: true, watchPollMs, metrics: new Metrics({ defaultMetrics: false }),
  })
  onTestFinished(() => gateway.shutdown())
  const url = `http://127.0.0.1:${gateway.proxyAddress.port}`
  return {
    gateway,
    get: (path) => httpRequest(url + path),
    nextReload(match = () => true, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          gateway.events.off('reload', listener)
          reject(new Error(`no matching reload within ${timeoutMs} ms`))
        }, timeoutMs)
        const listener = (e: ReloadEvent): void => {
          if (!match(e)) return
          clearTimeout(timer)
          gateway.events.off('reload', listener)
          resolve(e)
        }
        gateway.events.on('reload', listener)
      })
    },
  }
}
