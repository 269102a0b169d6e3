// Route plugins through the real gateway (README "Plugins"): the hooks and their ctx, answering from
// onRequest, headers both ways, failures (throw, rejection, time budget) as 500 PLUGIN_FAILED that never
// reach the upstream and are counted, onLog failures counted only, config errors at file:line:col, the last
// good config on a bad reload, a changed plugin file re-imported on reload, and `tollgate validate`.
// Plugins are written to a temporary directory per test; in-process gateways share the test's globalThis,
// which the plugins use to report what they saw (an EventEmitter: awaited, never polled).
import { spawnSync } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { pluginModules } from '../../src/policy/plugins/plugin-modules.js'
import { CLI, spawnGateway, startGateway, httpRequest, type GatewayProcess, type TestGateway } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

interface Probe extends EventEmitter {
  seen: unknown[]
}

/** The emitter plugins report on (globalThis.__pluginProbe), fresh per test. */
function probe(): Probe {
  const p = Object.assign(new EventEmitter(), { seen: [] as unknown[] })
  ;(globalThis as { __pluginProbe?: Probe }).__pluginProbe = p
  onTestFinished(() => { delete (globalThis as { __pluginProbe?: Probe }).__pluginProbe })
  return p
}

/** A temporary directory with the given plugin files; returns their absolute paths by name. */
function plugins(files: Record<string, string>): { dir: string; path: (name: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-plugins-'))
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
  for (const [name, code] of Object.entries(files)) writeFileSync(join(dir, name), code)
  return { dir, path: (name) => join(dir, name) }
}

function pluginErrors(metrics: string, route: string, plugin: string, hook: string, reason: string): number {
  const m = new RegExp(`^tollgate_plugin_errors_total\\{route="${route}",plugin="${plugin}",hook="${hook}",reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics)
  return m === null ? 0 : Number(m[1])
}

function routes(up: Upstream, pluginsYaml: string): string {
  return `
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    plugins:
${pluginsYaml}
  - { id: plain, match: { path: /plain }, upstream: api }
`
}

/** The result of the n-th SIGHUP reload, from the gateway's log line (awaited on stdout, bounded). */
async function nthReloadResult(gw: GatewayProcess, n: number, timeoutMs = 10_000): Promise<string> {
  const results = (): string[] => [...gw.stdout().matchAll(/"result":"(\w+)"[^\n]*"msg":"SIGHUP reload done"/g)].map((m) => m[1]!)
  if (results().length >= n) return results()[n - 1]!
  return new Promise((resolve, reject) => {
    const onData = (): void => {
      const all = results()
      if (all.length < n) return
      clearTimeout(timer)
      gw.child.stdout!.off('data', onData)
      resolve(all[n - 1]!)
    }
    const timer = setTimeout(() => {
      gw.child.stdout!.off('data', onData)
      reject(new Error(`no reload #${n} within ${timeoutMs} ms:\n${gw.stdout()}`))
    }, timeoutMs)
    gw.child.stdout!.on('data', onData)
  })
}

async function expectPluginFailed(gw: TestGateway, path: string): Promise<void> {
  const r = await gw.get(path)
  expect(r.status).toBe(500)
  expect(r.headers['x-tollgate-error']).toBe('PLUGIN_FAILED')
  expect(r.json()).toEqual({ code: 'PLUGIN_FAILED', message: 'a plugin of this route failed' })
}

