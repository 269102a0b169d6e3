// Hot reload (README "Configuration", reload): the
// gateway watches routes.yaml's directory and applies saves made in place, by rename and by a Kubernetes
// ConfigMap symlink swap; rejects a bad file while the old config keeps serving; keeps the connection
// pools of unchanged targets; and a load of a few hundred requests per second sees no error while the file
// is rewritten 20 times.
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { revisionOf } from '../../src/lifecycle/file-source.js'
import type { ReloadEvent } from '../../src/lifecycle/config-sources.js'
import { Gateway } from '../../src/lifecycle/gateway.js'
import { Metrics } from '../../src/telemetry/metrics.js'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { loadLoop, newLoadStats } from '../helpers/load.js'
import { startHoldingUpstream, startUpstream, type Upstream } from '../helpers/upstream.js'

const HEADER = 'listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n'

interface Watched {
  readonly gateway: Gateway
  readonly url: string
  readonly adminUrl: string
  readonly dir: string
  readonly configPath: string
  /** Every log line the gateway wrote, parsed. */
  readonly logs: Array<{ level: number; msg: string }>
}

/**
 * The in-process gateway with the real file watcher. The stat poll is slowed to a minute, so a test passes
 * only if the directory watch itself saw the save. `layout: 'configmap'` builds what the kubelet mounts:
 * routes.yaml -> ..data/routes.yaml, ..data -> ..<timestamp>/.
 */
async function startWatched(yaml: string, layout: 'file' | 'configmap' = 'file'): Promise<Watched> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-reload-'))
  const configPath = join(dir, 'routes.yaml')
  if (layout === 'file') writeFileSync(configPath, HEADER + yaml)
  else {
    mkdirSync(join(dir, '..2024_01_01_00_00_00.000000001'))
    writeFileSync(join(dir, '..2024_01_01_00_00_00.000000001', 'routes.yaml'), HEADER + yaml)
    symlinkSync('..2024_01_01_00_00_00.000000001', join(dir, '..data'))
    symlinkSync('..data/routes.yaml', configPath)
  }
  const logs: Array<{ level: number; msg: string }> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { logs.push(JSON.parse(line) as { level: number; msg: string }) } })
  const gateway = await Gateway.start({
    configPath, env: {}, log, watchFile: true, watchPollMs: 60_000, metrics: new Metrics({ defaultMetrics: false }),
  })
  onTestFinished(async () => {
    await gateway.shutdown()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    gateway, dir, configPath, logs,
    url: `http://127.0.0.1:${gateway.proxyAddress.port}`,
    adminUrl: `http://127.0.0.1:${gateway.adminAddress!.port}`,
  }
}

/** The reload event for text `revision`; register it before writing the file. */
function reloadOf(gateway: Gateway, revision: string, timeoutMs = 10_000): Promise<ReloadEvent> {
  return new Promise((resolve, reject) => {
    const seen: ReloadEvent[] = []
    const onReload = (event: ReloadEvent): void => {
      seen.push(event)
      if (event.revision !== revision) return
      clearTimeout(timer)
      gateway.events.off('reload', onReload)
      resolve(event)
    }
    const timer = setTimeout(() => {
      gateway.events.off('reload', onReload)
      reject(new Error(`no reload of revision ${revision} within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`))
    }, timeoutMs)
    gateway.events.on('reload', onReload)
  })
}

/** Writes the file (as given: in place) and waits until the gateway has dealt with exactly this text. */
async function save(w: Watched, yaml: string, how: 'in-place' | 'rename' | 'configmap' = 'in-place'): Promise<ReloadEvent> {
  const text = HEADER + yaml
  const done = reloadOf(w.gateway, revisionOf(text))
  writeAs(w.dir, text, how)
  return done
}

let swaps = 0

