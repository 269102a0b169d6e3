// Wiring: one process, or a cluster primary and its workers, serving the config at configPath until a signal.
// Each role is imported when it runs, so a process loads only its own part: the primary never loads the
// route table or undici (its workers hold the connection pools).
import cluster from 'node:cluster'
import { ConfigError, formatIssue } from './errors.js'
import { createLogger } from './telemetry/log.js'

/** Runs the gateway until SIGTERM/SIGINT; resolves with the exit code. */
export async function runGateway(configPath: string, env: NodeJS.ProcessEnv, workers: number): Promise<number> {
  let log
  try {
    log = createLogger(env, 1, cluster.isWorker || workers > 1) // with --workers, processes share stdout
  } catch (err) {
    process.stderr.write(`tollgate: ${(err as Error).message}\n`)
    return 1
  }
  try {
    if (cluster.isWorker) {
      const { runWorker } = await import('./lifecycle/cluster/worker.js')
      return await runWorker(log)
    }
    if (workers > 1) {
      const { runPrimary } = await import('./lifecycle/cluster/primary.js')
      return await runPrimary({ configPath, env, count: workers, log })
    }
    const { Gateway } = await import('./lifecycle/gateway.js')
    const { handleReloadSignal, handleShutdownSignals } = await import('./lifecycle/signals.js')
    const gateway = await Gateway.start({ configPath, env, log })
    handleReloadSignal(() => gateway.reload(), log)
    return await handleShutdownSignals(() => gateway.shutdown(), log).exitCode
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
