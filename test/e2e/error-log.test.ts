// The error log (issue 14 item 4): a failed request is one log line an operator sees at the default level,
// with route, target, failure kind and request id; a flood of them is held to a bounded rate.
import { describe, expect, it } from 'vitest'
import { httpRequest, spawnGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/upstream.js'

interface Line { level: number; msg: string; route?: string; status?: number; code?: string | null; target?: string; failure?: string; requestId?: string; suppressed?: number }

const lines = (text: string): Line[] => text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line)

describe('error log', () => {
  it('logs a 502 at warn with route, target, failure kind and request id, and holds a flood to a bounded rate', async () => {
    const dead = await freePort() // nothing listens: connect refused
    const gw = await spawnGateway(`
upstreams: { api: { targets: [{ url: "http://127.0.0.1:${dead}" }] } }
routes: [{ id: broken, match: { path: /b }, upstream: api }]
`)
    const first = await httpRequest(`${gw.url}/b`)
    expect(first.status).toBe(502)
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && !gw.stdout().includes('request failed')) await new Promise((r) => setTimeout(r, 20))
    const line = lines(gw.stdout()).find((l) => l.msg === 'request failed')!
    expect(line).toMatchObject({ level: 40, route: 'broken', status: 502, code: 'UPSTREAM_UNAVAILABLE', target: `127.0.0.1:${dead}`, failure: 'connect-failure', requestId: first.headers['x-request-id'], suppressed: 0 })

    const started = performance.now()
    await Promise.all(Array.from({ length: 300 }, () => httpRequest(`${gw.url}/b`)))
    const elapsedS = (performance.now() - started) / 1000
    await new Promise((r) => setTimeout(r, 300)) // pino writes asynchronously; and a few tokens come back
    expect((await httpRequest(`${gw.url}/b`)).status).toBe(502)
    while (Date.now() < deadline + 5000 && lines(gw.stdout()).filter((l) => l.msg === 'request failed').reduce((n, l) => n + 1 + (l.suppressed ?? 0), 0) < 302) await new Promise((r) => setTimeout(r, 20))
    const failed = lines(gw.stdout()).filter((l) => l.msg === 'request failed')
    // 50 at once, then 10 a second: far fewer than the 302 failures.
    expect(failed.length).toBeLessThanOrEqual(1 + 50 + Math.ceil((elapsedS + 1) * 10))
    expect(failed.reduce((n, l) => n + (l.suppressed ?? 0), 0)).toBeGreaterThan(200)
    expect(failed.reduce((n, l) => n + 1 + (l.suppressed ?? 0), 0)).toBe(302) // every failure is a line or counted in one
  }, 30_000)

  it('does not log gateway-made 4xx at the default level, nor an upstream\'s own 4xx', async () => {
    const gw = await spawnGateway(`
upstreams: { api: { targets: [{ url: "http://127.0.0.1:9" }] } }
routes: [{ id: r, match: { path: /r }, upstream: api }]
`)
    expect((await httpRequest(`${gw.url}/nowhere`)).status).toBe(404)
    expect((await httpRequest(`${gw.url}/r;jsessionid=1`)).status).toBe(400)
    await new Promise((r) => setTimeout(r, 200))
    expect(lines(gw.stdout()).filter((l) => l.msg === 'request refused' || l.msg === 'request failed')).toEqual([])
  })
})
