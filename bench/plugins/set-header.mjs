// Bench scenario `plugin` (bench/scenarios.ts): the least a route plugin can do, one synchronous onRequest
// that sets one upstream header, so the scenario measures what the plugin machinery costs per request.
export function onRequest(ctx) {
  ctx.setHeader('x-bench-plugin', ctx.config.value)
}
