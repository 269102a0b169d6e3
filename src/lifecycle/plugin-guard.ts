// Once plugins are loaded: their failures are logged (rate-limited, plugin-modules.ts), and a plugin's stray
// promise must not take the gateway down (README "Plugins"). Node ends the process on an
// unhandled rejection by default; the hooks' own promises are always handled (plugin-call.ts), but a plugin
// can start work it never awaits (a fire-and-forget fetch in onLog). Once a plugin is loaded, such a
// rejection is logged instead. It is installed only then: without plugins, an unhandled rejection is a bug of
// the gateway and ends it as before. A synchronous throw from a plugin's own timer callback is not caught:
// that is an uncaught exception, which leaves the process in an unknown state.
import { pluginModules } from '../policy/plugins/plugin-modules.js'
import type { Logger } from '../telemetry/log.js'

let installed = false

export function superviseForPlugins(log: Logger): void {
  if (installed) return
  installed = true
  // What a failing hook threw, for the operator (tollgate_plugin_errors_total only counts).
  pluginModules.reportFailuresTo((fields, message) => log.warn(fields, message))
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled promise rejection (plugins are loaded: most likely a plugin\'s); the process goes on')
  })
}
