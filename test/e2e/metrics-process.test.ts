// /metrics of a real gateway process (dist/src/cli.js), prom-client's default process and Node.js metrics
// included, after traffic of every kind and 20 reloads: `promtool check metrics` finds nothing (SPEC.md §8).
// test/e2e/admin.test.ts checks the in-process gateway, which runs without the default metrics.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DROPPED_DEFAULT_METRICS } from '../../src/telemetry/metrics.js'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { freePort, startUpstream } from '../helpers/upstream.js'

const PROMTOOL = ['/opt/prom/usr/bin/promtool', '/usr/bin/promtool'].find((p) => existsSync(p))

function routesYaml(ok: string, failing: string, slow: string, dead: string, version: number): string {
  // Each version adds a route of its own, so reloads add and remove label sets, not just counters.
  return `upstreams:
  ok: { targets: [{ url: ${ok} }] }
  failing: { targets: [{ url: ${failing} }], retry: { attempts: 0 } }
  slow: { targets: [{ url: ${slow} }], timeouts: { response: 200ms }, retry: { attempts: 0 } }
  dead: { targets: [{ url: ${dead} }], retry: { attempts: 0 } }
routes:
  - { id: ok, match: { path: /ok, methods: [GET] }, upstream: ok }
  - { id: small, match: { path: /small }, upstream: ok, maxBodySize: 10 }
  - { id: limited, match: { path: /limited }, upstream: ok, rateLimit: [{ algorithm: token-bucket, rate: 1, period: 1h, burst: 1 }] }
  - { id: failing, match: { path: /failing }, upstream: failing }
  - { id: slow, match: { path: /slow }, upstream: slow }
  - { id: dead, match: { path: /dead }, upstream: dead }
  - { id: v${version}, match: { path: /v${version} }, upstream: ok }
`
}

async function waitForMetric(proc: GatewayProcess, line: string): Promise<string> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const text = (await httpRequest(proc.adminUrl + '/metrics')).body
    if (text.includes(line)) return text
    if (Date.now() > deadline) throw new Error(`/metrics has no ${line} within 15 s:\n${proc.stdout().slice(-2000)}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('/metrics of a gateway process', () => {
  it.each([['one process', []], ['two workers', ['--workers', '2']]])('passes promtool check metrics after mixed traffic and 20 reloads (%s)', async (_name, args) => {
    expect(PROMTOOL, 'promtool missing: .ci/run extracts it from Debian\'s prometheus package into /opt/prom').toBeDefined()
    const ok = await startUpstream({ statuses: [200] })
    const failing = await startUpstream({ statuses: [503] })
    const slow = await startUpstream({ statuses: [200], delaysMs: [3000] })
    const dead = `http://127.0.0.1:${await freePort()}`
    const proc = await spawnGateway(routesYaml(ok.url, failing.url, slow.url, dead, 0), args, { TOLLGATE_LOG_LEVEL: 'warn' })
    const listeners = readFileSync(proc.configPath, 'utf8').split('\n').slice(0, 2).join('\n')

    const seen = new Set<number>()
    const send = async (path: string, init: { method?: string; body?: string } = {}): Promise<void> => {
      seen.add((await httpRequest(proc.url + path, init)).status)
    }
    const traffic = async (version: number): Promise<void> => {
      await send('/ok')
      await send(`/v${version}`)
      await send('/nowhere')
      await send('/ok', { method: 'POST' })
      await send('/small', { method: 'POST', body: 'x'.repeat(100) })
      await send('/limited')
      await send('/limited')
      await send('/failing')
      await send('/dead')
      await send('/slow')
    }
    await traffic(0)
    for (let i = 1; i <= 20; i++) {
      writeFileSync(proc.configPath, `${listeners}\n${routesYaml(ok.url, failing.url, slow.url, dead, i)}`)
      process.kill(proc.pid, 'SIGHUP')
      await waitForMetric(proc, `tollgate_config_reloads_total{source="file",result="applied"} ${i + 1}\n`)
      await traffic(i)
    }
    // With two workers each holds a bucket of its own: /limited may need more tries to meet one that is empty.
    for (let i = 0; i < 10 && !seen.has(429); i++) await send('/limited')
    expect([...seen].sort()).toEqual([200, 404, 405, 413, 429, 502, 503, 504])

    const text = (await httpRequest(proc.adminUrl + '/metrics')).body
    for (const code of [200, 405, 413, 429, 502, 503, 504]) expect(text).toMatch(new RegExp(`tollgate_requests_total\\{route="[a-z0-9]*",method="(GET|POST)",code="${code}"\\} \\d+`))
    expect(text).toContain('tollgate_requests_total{route="",method="GET",code="404"}')
    // prom-client's defaults are there, less the gauges named _total.
    expect(text).toMatch(/\nnodejs_heap_size_used_bytes \d+/)
    expect(text).toMatch(/\nprocess_cpu_seconds_total \d/)
    for (const name of DROPPED_DEFAULT_METRICS) expect(text).not.toContain(name)
    // Routes of earlier versions left with them.
    expect(text).not.toContain('route="v3"')

    const r = spawnSync(PROMTOOL!, ['check', 'metrics'], { input: text, encoding: 'utf8' })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect((await proc.stop()).code).toBe(0)
  }, 120_000)
})
