// /metrics exposes no family that nothing writes: an empty family reads as "nothing happened" for a feature
// that does not exist yet. A feature registers its families together with the code that writes them.
import { describe, expect, it } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'
import { resolve } from 'node:path'

const TENANT_PLUGIN = resolve(import.meta.dirname, '../../examples/plugins/tenant-router.js')

/**
 * Unlabelled families whose one sample may be 0 after the traffic below although code writes them. Each
 * needs its reason; a labelled family never belongs here (it has a sample only once something wrote it).
 */
const ZERO_AT_REST: ReadonlyMap<string, string> = new Map([
  ['tollgate_inflight_requests', 'read from the proxy at scrape time; 0 when no request is in flight'],
  ['tollgate_ratelimit_store_errors_total', 'counts failed Redis decisions; this config has no redis: section'],
])

interface Family {
  readonly type: string
  readonly samples: Array<{ readonly labelled: boolean; readonly value: number }>
}

/** Prometheus text format -> families by name (tollgate_* only). */
function families(text: string): Map<string, Family> {
  const out = new Map<string, Family>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (tollgate_\w+) (\w+)$/.exec(line)
    if (type !== null) out.set(type[1]!, { type: type[2]!, samples: [] })
  }
  for (const line of text.split('\n')) {
    const sample = /^(tollgate_\w+?)(_bucket|_sum|_count)?(\{[^}]*\})? (\S+)$/.exec(line)
    if (sample === null) continue
    const family = out.get(sample[1]!) ?? out.get(sample[1]! + (sample[2] ?? ''))
    family?.samples.push({ labelled: sample[3] !== undefined, value: Number(sample[4]) })
  }
  return out
}

describe('/metrics', () => {
  it('lists only families that the traffic wrote, apart from gauges that are 0 at rest for a stated reason', async () => {
    const up = await startUpstream({ statuses: [200, 502] })
    const gw = await startGateway(`
upstreams:
  users: { targets: [{ url: ${up.url} }], retry: { attempts: 1, on: [502] }, healthCheck: { passive: { consecutiveFailures: 1, maxEjectionPercent: 100 } } }
routes:
  - { id: users, match: { path: /users/:id }, upstream: users, rateLimit: [{ algorithm: token-bucket, rate: 100 }], circuitBreaker: {} }
  - { id: closed, match: { path: /closed }, upstream: users, access: { deny: [127.0.0.0/8] } }
  - { id: mirrored, match: { path: /mirrored }, upstream: users, mirror: { upstream: users } }
  - { id: keyed, match: { path: /keyed }, upstream: users, auth: { type: key, key: { consumers: { acme: { keyHash: "sha256:${'0'.repeat(64)}" } } } } }
  - { id: plugged, match: { path: /plugged }, upstream: users, plugins: [{ module: "${TENANT_PLUGIN}", config: { tenants: { acme: { shard: eu-1 } } } }] }
`)
    expect((await gw.get('/users/1')).status).toBe(200)
    expect((await gw.get('/users/2')).status).toBe(502)
    expect((await gw.request('/users/3', { method: 'POST' })).status).toBe(502) // a retry skipped: not idempotent
    expect((await gw.get('/nowhere')).status).toBe(404)
    expect((await gw.get('/closed')).status).toBe(403) // an auth failure (reason forbidden)
    await gw.get('/mirrored') // a mirror copy (tollgate_mirror_requests_total: its series are bound with the route)
    expect((await gw.get('/keyed')).status).toBe(401) // tollgate_consumer_requests_total: one series per configured consumer, bound with the route
    expect((await gw.get('/plugged')).status).toBe(400) // the tenant plugin's own answer (tollgate_plugin_errors_total: series bound with the route)

    const found = families((await gw.admin('/metrics')).body)
    expect(found.size).toBeGreaterThan(5)
    const unwritten = [...found].filter(([name, f]) => !ZERO_AT_REST.has(name) && !f.samples.some((s) => s.labelled || s.value !== 0))
    expect(unwritten.map(([name, f]) => `${name} (${f.type})`), 'registered, but nothing wrote them: register a family with the code that writes it').toEqual([])
    for (const name of ZERO_AT_REST.keys()) expect(found.has(name), `${name} is allow-listed but no longer exposed: drop it from ZERO_AT_REST`).toBe(true)
    // Without an etcd: section there is no etcd to be up or down: a 0 would trip an "etcd down" alert.
    expect(found.has('tollgate_etcd_up')).toBe(false)
  })
})
