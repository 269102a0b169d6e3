// The retry budget (README "Retries and timeouts", retry.budget): retries in progress at most
// max(3, budget% of the requests in flight to the upstream); a retry over it is skipped and counted in
// tollgate_retries_skipped_total{reason="budget"}, as are not-idempotent and body-sent skips.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

async function metricValue(gw: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const text = (await gw.admin('/metrics')).body
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    const found = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

/**
 * Two targets that answer 503. The first `hold` requests (first attempts, all in flight together) are held
 * until the last of them arrived, then all answered at once; later ones (retries) are answered at once.
 */
async function failingPair(hold: number): Promise<{ targets: Upstream[]; hits: () => number }> {
  const held: ServerResponse[] = []
  let arrived = 0
  const answer = (res: ServerResponse): void => {
    res.writeHead(503, { 'content-type': 'text/plain' })
    res.end('down')
  }
  const handler = (_req: IncomingMessage, res: ServerResponse): void => {
    arrived++
    if (arrived > hold) return answer(res)
    held.push(res)
    if (arrived === hold) for (const r of held.splice(0)) answer(r)
  }
  const targets = [await startUpstream({ handler }), await startUpstream({ handler })]
  return { targets, hits: () => arrived }
}

function yaml(targets: readonly Upstream[], budget: string): string {
  return `
upstreams:
  api:
    targets: [${targets.map((t) => `{ url: ${t.url} }`).join(', ')}]
    retry: { attempts: 1, on: [503], backoff: 0ms, budget: ${budget} }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`
}

const CONCURRENT = 30

describe('retry budget', () => {
  it('caps retries of many concurrent failing requests at budget% of those in flight and counts the rest as skipped', async () => {
    const { targets, hits } = await failingPair(CONCURRENT)
    const gw = await startGateway(yaml(targets, '20%'))
    const responses = await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => gw.get(`/api/${i}`)))
    expect(responses.every((r) => r.status === 503)).toBe(true)
    const retried = await metricValue(gw, 'tollgate_retries_total', { route: 'api' })
    const skipped = await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'budget' })
    // 30 in flight when the failures arrive: 20 % of 30 is 6; fewer as requests end, never below 3.
    expect(retried).toBeGreaterThanOrEqual(3)
    expect(retried).toBeLessThanOrEqual(6)
    expect(retried + skipped).toBe(CONCURRENT)
    expect(hits()).toBe(CONCURRENT + retried)
  })

  it('retries every one of them with budget 100%', async () => {
    const { targets, hits } = await failingPair(CONCURRENT)
    const gw = await startGateway(yaml(targets, '100%'))
    await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => gw.get(`/api/${i}`)))
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(CONCURRENT)
    expect(await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'budget' })).toBe(0)
    expect(hits()).toBe(2 * CONCURRENT)
  })

  it('always allows 3 retries at once, even with budget 0%', async () => {
    const { targets } = await failingPair(10)
    const gw = await startGateway(yaml(targets, '0%'))
    await Promise.all(Array.from({ length: 10 }, (_, i) => gw.get(`/api/${i}`)))
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(3)
    expect(await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'budget' })).toBe(7)
  })

  it('gives the budget back when a retrying request ends', async () => {
    const { targets } = await failingPair(1)
    const gw = await startGateway(yaml(targets, '0%'))
    for (let i = 0; i < 5; i++) expect((await gw.get(`/api/${i}`)).status).toBe(503)
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(5)
    expect(await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'budget' })).toBe(0)
  })

  it('counts retries skipped because the method is not idempotent or the request body was sent', async () => {
    const { targets, hits } = await failingPair(0)
    const gw = await startGateway(yaml(targets, '20%'))
    expect((await gw.request('/api/x', { method: 'POST' })).status).toBe(503)
    expect((await gw.request('/api/x', { method: 'PUT', body: 'payload' })).status).toBe(503)
    expect(hits()).toBe(2)
    expect(await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'not-idempotent' })).toBe(1)
    expect(await metricValue(gw, 'tollgate_retries_skipped_total', { route: 'api', reason: 'body-sent' })).toBe(1)
    expect(await metricValue(gw, 'tollgate_retries_total', { route: 'api' })).toBe(0)
  })
})
