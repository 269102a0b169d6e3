// A route plugin's per-request machinery (README "Plugins"), per call, on the real classes
// (src/policy/plugins/): PluginStep.run with one synchronous onRequest that sets one header (the ctx object,
// the hook call timed against its budget, the header queued), then the header applied to a 12-header upstream
// list as forward.ts does; beside it the same hook called directly on a bare object (the floor: what the
// plugin's own code costs). Run by micro-bench.ts in its own process, timed by batches.ts.
import type { StepContext } from '../../src/http/request-step.js'
import { BoundPlugin, PluginChain } from '../../src/policy/plugins/plugin-chain.js'
import type { PluginCall } from '../../src/policy/plugins/plugin-call.js'
import { operation, type Operation } from './batches.js'
import { CALL_KEYS } from './micro-report.js'

const UPSTREAM_HEADERS = ['host', 'api', 'user-agent', 'bench', 'accept', '*/*', 'x-forwarded-for', '127.0.0.1',
  'x-forwarded-proto', 'http', 'x-forwarded-host', 'api', 'x-request-id', 'r', 'traceparent', 't', 'a', '1', 'b', '2', 'c', '3', 'd', '4']

function onRequest(ctx: { config: Readonly<Record<string, unknown>>; setHeader(name: string, value: string): void }): void {
  ctx.setHeader('x-bench-plugin', ctx.config['value'] as string)
}

export function pluginOperations(): Operation[] {
  const none = { inc: (): void => {} }
  const failures = { threw: none, timeout: none }
  const chain = new PluginChain('r0', [new BoundPlugin('set-header', Object.freeze({ value: '1' }), 100, onRequest as never, null, null, [failures, null, null])])
  // The request as the plugin step sees it: the fields it reads, nothing else (the exchange in the gateway).
  const ctx = {
    req: { method: 'GET', headers: { host: 'api' } }, canonicalPath: '/', query: '', consumer: null, plugins: null as object | null, finished: false,
    clientIp: () => '127.0.0.1', refuse: () => {}, respond: () => {}, resume: () => {},
  } as unknown as StepContext
  const bare = { config: Object.freeze({ value: '1' }) as Readonly<Record<string, unknown>>, headers: [] as string[], setHeader(name: string, value: string) { this.headers.push(name, value) } }
  return [
    operation(CALL_KEYS.pluginStep, 'PluginStep.run, one sync onRequest setting a header, then applied upstream', () => {
      const next = chain.step.run(ctx)
      const headers = UPSTREAM_HEADERS.slice()
      ;(ctx.plugins as PluginCall).applyUpstreamHeaders(headers)
      return next === 0 && headers.length === UPSTREAM_HEADERS.length + 2 ? 1 : 0
    }, true),
    operation(CALL_KEYS.pluginHookBare, 'the same hook called directly, the same list copied (floor)', () => {
      bare.headers = UPSTREAM_HEADERS.slice()
      onRequest(bare)
      return bare.headers.length === UPSTREAM_HEADERS.length + 2 ? 1 : 0
    }, true),
  ]
}
