import type { Gateway } from './lifecycle/gateway.js'

/** Resolves after SIGINT/SIGTERM drained the gateway; a second signal exits at once. */
export function untilSignalDemo(gateway: Gateway): Promise<void> {
  return new Promise((resolve) => {
    let signalled = false
    const onSignal = (): void => {
      if (signalled) process.exit(1)
      signalled = true
      void gateway.shutdown().then(resolve)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
