// Wiring: one process, or a cluster primary and its workers, serving the config at configPath until a signal.
import cluster from 'node:cluster'
import { ConfigError, formatIssue } from './errors.js'
import { runPrimary, runWorker } from './lifecycle/cluster.js'
import { Gateway } from './lifecycle/gateway.js'
import { createLogger } from './telemetry/log.js'

/** Runs the gateway until SIGTERM/SIGINT; resolves with the exit code. */
export async function runGateway(configPath: string, env: NodeJS.ProcessEnv, workers: number): Promise<number> {
  const log = createLogger(env)
  try {
    if (cluster.isWorker) return await runWorker(configPath, env, log)
    if (workers > 1) return await runPrimary(configPath, env, workers, log)
    const gateway = await Gateway.start({ configPath, env, log })
    return await untilSignal(gateway)
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const issue of err.issues) process.stderr.write(formatIssue(issue) + '\n')
      process.stderr.write(`tollgate: ${configPath} is invalid; not starting.\n`)
      return 1
    }
    process.stderr.write(`tollgate: ${(err as Error).message}\n`)
    return 1
  }
}

/** SIGTERM/SIGINT: drain and exit 0; a second signal exits at once (SPEC §9). */
export function untilSignal(gateway: Gateway): Promise<number> {
  return new Promise((resolve) => {
    let signalled = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (signalled) {
        gateway.log.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      }
      signalled = true
      gateway.log.info({ signal }, 'shutting down')
      gateway.shutdown().then(() => resolve(0), () => resolve(1))
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}