describe('plugins', () => {
  it('gives each hook the request as ctx: config, route, method, canonical path, query, headers, client address, status', async () => {
    const p = probe()
    const files = plugins({
      'seer.js': `
const probe = () => globalThis.__pluginProbe
const view = (ctx) => ({ config: ctx.config, route: ctx.route, method: ctx.method, path: ctx.path, q: ctx.query.get('q'),
  header: ctx.headers['x-hello'], clientIp: ctx.clientIp, consumer: ctx.consumer, frozen: Object.isFrozen(ctx.config) })
export function onRequest(ctx) { probe().seen.push(['onRequest', view(ctx)]) }
export function onResponse(ctx) { probe().seen.push(['onResponse', ctx.status]) }
export async function onLog(ctx) { probe().seen.push(['onLog', ctx.status, ctx.durationMs > 0]); probe().emit('log') }
`,
    })
    const up = await startUpstream({ statuses: [201] })
    const gw = await startGateway(routes(up, `      - { module: ${files.path('seer.js')}, config: { greeting: hi, n: 2 } }`))
    const logged = once(p, 'log')
    const r = await gw.get('/api//users/./7?q=x%20y&z=1', { 'x-hello': 'there' })
    expect(r.status).toBe(201)
    await logged
    expect(p.seen).toEqual([
      ['onRequest', { config: { greeting: 'hi', n: 2 }, route: 'api', method: 'GET', path: '/api/users/7', q: 'x y', header: 'there', clientIp: '127.0.0.1', consumer: null, frozen: true }],
      ['onResponse', 201],
      ['onLog', 201, true],
    ])
    // A route without plugins makes no plugin call.
    expect((await gw.get('/plain')).status).toBe(201)
    expect(p.seen).toHaveLength(3)
  })

  it('answers from onRequest with respond(): the plugin\'s status, headers and body; the upstream is not called', async () => {
    const files = plugins({
      'gate.js': `
export function onRequest(ctx) {
  if (ctx.headers['x-let-in'] !== 'yes') ctx.respond(418, { 'content-type': 'text/plain', 'x-why': 'teapot' }, 'no entry for ' + ctx.path)
}`,
      'async-gate.js': `
export async function onRequest(ctx) {
  await new Promise((r) => setTimeout(r, 5))
  if (ctx.query.get('pass') !== '1') ctx.respond(403, { 'content-type': 'application/json' }, JSON.stringify({ code: 'NOPE' }))
}`,
    })
    const up = await startUpstream()
    const gw = await startGateway(routes(up, `      - { module: ${files.path('gate.js')} }\n      - { module: ${files.path('async-gate.js')} }`))
    const r = await gw.get('/api/x')
    expect(r.status).toBe(418)
    expect(r.headers['x-why']).toBe('teapot')
    expect(r.headers['content-length']).toBe(String('no entry for /api/x'.length))
    expect(typeof r.headers['x-request-id']).toBe('string')
    expect(r.body).toBe('no entry for /api/x')
    const later = await gw.get('/api/x', { 'x-let-in': 'yes' })
    expect(later.status).toBe(403)
    expect(later.json()).toEqual({ code: 'NOPE' })
    expect(up.hits).toBe(0)
    expect((await gw.get('/api/x?pass=1', { 'x-let-in': 'yes' })).status).toBe(200)
    expect(up.hits).toBe(1)
  })

  it('sets headers for the upstream in onRequest and for the client in onResponse, replacing those of the same name', async () => {
    const files = plugins({
      'headers.js': `
export function onRequest(ctx) { ctx.setHeader('X-Tenant', 'acme'); ctx.setHeader('x-user', 'from-plugin') }
export async function onResponse(ctx) { await null; ctx.setHeader('x-upstream-said', String(ctx.status)); ctx.setHeader('Server', 'tollgate-plugin') }
`,
    })
    const up = await startUpstream({ headers: { server: 'upstream' } })
    const gw = await startGateway(routes(up, `      - { module: ${files.path('headers.js')} }`))
    const r = await gw.get('/api/x', { 'x-user': 'from-client' })
    expect(r.status).toBe(200)
    expect(up.requests[0]!.headers['x-tenant']).toBe('acme')
    expect(up.requests[0]!.headers['x-user']).toBe('from-plugin')
    expect(r.headers['x-upstream-said']).toBe('200')
    expect(r.headers['server']).toBe('tollgate-plugin')
    expect(r.body).toMatch(/^hello from/)
  })

  it.each([
    ['throws', 'export function onRequest() { throw new Error("boom") }', 'threw'],
    ['rejects', 'export async function onRequest() { await null; throw new Error("async boom") }', 'threw'],
    ['never settles past its timeout', 'export function onRequest() { return new Promise(() => {}) }', 'timeout'],
    ['runs synchronously past its timeout', 'export function onRequest() { const end = performance.now() + 60; while (performance.now() < end) {} }', 'timeout'],
    ['sets a framing header', 'export function onRequest(ctx) { ctx.setHeader("content-length", "1") }', 'threw'],
  ])('answers 500 PLUGIN_FAILED when onRequest %s, never calls the upstream, counts it and keeps serving', async (_what, code, reason) => {
    const files = plugins({ 'bad.js': code })
    const up = await startUpstream()
    const gw = await startGateway(routes(up, `      - { module: ${files.path('bad.js')}, timeout: 30ms }`))
    await expectPluginFailed(gw, '/api/x')
    await expectPluginFailed(gw, '/api/y')
    expect(up.hits).toBe(0)
    const metrics = (await gw.admin('/metrics')).body
    expect(pluginErrors(metrics, 'api', 'bad', 'onRequest', reason)).toBe(2)
    expect(pluginErrors(metrics, 'api', 'bad', 'onRequest', reason === 'threw' ? 'timeout' : 'threw')).toBe(0)
    expect((await gw.get('/plain')).status).toBe(200)
  })

  it('answers 500 PLUGIN_FAILED when onResponse fails before the head went out, counted; the breaker does not blame the upstream', async () => {
    const files = plugins({
      'late.js': 'export function onResponse(ctx) { if (ctx.status === 200) throw new Error("no") }',
      'slow.js': 'export function onResponse() { return new Promise(() => {}) }',
    })
    const up = await startUpstream({ body: 'x'.repeat(100_000) })
    const gw = await startGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - { id: late, match: { path: /late }, upstream: api, plugins: [{ module: ${files.path('late.js')} }], circuitBreaker: { minRequests: 2, errorRate: 50 } }
  - { id: slow, match: { path: /slow }, upstream: api, plugins: [{ module: ${files.path('slow.js')}, timeout: 50ms }] }
`)
    for (let i = 0; i < 3; i++) await expectPluginFailed(gw, '/late')
    await expectPluginFailed(gw, '/slow')
    const metrics = (await gw.admin('/metrics')).body
    expect(pluginErrors(metrics, 'late', 'late', 'onResponse', 'threw')).toBe(3)
    expect(pluginErrors(metrics, 'slow', 'slow', 'onResponse', 'timeout')).toBe(1)
    expect(metrics).toMatch(/^tollgate_circuit_breaker_state\{route="late"\} 0$/m)
  })

  it('counts a failing onLog without touching the response', async () => {
    const p = probe()
    const files = plugins({
      'log-throws.js': 'export function onLog() { throw new Error("log boom") }',
      'log-rejects.js': 'export async function onLog() { await null; globalThis.__pluginProbe.emit("rejecting"); throw new Error("later") }',
    })
    const up = await startUpstream()
    const gw = await startGateway(routes(up, `      - { module: ${files.path('log-throws.js')} }\n      - { module: ${files.path('log-rejects.js')} }`))
    const rejecting = once(p, 'rejecting')
    expect((await gw.get('/api/x')).status).toBe(200)
    await rejecting
    await new Promise((r) => setImmediate(r)) // the rejection is handled one microtask turn later
    const metrics = (await gw.admin('/metrics')).body
    expect(pluginErrors(metrics, 'api', 'log-throws', 'onLog', 'threw')).toBe(1)
    expect(pluginErrors(metrics, 'api', 'log-rejects', 'onLog', 'threw')).toBe(1)
  })

  it('refuses a plugin config that its configSchema rejects at file:line:col; on reload the last good config keeps serving', async () => {
    const files = plugins({
      'strict.js': `
export const configSchema = { type: 'object', properties: { mode: { enum: ['a', 'b'] } }, required: ['mode'], additionalProperties: false }
export function onRequest(ctx) { ctx.setHeader('x-mode', ctx.config.mode) }`,
    })
    const up = await startUpstream()
    const good = routes(up, `      - { module: ${files.path('strict.js')}, config: { mode: a } }`)
    await expect(startGateway(routes(up, `      - { module: ${files.path('strict.js')}, config: { mode: c, extra: 1 } }`)))
      .rejects.toThrow(/routes\.yaml:\d+:\d+ routes\[0\]\.plugins\[0\]\.config\.mode: must be one of \["a","b"\]/)
    const gw = await startGateway(good)
    expect((await gw.get('/api/x')).status).toBe(200)
    expect(await gw.rewrite(good.replace('mode: a', 'mode: z'))).toBe('rejected')
    expect((await gw.get('/api/x')).status).toBe(200)
    expect(up.requests.map((r) => r.headers['x-mode'])).toEqual(['a', 'a'])
    expect(await gw.rewrite(good.replace('mode: a', 'mode: b'))).toBe('applied')
    await gw.get('/api/x')
    expect(up.requests[2]!.headers['x-mode']).toBe('b')
  })

  it('refuses a plugin whose top-level code never finishes, within the load budget, and goes on serving the last good config', async () => {
    pluginModules.loadTimeoutMs = 300
    onTestFinished(() => { pluginModules.loadTimeoutMs = 10_000 })
    const files = plugins({
      'ok.js': 'export function onRequest(ctx) { ctx.setHeader("x-ok", "1") }',
      'hangs.js': 'await new Promise(() => {})\nexport function onRequest() {}',
    })
    const up = await startUpstream()
    const gw = await startGateway(routes(up, `      - { module: ${files.path('ok.js')} }`))
    expect(await gw.rewrite(routes(up, `      - { module: ${files.path('hangs.js')} }`))).toBe('rejected')
    expect(gw.gateway.sources!.file.rejected.map((i) => i.message)).toEqual([`the plugin ${files.path('hangs.js')} failed to load: its top-level code did not finish within 300 ms`])
    // The next reload is not held behind it.
    expect(await gw.rewrite(routes(up, `      - { module: ${files.path('ok.js')} }\n      - { module: ${files.path('ok.js')}, timeout: 1s }`))).toBe('applied')
    expect((await gw.get('/api/x')).status).toBe(200)
    expect(up.requests[0]!.headers['x-ok']).toBe('1')
  })

  // In a real process (dist/): Node's own ES module loader and its cache, which the version in the URL gets past.
  it('imports a changed plugin file on reload, and keeps the old code when the new one does not load', async () => {
    const files = plugins({ 'v.js': 'export function onRequest(ctx) { ctx.setHeader("x-version", "1") }' })
    const up = await startUpstream()
    const gw = await spawnGateway(routes(up, `      - { module: ${files.path('v.js')} }`))
    const reload = async (n: number): Promise<string> => {
      gw.child.kill('SIGHUP')
      return nthReloadResult(gw, n)
    }
    await httpRequest(`${gw.url}/api/x`)
    writeFileSync(files.path('v.js'), 'export function onRequest(ctx) { ctx.setHeader("x-version", "2") }')
    expect(await reload(1)).toBe('applied') // routes.yaml unchanged: the plugin file is part of the revision
    await httpRequest(`${gw.url}/api/x`)
    writeFileSync(files.path('v.js'), 'export function onRequest(ctx) { ctx.setHeader("x-version", "3") ') // a syntax error
    expect(await reload(2)).toBe('rejected')
    expect(gw.stdout()).toContain(`routes[0].plugins[0].module: the plugin ${files.path('v.js')} failed to load: `)
    await httpRequest(`${gw.url}/api/x`)
    writeFileSync(files.path('v.js'), 'export function onRequest(ctx) { ctx.setHeader("x-version", "1") }') // back to the first content
    expect(await reload(3)).toBe('applied')
    await httpRequest(`${gw.url}/api/x`)
    expect(up.requests.map((r) => r.headers['x-version'])).toEqual(['1', '2', '2', '1'])
    expect(await gw.stop()).toEqual({ code: 0, signal: null })
  })

  it('tollgate validate reports each bad plugin on its own line at file:line:col', async () => {
    const files = plugins({
      'none.js': 'export const nothing = 1',
      'notfn.js': 'export const onRequest = 42',
      'cjs.cjs': 'const hooks = () => ({ onRequest() {} })\nmodule.exports = hooks()',
      'schema.js': 'export const configSchema = { type: "object", required: ["secret"] }\nexport function onRequest() {}',
      'ok.js': 'export function onRequest() {}',
    })
    const file = join(files.dir, 'routes.yaml')
    writeFileSync(file, [
      'upstreams: { api: { targets: [{ url: http://127.0.0.1:1 }] } }',
      'routes:',
      '  - id: a',
      '    match: { path: /a }',
      '    upstream: api',
      '    plugins:',
      '      - { module: ./missing.js }',
      '      - { module: ./none.js }',
      '      - { module: ./notfn.js }',
      '      - { module: ./cjs.cjs }',
      '      - { module: ./schema.js, config: { other: 1 } }',
      '      - { module: ./ok.js }',
      '',
    ].join('\n'))
    const validate = (): { status: number | null; stdout: string; stderr: string } =>
      spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8', timeout: 20_000 })
    const r = validate()
    expect(r.status).toBe(1)
    const dir = files.dir
    expect(r.stderr.split('\n')).toEqual([
      `${file}:7:19 routes[0].plugins[0].module: cannot read the plugin ${dir}/missing.js: no such file`,
      `${file}:8:19 routes[0].plugins[1].module: the plugin ${dir}/none.js exports none of onRequest, onResponse, onLog`,
      `${file}:9:19 routes[0].plugins[2].module: the plugin ${dir}/notfn.js exports onRequest as a number; it must be a function`,
      `${file}:10:19 routes[0].plugins[3].module: the plugin ${dir}/cjs.cjs exports none of onRequest, onResponse, onLog (it looks like a CommonJS module: write an ES module, .mjs or .js under "type": "module", with export function onRequest(ctx) {...})`,
      `${file}:11:32 routes[0].plugins[4].config: must have required property 'secret' (the plugin's configSchema requires it)`,
      `${file}: invalid — 5 errors`,
      '',
    ])
    writeFileSync(file, readFileSync(file, 'utf8').split('\n').filter((l) => !/missing|none|notfn|cjs|schema/.test(l)).join('\n'))
    expect(validate()).toMatchObject({ status: 0, stderr: '' })
  })

  it('runs plugins in each cluster worker (--workers 2), which imports them itself', async () => {
    const files = plugins({ 'w.js': 'export function onRequest(ctx) { ctx.setHeader("x-worker-pid", String(process.pid)) }' })
    const up = await startUpstream()
    const gw = await spawnGateway(routes(up, `      - { module: ${files.path('w.js')} }`), ['--workers', '2'])
    for (let i = 0; i < 6; i++) expect((await httpRequest(`${gw.url}/api/${i}`, { headers: { connection: 'close' } })).status).toBe(200)
    const pids = up.requests.map((r) => r.headers['x-worker-pid'])
    expect(pids.every((p) => typeof p === 'string' && p !== String(gw.pid))).toBe(true)
    expect(await gw.stop()).toEqual({ code: 0, signal: null })
  })

  it('survives a plugin\'s unhandled rejection in a real gateway process, and logs what a failing hook threw', async () => {
    const files = plugins({
      'stray.js': 'export function onRequest() { Promise.reject(new Error("nobody awaits me")) }',
      'boom.js': 'export function onRequest() { throw new Error("kaboom\\nsecond line") }',
    })
    const up = await startUpstream()
    const gw = await spawnGateway(`${routes(up, `      - { module: ${files.path('stray.js')} }`)}  - { id: boom, match: { path: /boom }, upstream: api, plugins: [{ module: ${files.path('boom.js')} }] }\n`)
    expect((await httpRequest(`${gw.url}/api/x`)).status).toBe(200)
    await gw.waitForStdout('unhandled promise rejection')
    expect((await httpRequest(`${gw.url}/boom`)).status).toBe(500)
    await gw.waitForStdout('"msg":"plugin boom onRequest failed: kaboom"')
    expect(gw.stdout()).toMatch(/"route":"boom","plugin":"boom","hook":"onRequest","reason":"threw","suppressed":0/)
    expect((await httpRequest(`${gw.url}/api/y`)).status).toBe(200)
    expect(gw.child.exitCode).toBe(null)
    expect(await gw.stop()).toEqual({ code: 0, signal: null })
  })
})