function writeAs(dir: string, text: string, how: 'in-place' | 'rename' | 'configmap'): void {
  const file = join(dir, 'routes.yaml')
  if (how === 'in-place') writeFileSync(file, text)
  else if (how === 'rename') {
    // What vim, VS Code and `kubectl cp` do: write a sibling, rename it over the original.
    const tmp = join(dir, `.routes.yaml.${++swaps}.tmp`)
    writeFileSync(tmp, text)
    renameSync(tmp, file)
  } else {
    // The kubelet's AtomicWriter: new timestamped dir, `..data_tmp` symlink to it, renamed over `..data`.
    const stamp = `..2024_01_01_00_00_00.${String(++swaps + 1).padStart(9, '0')}`
    mkdirSync(join(dir, stamp))
    writeFileSync(join(dir, stamp, 'routes.yaml'), text)
    symlinkSync(stamp, join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  }
}

function upstreamYaml(routes: string, upstreams: Record<string, string[]>): string {
  const lines = ['upstreams:']
  for (const [name, urls] of Object.entries(upstreams)) {
    lines.push(`  ${name}: { targets: [${urls.map((u) => `{ url: ${u} }`).join(', ')}] }`)
  }
  return `${lines.join('\n')}\nroutes:\n${routes}\n`
}

interface Sample { name: string; labels: Record<string, string>; value: number }

function samples(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    for (const pair of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return out
}

function valueOf(all: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return all.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

async function metricsOf(adminUrl: string): Promise<Sample[]> {
  const r = await httpRequest(adminUrl + '/metrics')
  expect(r.status).toBe(200)
  return samples(r.body)
}

describe('hot reload: the file watcher', () => {
  it('applies a routes.yaml written in place', async () => {
    const up = await startUpstream({ body: 'ok' })
    const w = await startWatched(upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] }))
    const inode = statSync(w.configPath).ino
    expect((await httpRequest(w.url + '/b/x')).status).toBe(404)

    const event = await save(w, upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: b, match: { path: /b/* }, upstream: api }`, { api: [up.url] }), 'in-place')

    expect(event.result).toBe('applied')
    expect(statSync(w.configPath).ino).toBe(inode)
    expect((await httpRequest(w.url + '/b/x')).status).toBe(200)
  })

  it('applies a file an editor renamed over routes.yaml', async () => {
    const up = await startUpstream({ body: 'ok' })
    const w = await startWatched(upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] }))
    const inode = statSync(w.configPath).ino

    const event = await save(w, upstreamYaml('  - { id: b, match: { path: /b/* }, upstream: api }', { api: [up.url] }), 'rename')

    expect(event.result).toBe('applied')
    expect(statSync(w.configPath).ino).not.toBe(inode)
    expect((await httpRequest(w.url + '/b/x')).status).toBe(200)
    expect((await httpRequest(w.url + '/a/x')).status).toBe(404)
    // The new inode is watched too: a second save by rename is seen as well.
    const again = await save(w, upstreamYaml('  - { id: c, match: { path: /c/* }, upstream: api }', { api: [up.url] }), 'rename')
    expect(again.result).toBe('applied')
    expect((await httpRequest(w.url + '/c/x')).status).toBe(200)
  })

  it('follows a Kubernetes ConfigMap update (..data symlink swap)', async () => {
    const up = await startUpstream({ body: 'ok' })
    const w = await startWatched(upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] }), 'configmap')

    const first = await save(w, upstreamYaml('  - { id: b, match: { path: /b/* }, upstream: api }', { api: [up.url] }), 'configmap')
    expect(first.result).toBe('applied')
    expect((await httpRequest(w.url + '/b/x')).status).toBe(200)
    expect((await httpRequest(w.url + '/a/x')).status).toBe(404)

    const second = await save(w, upstreamYaml('  - { id: c, match: { path: /c/* }, upstream: api }', { api: [up.url] }), 'configmap')
    expect(second.result).toBe('applied')
    expect((await httpRequest(w.url + '/c/x')).status).toBe(200)
  })
})

describe('hot reload: an invalid file', () => {
  it('is rejected with every error logged, keeps the old config serving, shows in /status and /metrics, and a valid file clears it', async () => {
    const up = await startUpstream({ body: 'ok' })
    const good = upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] })
    const w = await startWatched(good)
    const bad = upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api, bogus: 1 }
  - { id: b, match: { path: /b/* }, upstream: nowhere }
  - { id: c, match: { path: /c/* }, upstream: api, priority: high }`, { api: [up.url] })

    const rejected = await save(w, bad)

    expect(rejected.result).toBe('rejected')
    expect((await httpRequest(w.url + '/a/x')).status).toBe(200)
    expect((await httpRequest(w.url + '/c/x')).status).toBe(404)
    expect((await httpRequest(w.adminUrl + '/readyz')).status).toBe(200)
    const status = (await httpRequest(w.adminUrl + '/status')).json() as {
      config: { revision: string; rejected: Array<{ where: string; path: string; reason: string }>; rejectedAt: string | null }
    }
    expect(status.config.revision).toBe(revisionOf(HEADER + good))
    expect(status.config.rejected.map((r) => r.path)).toEqual(['routes[0].bogus', 'routes[1].upstream', 'routes[2].priority'])
    for (const r of status.config.rejected) expect(r.where).toMatch(/routes\.yaml:\d+:\d+$/)
    expect(status.config.rejectedAt).not.toBeNull()
    const errorLines = w.logs.filter((l) => l.level >= 50).map((l) => l.msg).join('\n')
    expect(errorLines).toContain('routes[0].bogus: unknown field "bogus"')
    expect(errorLines).toContain('routes[1].upstream: upstream "nowhere" is not defined')
    expect(errorLines).toContain('routes[2].priority: must be an integer')
    let m = await metricsOf(w.adminUrl)
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'rejected' })).toBe(1)
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'applied' })).toBe(1)

    // Saving the same bad text again (or the stat poll noticing the same save) is not a second rejection.
    const loggedErrors = w.logs.filter((l) => l.level >= 50).length
    expect((await save(w, bad)).result).toBe('unchanged')
    m = await metricsOf(w.adminUrl)
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'rejected' })).toBe(1)
    expect(w.logs.filter((l) => l.level >= 50).length).toBe(loggedErrors)

    const before = Date.now() / 1000
    const fixed = upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: c, match: { path: /c/* }, upstream: api, priority: 1 }`, { api: [up.url] })
    expect((await save(w, fixed)).result).toBe('applied')

    expect((await httpRequest(w.url + '/c/x')).status).toBe(200)
    const cleared = (await httpRequest(w.adminUrl + '/status')).json() as { config: { revision: string; rejected: unknown[]; rejectedAt: string | null } }
    expect(cleared.config).toMatchObject({ revision: revisionOf(HEADER + fixed), rejected: [], rejectedAt: null })
    m = await metricsOf(w.adminUrl)
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'applied' })).toBe(2)
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'rejected' })).toBe(1)
    expect(valueOf(m, 'tollgate_config_last_reload_success_timestamp_seconds', { source: 'file' })).toBeGreaterThanOrEqual(Math.floor(before))
  })

  it('clears the rejection when the bad edit is undone', async () => {
    const up = await startUpstream({ body: 'ok' })
    const good = upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] })
    const w = await startWatched(good)
    expect((await save(w, good.replace('upstream: api }', 'upstream: nope }'))).result).toBe('rejected')

    expect((await save(w, good)).result).toBe('unchanged')

    const status = (await httpRequest(w.adminUrl + '/status')).json() as { config: { rejected: unknown[]; rejectedAt: string | null } }
    expect(status.config).toMatchObject({ rejected: [], rejectedAt: null })
  })
})

describe('hot reload: what a reload keeps', () => {
  it('keeps the pooled upstream connections of targets a reload did not change', async () => {
    const seen = new Set<Socket>()
    const counting = (req: IncomingMessage, res: ServerResponse): void => {
      seen.add(req.socket)
      res.end('ok')
    }
    const up = await startUpstream({ handler: counting })
    const other = await startUpstream({ body: 'other' })
    const w = await startWatched(upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: b, match: { path: /b/* }, upstream: other }`, { api: [up.url], other: [other.url] }))
    for (let i = 0; i < 5; i++) expect((await httpRequest(w.url + '/a/x')).status).toBe(200)
    expect(seen.size).toBe(1)

    // An unrelated route changes, one is added, the other upstream changes: api's pool stays.
    expect((await save(w, upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: b, match: { path: /bb/* }, upstream: other }
  - { id: c, match: { path: /c/* }, upstream: api }`, { api: [up.url], other: [other.url, up.url] }))).result).toBe('applied')
    for (let i = 0; i < 5; i++) expect((await httpRequest(w.url + '/a/x')).status).toBe(200)
    expect(seen.size).toBe(1)

    // The upstream itself changes (a second target joins): the unchanged target keeps its pool.
    const second = await startUpstream({ body: 'second' })
    expect((await save(w, upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }`,
      { api: [up.url, second.url] }))).result).toBe('applied')
    const bodies = new Set<string>()
    for (let i = 0; i < 6; i++) bodies.add((await httpRequest(w.url + '/a/x')).body)
    expect(bodies).toEqual(new Set(['ok', 'second']))
    expect(seen.size).toBe(1)
  })

  it('closes the pool of a removed upstream', async () => {
    const up = await startUpstream({ body: 'ok' })
    const gone = await startUpstream({ body: 'gone' })
    const w = await startWatched(upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: g, match: { path: /g/* }, upstream: gone }`, { api: [up.url], gone: [gone.url] }))
    expect((await httpRequest(w.url + '/g/x')).body).toBe('gone')
    expect(gone.sockets.size).toBe(1)
    const closed = new Promise<void>((r) => [...gone.sockets][0]!.once('close', () => r()))

    expect((await save(w, upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] }))).result).toBe('applied')

    await closed
    expect(gone.sockets.size).toBe(0)
  })

  it('lets a request in flight on a route the reload removes finish with 200', async () => {
    const up = await startUpstream({ body: 'ok' })
    const slow = await startHoldingUpstream()
    const w = await startWatched(upstreamYaml(`  - { id: a, match: { path: /a/* }, upstream: api }
  - { id: slow, match: { path: /slow/* }, upstream: slow }`, { api: [up.url], slow: [slow.url] }))
    const inflight = httpRequest(w.url + '/slow/x')
    await slow.arrived

    expect((await save(w, upstreamYaml('  - { id: a, match: { path: /a/* }, upstream: api }', { api: [up.url] }))).result).toBe('applied')
    expect((await httpRequest(w.url + '/slow/x')).status).toBe(404)
    slow.release()

    const r = await inflight
    expect(r.status).toBe(200)
    expect(r.body).toBe('slow done')
    // Its completion must not bring the removed route's or upstream's series back into /metrics.
    const metrics = (await httpRequest(w.adminUrl + '/metrics')).body
    expect(metrics).not.toMatch(/route="slow"/)
    expect(metrics).not.toMatch(/upstream="slow"/)
  })

  it('keeps counters across reloads and drops the label sets of removed routes and upstreams', async () => {
    const up = await startUpstream({ body: 'ok' })
    const other = await startUpstream({ body: 'other' })
    const w = await startWatched(upstreamYaml(`  - { id: keep, match: { path: /keep/* }, upstream: api }
  - { id: drop, match: { path: /drop/* }, upstream: other }`, { api: [up.url], other: [other.url] }))
    for (let i = 0; i < 3; i++) await httpRequest(w.url + '/keep/x')
    await httpRequest(w.url + '/drop/x')
    let m = await metricsOf(w.adminUrl)
    expect(valueOf(m, 'tollgate_requests_total', { route: 'keep', method: 'GET', code: '200' })).toBe(3)
    expect(valueOf(m, 'tollgate_requests_total', { route: 'drop', method: 'GET', code: '200' })).toBe(1)
    expect(valueOf(m, 'tollgate_upstream_requests_total', { upstream: 'other' })).toBe(1)

    // keep changes (a rewrite) but stays; drop and its upstream go.
    expect((await save(w, upstreamYaml('  - { id: keep, match: { path: /keep/* }, upstream: api, rewrite: { stripPrefix: /keep } }',
      { api: [up.url] }))).result).toBe('applied')
    await httpRequest(w.url + '/keep/x')

    m = await metricsOf(w.adminUrl)
    expect(valueOf(m, 'tollgate_requests_total', { route: 'keep', method: 'GET', code: '200' })).toBe(4)
    expect(valueOf(m, 'tollgate_upstream_requests_total', { upstream: 'api', code: '200' })).toBe(4)
    expect(m.filter((s) => s.labels['route'] === 'drop')).toEqual([])
    expect(m.filter((s) => s.labels['upstream'] === 'other')).toEqual([])
    expect(valueOf(m, 'tollgate_config_reloads_total', { source: 'file', result: 'applied' })).toBe(2)
  })
})

// ---- the load test ----

/** Resolves with the first stdout log line (pino JSON) that `match` accepts, from `from` on. */
function logLine(proc: GatewayProcess, match: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let scanned = 0
    const scan = (): boolean => {
      const out = proc.stdout()
      const end = out.lastIndexOf('\n')
      if (end < scanned) return false
      for (const text of out.slice(scanned, end).split('\n')) {
        if (!text.startsWith('{')) continue
        const line = JSON.parse(text) as Record<string, unknown>
        if (match(line)) return finish(line)
      }
      scanned = end + 1
      return false
    }
    const onData = (): void => { scan() }
    const finish = (line: Record<string, unknown>): boolean => {
      clearTimeout(timer)
      proc.child.stdout!.off('data', onData)
      resolve(line)
      return true
    }
    const timer = setTimeout(() => {
      proc.child.stdout!.off('data', onData)
      reject(new Error(`no matching log line within ${timeoutMs} ms:\n${proc.stdout().slice(-2000)}\n${proc.stderr()}`))
    }, timeoutMs)
    // Listen first, then scan what is already there (the child writes only between our turns).
    proc.child.stdout!.on('data', onData)
    scan()
  })
}

describe('hot reload under load', () => {
  it('serves a few hundred requests per second with zero errors while routes.yaml is rewritten 20 times', async () => {
    const up1 = await startUpstream({ body: 'up1' })
    const up2 = await startUpstream({ body: 'up2' })
    const up3 = await startUpstream({ body: 'up3' })
    const slow = await startHoldingUpstream()
    // Generation g of the file: `stable` and `s2` exist throughout, everything else churns.
    const generation = (g: number, withSlow: boolean): string => {
      const upstreams: Record<string, string[]> = {
        main: [[up1.url], [up1.url, up2.url], [up2.url], [up2.url, up3.url]][g % 4]!, // targets change
        [g % 2 === 0 ? 'alt' : 'alt2']: [g % 2 === 0 ? up2.url : up3.url],        // upstream renamed
      }
      if (g % 3 !== 0) upstreams['extra'] = [up3.url]
      if (withSlow) upstreams['slow'] = [slow.url]
      const routes = [
        `  - { id: stable, match: { path: /stable/* }, upstream: main${g % 2 === 1 ? ', rewrite: { stripPrefix: /stable }' : ''} }`,
        `  - { id: s2, match: { path: /s2/*, methods: [GET${g % 2 === 0 ? ', POST' : ''}] }, upstream: ${g % 2 === 0 ? 'alt' : 'alt2'} }`,
        `  - { id: churn-${g}, match: { path: /churn/${g}/* }, upstream: main }`,
        `  - { id: churn-${g + 1}, match: { path: /churn/${g + 1}/* }, upstream: main }`,
      ]
      if (g % 3 !== 0) routes.push(`  - { id: extra, match: { path: /extra/*, host: "*.example.com" }, upstream: extra, priority: ${g} }`)
      if (withSlow) routes.push('  - { id: slow, match: { path: /slow/* }, upstream: slow }')
      return upstreamYaml(routes.join('\n'), upstreams)
    }
    const proc = await spawnGateway(generation(0, false))
    const header = `listen: ${proc.url.slice('http://'.length)}\nadmin: ${proc.adminUrl.slice('http://'.length)}\n`
    const dir = proc.dir
    const rewrite = async (yaml: string, how: 'in-place' | 'rename'): Promise<void> => {
      const text = header + yaml
      const revision = revisionOf(text)
      const applied = logLine(proc, (l) => (l['revision'] === revision && l['msg'] === 'config reloaded') || String(l['msg']).startsWith('config reload rejected'))
      writeAs(dir, text, how)
      const line = await applied
      expect(line['msg']).toBe('config reloaded')
    }

    let current = 0
    let running = true
    const stats = newLoadStats()
    const paths = (): Array<{ route: string; path: string }> => [
      { route: 'stable', path: '/stable/x?q=1' },
      { route: 's2', path: '/s2/y' },
      { route: 'churn', path: `/churn/${current}/z` },
      { route: 'stable', path: '/stable/' },
    ]
    // Six keep-alive clients at 70 req/s each: ~420 req/s while the latency stays under 14 ms.
    const loops = [0, 1, 2, 3, 4, 5].map(() => loadLoop(proc.url, 70, paths, () => running, stats, 3000))
    const startedMs = performance.now()
    let slowResult: Promise<{ status: number; body: string }> | null = null
    try {
      for (let g = 1; g <= 20; g++) {
        await new Promise((r) => setTimeout(r, 1000))
        if (g === 8) {
          // A slow request is in flight when the route it runs on is removed by the next reload.
          await rewrite(generation(g, true), 'in-place')
          slowResult = httpRequest(proc.url + '/slow/x')
          await slow.arrived
        } else {
          await rewrite(generation(g, false), g % 2 === 0 ? 'rename' : 'in-place')
        }
        current = g
        if (g === 9) expect((await httpRequest(proc.url + '/slow/x')).status).toBe(404)
        if (g === 10) slow.release()
      }
    } finally {
      running = false
      await Promise.all(loops)
      slow.release()
    }
    const elapsedS = (performance.now() - startedMs) / 1000
    const slowResponse = await slowResult!

    const stable = Object.fromEntries(stats.byRoute.get('stable') ?? [])
    const s2 = Object.fromEntries(stats.byRoute.get('s2') ?? [])
    const churn = Object.fromEntries(stats.byRoute.get('churn') ?? [])
    console.info(`reload load test: ${stats.sent} requests in ${elapsedS.toFixed(1)} s = ${(stats.sent / elapsedS).toFixed(0)} req/s; ` +
      `stable ${JSON.stringify(stable)}, s2 ${JSON.stringify(s2)}, churn ${JSON.stringify(churn)}, errors ${JSON.stringify(Object.fromEntries(stats.errors))}`)
    expect(Object.fromEntries(stats.errors)).toEqual({})
    expect(Object.keys(stable)).toEqual(['200'])
    expect(Object.keys(s2)).toEqual(['200'])
    for (const code of Object.keys(churn)) expect(['200', '404']).toContain(code)
    expect(stats.sent / elapsedS).toBeGreaterThan(200)
    expect(slowResponse).toMatchObject({ status: 200, body: 'slow done' })
    const metrics = samples((await httpRequest(proc.adminUrl + '/metrics')).body)
    expect(valueOf(metrics, 'tollgate_config_reloads_total', { source: 'file', result: 'applied' })).toBe(21)
    expect(valueOf(metrics, 'tollgate_config_reloads_total', { source: 'file', result: 'rejected' })).toBe(0)
    expect((await proc.stop()).code).toBe(0)
  }, 90_000)
})
