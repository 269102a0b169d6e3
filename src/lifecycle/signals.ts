// README "Deployment" (shutdown): the first SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once with 1.
// One helper for the single process, the cluster primary and each worker.
import type { Logger } from '../telemetry/log.js'

export interface ShutdownSignalOptions {
  /** Signals that start the shutdown (default SIGTERM and SIGINT). */
  readonly signals?: readonly NodeJS.Signals[]
  /**
   * Signals to swallow. A cluster worker ignores SIGINT: a terminal's ^C reaches the whole process group,
   * and the primary, which gets it too, coordinates the workers' shutdown.
   */
  readonly ignored?: readonly NodeJS.Signals[]
}

export interface ShutdownHandle {
  /** The process exit code: 0 once the graceful shutdown finished, 1 when it failed. */
  readonly exitCode: Promise<number>
  /**
   * Starts the graceful shutdown without a signal (a worker told by its primary). It does not count as a
   * signal: a SIGTERM that the worker gets as well is then the first, not the second.
   */
  begin(reason: string): void
}

/** Calls `graceful` once, on the first signal or begin(); exits the process with 1 on a second signal. */
export function handleShutdownSignals(graceful: () => Promise<void>, log: Logger, options: ShutdownSignalOptions = {}): ShutdownHandle {
  let resolveExit!: (code: number) => void
  const exitCode = new Promise<number>((resolve) => { resolveExit = resolve })
  let started = false
  let signalled = false
  const begin = (reason: string): void => {
    if (started) return
    started = true
    log.info({ reason }, 'shutting down')
    graceful().then(() => resolveExit(0), (err: unknown) => {
      log.error({ err }, 'shutdown failed')
      resolveExit(1)
    })
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    signalled = true
    begin(signal)
  }
  for (const signal of options.signals ?? ['SIGTERM', 'SIGINT']) process.on(signal, onSignal)
  for (const signal of options.ignored ?? []) process.on(signal, () => undefined)
  return { exitCode, begin }
}

/**
 * SIGHUP reloads the config file now, as it does for nginx and HAProxy (Node's default would kill the
 * process with no drain). The file is also watched; this is for operators and scripts that expect it.
 */
export function handleReloadSignal(reload: () => Promise<string>, log: Logger): void {
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading the config file')
    reload().then(
      (result) => log.info({ result }, 'SIGHUP reload done'),
      (err: unknown) => log.error({ err }, 'SIGHUP reload failed'),
    )
  })
}
