// The access log (README "Observability", "Access log"): one JSON line per request from a real gateway
// process (dist/src/cli.js), the log: section applied at start and at a reload, TOLLGATE_LOG_LEVEL over the
// file, --workers, and format: pretty with and without pino-pretty installed.
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

interface Line {
  readonly msg: string
  readonly pid: number
  readonly level: number
  readonly time: string
  readonly [field: string]: unknown
}

function jsonLines(text: string): Line[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line)
}

const accessLines = (proc: GatewayProcess): Line[] => jsonLines(proc.stdout()).filter((l) => l.msg === 'access')

/** Waits (bounded) until `done` holds for the process's stdout; the lines are written asynchronously. */
async function until(proc: GatewayProcess, done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 15 s\n${proc.stdout().slice(-3000)}\n${proc.stderr()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Rewrites routes.yaml (keeping the listeners) and SIGHUPs until the applied-reload count reaches `applied`. */
async function reload(proc: GatewayProcess, yaml: string, applied: number): Promise<void> {
  const listeners = readFileSync(proc.configPath, 'utf8').split('\n').slice(0, 2).join('\n')
  writeFileSync(proc.configPath, `${listeners}\n${yaml}`)
  process.kill(proc.pid, 'SIGHUP')
  const deadline = Date.now() + 15_000
  while (!(await httpRequest(proc.adminUrl + '/metrics')).body.includes(`tollgate_config_reloads_total{source="file",result="applied"} ${applied}\n`)) {
    if (Date.now() > deadline) throw new Error(`reload ${applied} not applied within 15 s\n${proc.stdout().slice(-2000)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('access log', () => {
  it('writes one JSON line per request with its route, path, status, target, attempts, bytes, duration and ids', async () => {
    const flaky = await startUpstream({ statuses: [503] })
    const steady = await startUpstream({ statuses: [200], body: 'hello' })
    const proc = await spawnGateway(`upstreams:
  api: { targets: [{ url: ${flaky.url} }, { url: ${steady.url} }], retry: { attempts: 1, on: [503] } }
  keyed: { targets: [{ url: ${steady.url} }] }
routes:
  - { id: api, match: { path: /api/:id }, upstream: api }
  - id: keyed
    match: { path: /keyed }
    upstream: keyed
    auth: { type: key, key: { consumers: { acme: { keyHash: "sha256:${createHash('sha256').update('k-acme').digest('hex')}" } } } }
`)
    const trace = '0af7651916cd43dd8448eb211c80319c'
    const sent = [
      await httpRequest(proc.url + '/api/1', { method: 'POST', body: 'abc', headers: { 'x-request-id': 'post-1' } }),
      await httpRequest(proc.url + '/api/2?x=1', { headers: { traceparent: `00-${trace}-b7ad6b7169203331-01`, 'x-request-id': 'get-2' } }),
      await httpRequest(proc.url + '/api/3', { headers: { 'x-request-id': 'get-3' } }),
      await httpRequest(proc.url + '//nowhere/%7e', { headers: { 'x-request-id': 'miss' } }),
    ]
    await until(proc, () => accessLines(proc).length >= 4, 'four access lines')
    const lines = accessLines(proc)
    // The consumer auth identified, and the client's HTTP version.
    expect(lines.map((l) => [l['consumer'], l['httpVersion']])).toEqual(Array.from({ length: 4 }, () => [null, '1.1']))
    expect((await httpRequest(proc.url + '/keyed', { headers: { 'x-api-key': 'k-acme', 'x-request-id': 'keyed' } })).status).toBe(200)
    await until(proc, () => accessLines(proc).length >= 5, 'the keyed access line')
    expect(accessLines(proc)[4]).toMatchObject({ requestId: 'keyed', route: 'keyed', consumer: 'acme', httpVersion: '1.1' })
    expect(lines.map((l) => l.requestId)).toEqual(['post-1', 'get-2', 'get-3', 'miss'])
    const byId = new Map(lines.map((l) => [l.requestId, l]))
    const steadyTarget = `127.0.0.1:${steady.port}`
    const flakyTarget = `127.0.0.1:${flaky.port}`

    // Round robin: one of the two GETs starts on the flaky target and is retried on the steady one.
    const gets = [byId.get('get-2')!, byId.get('get-3')!]
    expect(gets.map((l) => l.attempts).sort()).toEqual([1, 2])
    for (const l of gets) {
      expect(l).toMatchObject({ level: 30, route: 'api', method: 'GET', status: 200, code: null, upstream: 'api', target: steadyTarget, bytesIn: 0, bytesOut: 5 })
    }
    expect(byId.get('get-2')!.path).toBe('/api/2') // canonical path, no query
    expect(byId.get('get-2')!.traceId).toBe(trace)
    expect(byId.get('get-3')!.traceId).toMatch(/^[0-9a-f]{32}$/)
    expect(byId.get('get-3')!.traceId).not.toBe(trace)

    // Not idempotent: not retried, whichever target it met.
    const post = byId.get('post-1')!
    expect(post).toMatchObject({ route: 'api', method: 'POST', path: '/api/1', attempts: 1, bytesIn: 3, code: null })
    expect(post.target === steadyTarget ? [post.status, post.bytesOut] : [post.status, post.target]).toEqual(post.target === steadyTarget ? [200, 5] : [503, flakyTarget])

    // Answered by the gateway itself: the refusal's code, no upstream, the bytes of its JSON body.
    const miss = byId.get('miss')!
    expect(miss).toMatchObject({ route: null, method: 'GET', path: '/nowhere/~', status: 404, code: 'ROUTE_NOT_FOUND', upstream: null, target: null, attempts: 0, bytesIn: 0 })
    expect(miss.bytesOut).toBe(Buffer.byteLength(sent[3]!.body))

    for (const l of lines) {
      expect(typeof l.durationMs === 'number' && l.durationMs > 0).toBe(true)
      expect(Date.parse(l.time)).toBeGreaterThan(0)
      expect(l.pid).toBe(proc.pid)
    }
  }, 60_000)

  it('turns off and on with a reload, follows log.level, and TOLLGATE_LOG_LEVEL wins over the file', async () => {
    const up = await startUpstream({ statuses: [200] })
    const routes = `upstreams:
  up: { targets: [{ url: ${up.url} }] }
routes:
  - { id: r, match: { path: /r }, upstream: up }
`
    const proc = await spawnGateway(`log: { access: false }\n${routes}`, [], { TOLLGATE_LOG_LEVEL: undefined })
    const get = async (id: string): Promise<void> => {
      expect((await httpRequest(proc.url + '/r', { headers: { 'x-request-id': id } })).status).toBe(200)
    }
    await get('off-1')
    await reload(proc, `log: { access: true }\n${routes}`, 2)
    await get('on-1')
    await until(proc, () => accessLines(proc).length >= 1, 'the access line after access: true')
    await reload(proc, `log: { access: true, level: warn }\n${routes}`, 3)
    await get('warn-1')
    await reload(proc, `log: { access: false, level: info }\n${routes}`, 4)
    await get('off-2')
    await reload(proc, `log: { access: true }\n${routes}`, 5)
    await get('on-2')
    await until(proc, () => accessLines(proc).length >= 2, 'the access line after the last reload')
    expect(accessLines(proc).map((l) => l.requestId)).toEqual(['on-1', 'on-2'])
    // At level warn the reload's own info line is not written either; at info it is.
    expect(jsonLines(proc.stdout()).filter((l) => l.msg === 'config reloaded').map((l) => l.revision)).toHaveLength(3)

    // The variable overrides the file, as every TOLLGATE_* does: level warn in the file, access lines written.
    const overridden = await spawnGateway(`log: { level: warn }\n${routes}`, [], { TOLLGATE_LOG_LEVEL: 'info' })
    await httpRequest(overridden.url + '/r', { headers: { 'x-request-id': 'env-1' } })
    await until(overridden, () => accessLines(overridden).length >= 1, 'the access line under TOLLGATE_LOG_LEVEL=info')
    expect(accessLines(overridden)[0]!.requestId).toBe('env-1')
  }, 60_000)

  it('has each worker log its own requests, whole lines only', async () => {
    const up = await startUpstream({ statuses: [200] })
    const proc = await spawnGateway(`upstreams:
  up: { targets: [{ url: ${up.url} }] }
routes:
  - { id: r, match: { path: /r/* }, upstream: up }
`, ['--workers', '2'])
    const n = 200
    for (let i = 0; i < n; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => httpRequest(`${proc.url}/r/${i + j}`, { headers: { 'x-request-id': `w-${i + j}` } })))
    }
    await until(proc, () => accessLines(proc).length >= n, `${n} access lines`)
    // Every stdout line parses: no two workers' lines were interleaved.
    const all = proc.stdout().split('\n').filter((l) => l !== '')
    for (const l of all) expect(() => JSON.parse(l), l).not.toThrow()
    const lines = accessLines(proc)
    expect(new Set(lines.map((l) => l.requestId)).size).toBe(n)
    const status = (await httpRequest(proc.adminUrl + '/status')).json() as { workers: { processes: Array<{ pid: number }> } }
    const workerPids = status.workers.processes.map((p) => p.pid).sort()
    expect(workerPids).toHaveLength(2)
    expect([...new Set(lines.map((l) => l.pid))].sort()).toEqual(workerPids)
  }, 60_000)
})

describe('log.format: pretty', () => {
  const routes = (url: string): string => `log: { format: pretty }
upstreams:
  up: { targets: [{ url: ${url} }] }
routes:
  - { id: r, match: { path: /r }, upstream: up }
`

  it('writes lines for people through pino-pretty when it is installed, and JSON again after a reload', async () => {
    const up = await startUpstream({ statuses: [200] })
    const proc = await spawnGateway(routes(up.url))
    await httpRequest(proc.url + '/r', { headers: { 'x-request-id': 'pretty-1' } })
    await until(proc, () => proc.stdout().includes('pretty-1'), 'the access line')
    expect(proc.stdout()).toMatch(new RegExp(`\\] INFO \\(${proc.pid}\\): access\\n(    .*\\n)*    requestId: "pretty-1"\\n`))
    expect(proc.stdout()).toMatch(/\] INFO \(\d+\): tollgate started\n/)
    expect(jsonLines(proc.stdout())).toEqual([])

    await reload(proc, routes(up.url).replace('format: pretty', 'format: json'), 2)
    await httpRequest(proc.url + '/r', { headers: { 'x-request-id': 'json-after' } })
    await until(proc, () => accessLines(proc).length >= 1, 'a JSON access line after the reload')
    expect(accessLines(proc).map((l) => l.requestId)).toEqual(['json-after'])
  }, 60_000)

  it('writes JSON with one warning line when pino-pretty cannot be resolved', async () => {
    // The built gateway beside a node_modules that has every package but pino-pretty (symlinked).
    const root = resolve(import.meta.dirname, '../..')
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-nopretty-'))
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }))
    cpSync(join(root, 'dist/src'), join(dir, 'dist/src'), { recursive: true })
    cpSync(join(root, 'package.json'), join(dir, 'package.json'))
    mkdirSync(join(dir, 'node_modules'))
    const modules = join(root, 'node_modules')
    for (const name of readdirSync(modules)) if (name !== 'pino-pretty') symlinkSync(join(modules, name), join(dir, 'node_modules', name))
    // Node looks up every parent folder's node_modules too: one above the temp folder would hold pino-pretty.
    const from = createRequire(join(dir, 'dist/src/telemetry/log.js'))
    expect(() => from.resolve('pino-pretty'), 'pino-pretty must not be reachable from the copy (a node_modules above it?)').toThrow(/Cannot find module/)

    const up = await startUpstream({ statuses: [200] })
    const proc = await spawnGateway(routes(up.url), [], {}, join(dir, 'dist/src/cli.js'))
    await httpRequest(proc.url + '/r', { headers: { 'x-request-id': 'json-1' } })
    await until(proc, () => accessLines(proc).length >= 1, 'the access line')
    const warnings = jsonLines(proc.stdout()).filter((l) => l.level === 40)
    expect(warnings.map((l) => l.msg)).toEqual(['log.format: pretty needs the pino-pretty package, which is not installed (npm install pino-pretty); writing JSON lines instead'])
    expect(accessLines(proc)[0]!.requestId).toBe('json-1')
    expect(proc.stderr()).toBe('')
  }, 60_000)
})
