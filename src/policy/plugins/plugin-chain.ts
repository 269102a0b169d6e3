// A route's plugins as the table builds them once per config version (README "Plugins"): each plugin's
// hooks, its frozen config, its time budget and its failure counters, bound here so that a request only reads
// fields. The chain's step (PluginStep) is one of the route's pipeline steps, after its limiters and before
// its breaker admission (src/table/compiled-route.ts says why there).
import type { Plugin } from '../../config/schema.js'
import { Next, type RequestStep, type StepContext } from '../../http/request-step.js'
import type { HookName } from './plugin-api.js'
import { PluginCall } from './plugin-call.js'
import type { LoadedPluginModule } from './plugin-modules.js'

/** A counter cell (src/telemetry/metrics.ts RouteMetrics.pluginErrors). */
export interface FailureCounter {
  inc(): void
}

export type PluginHook = (ctx: never) => unknown

/** The failure counters of one hook of one plugin: reason threw and reason timeout. */
export interface HookFailures {
  readonly threw: FailureCounter
  readonly timeout: FailureCounter
}

export class BoundPlugin {
  constructor(
    /** The `plugin` label: the module's file name without its extension. */
    readonly name: string,
    readonly config: Readonly<Record<string, unknown>>,
    readonly timeoutMs: number,
    readonly onRequest: PluginHook | null,
    readonly onResponse: PluginHook | null,
    readonly onLog: PluginHook | null,
    /** By hook, in HOOK order: onRequest, onResponse, onLog (null where the module has no such hook). */
    readonly failures: readonly [HookFailures | null, HookFailures | null, HookFailures | null],
  ) {}
}

export class PluginChain {
  /** The plugins with that hook, in the route's order. */
  readonly request: readonly BoundPlugin[]
  readonly response: readonly BoundPlugin[]
  readonly log: readonly BoundPlugin[]
  readonly step: PluginStep

  constructor(readonly routeId: string, readonly plugins: readonly BoundPlugin[]) {
    this.request = plugins.filter((p) => p.onRequest !== null)
    this.response = plugins.filter((p) => p.onResponse !== null)
    this.log = plugins.filter((p) => p.onLog !== null)
    this.step = new PluginStep(this)
  }
}

/** The route's plugin step: one PluginCall per request (only routes with plugins pay for it), then onRequest. */
export class PluginStep implements RequestStep {
  constructor(readonly chain: PluginChain) {}

  run(ctx: StepContext): Next {
    const call = new PluginCall(ctx, this.chain)
    ctx.plugins = call
    return this.chain.request.length === 0 ? Next.Continue : call.runRequest()
  }
}

/** Binds `plugins` (module already checked by PluginModules.prepare) to the route's counters. */
export function buildPluginChain(
  routeId: string, plugins: readonly Plugin[], moduleOf: (file: string) => LoadedPluginModule,
  failures: (plugin: string, hook: HookName) => HookFailures,
): PluginChain {
  const bound = plugins.map((entry) => {
    const m = moduleOf(entry.module)
    const counted = (hook: HookName, fn: PluginHook | null): HookFailures | null => (fn === null ? null : failures(m.name, hook))
    return new BoundPlugin(m.name, Object.freeze(entry.config), entry.timeout, m.onRequest, m.onResponse, m.onLog,
      [counted('onRequest', m.onRequest), counted('onResponse', m.onResponse), counted('onLog', m.onLog)])
  })
  return new PluginChain(routeId, bound)
}
