// Active health checks with --workers 2 (README "Health checks"): the primary probes once per instance, not
// once per worker, and every worker routes by its results, a replacement worker included.
//
// Which worker serves a connection: node:cluster's primary hands out connections round-robin (Linux
// default), so 20 fresh connections reach both workers; a worker that missed a result would send about a
// quarter of all requests to the target it did not know was down.
import http from 'node:http'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway, type GatewayProcess } from '../helpers/gateway.js'
import { startHealthUpstream, until } from '../helpers/health-upstream.js'

/** `count` GETs, each on a new connection (the cluster hands out connections, not requests). */
async function freshGets(url: string, count: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    out.push(await new Promise((resolve, reject) => {
      http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      }).on('error', reject)
    }))
  }
  return out
}

function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry))
    } catch { /* exited */ }
  }
  return out.sort((a, b) => a - b)
}

interface Status {
  upstreams: Array<{ targets: Array<{ url: string; health: { state: string | null; active: { state: string } | null } }> }>
  workers: { ready: number; restarts: number }
}

async function status(proc: GatewayProcess): Promise<Status> {
  return (await httpRequest(proc.adminUrl + '/status')).json() as Status
}

async function activeState(proc: GatewayProcess, url: string): Promise<string | null> {
  return (await status(proc)).upstreams.flatMap((u) => u.targets).find((t) => t.url === url)?.health.state ?? null
}

describe('active health checks with --workers 2', () => {
  it('probes each target once per interval (not once per worker) and every worker, a replacement too, routes by the results', async () => {
    const a = await startHealthUpstream('a')
    const b = await startHealthUpstream('b')
    const proc = await spawnGateway(`
upstreams:
  api:
    targets: [{ url: ${a.url} }, { url: ${b.url} }]
    healthCheck: { active: { path: /healthz, interval: 200ms, timeout: 150ms, healthyThreshold: 1, unhealthyThreshold: 1 } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`, ['--workers', '2'])
    expect(childrenOf(proc.pid)).toHaveLength(2)
    await until('both healthy at the primary', async () => (await activeState(proc, a.url)) === 'healthy' && (await activeState(proc, b.url)) === 'healthy')

    // One probe per interval per target: 2 s at 200 ms (±10% jitter) is about 10 probes; two probing workers would make about 20.
    const startA = a.probes
    const startB = b.probes
    await new Promise((r) => setTimeout(r, 2000))
    for (const n of [a.probes - startA, b.probes - startB]) {
      expect(n).toBeGreaterThanOrEqual(8)
      expect(n).toBeLessThanOrEqual(12)
    }
    expect(await freshGets(proc.url + '/api/x', 20)).toEqual(Array(20).fill(200))
    expect(b.traffic).toBeGreaterThan(0)

    b.probe = 500
    await until('b unhealthy at the primary', async () => (await activeState(proc, b.url)) === 'unhealthy')
    const bTraffic = b.traffic
    expect(await freshGets(proc.url + '/api/x', 20)).toEqual(Array(20).fill(200))
    expect(b.traffic).toBe(bTraffic)

    // A replacement worker learns every state from the primary when it says hello: without it, a and b
    // would both be pending there (panic: both get traffic).
    const [victim] = childrenOf(proc.pid) as [number]
    process.kill(victim, 'SIGKILL')
    await until('replacement ready', async () => {
      const s = await status(proc)
      return s.workers.restarts === 1 && s.workers.ready === 2
    }, 15_000)
    expect(await freshGets(proc.url + '/api/x', 20)).toEqual(Array(20).fill(200))
    expect(b.traffic).toBe(bTraffic)

    b.probe = 200
    await until('b healthy at the primary', async () => (await activeState(proc, b.url)) === 'healthy')
    await freshGets(proc.url + '/api/x', 20)
    expect(b.traffic).toBeGreaterThan(bTraffic)
    expect((await proc.stop()).code).toBe(0)
  })
})
