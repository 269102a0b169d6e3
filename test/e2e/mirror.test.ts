// Mirroring (README "Mirroring"): copies of a share of a route's requests to a mirror upstream, through a real
// gateway to real upstreams on 127.0.0.1. The real response never waits for the mirror; every copy ends as
// sent, dropped or failed in tollgate_mirror_requests_total.
import { describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort, startHoldingUpstream, startUpstream, type Upstream } from '../helpers/upstream.js'

async function metric(gw: TestGateway, result: string): Promise<number> {
  const text = (await gw.admin('/metrics')).body
  const m = new RegExp(`^tollgate_mirror_requests_total\\{route="api",result="${result}"\\} (\\d+)$`, 'm').exec(text)
  return m === null ? -1 : Number(m[1])
}

/** Resolves once `cond` holds: polled on /metrics, bounded by 10 s. */
async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Resolves when the mirror metrics say `n` copies have ended (sent + failed + dropped). */
async function copiesEnded(gw: TestGateway, n: number): Promise<void> {
  await until(async () => (await metric(gw, 'sent')) + (await metric(gw, 'failed')) + (await metric(gw, 'dropped')) >= n, `${n} mirror copies to end`)
}

const config = (real: Upstream, mirrorUrl: string, mirror: string, extra = ''): string => `
upstreams:
  real: { targets: [{ url: ${real.url} }] }
  shadow: { targets: [{ url: ${mirrorUrl} }]${extra} }
routes:
  - { id: api, match: { path: /api/* }, upstream: real, mirror: ${mirror} }
`

describe('mirroring', () => {
  it('copies requests with the method, path, query, headers and body the real upstream got, plus x-tollgate-mirror', async () => {
    const real = await startUpstream({ body: 'real' })
    const shadow = await startUpstream({ body: 'shadow', statuses: [500] })
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow, percent: 100 }'))
    const r = await gw.request('/api/items/7?x=1&y=%20', { method: 'POST', headers: { 'content-type': 'application/json', 'x-user': 'u1' }, body: '{"a":1}' })
    expect(r.status).toBe(200)
    expect(r.body).toBe('real')
    await copiesEnded(gw, 1)
    expect(await metric(gw, 'sent')).toBe(1)
    const got = real.requests[0]!
    const copy = shadow.requests[0]!
    expect(copy.method).toBe('POST')
    expect(copy.url).toBe('/api/items/7?x=1&y=%20')
    expect(copy.body.toString()).toBe('{"a":1}')
    expect(copy.headers['x-tollgate-mirror']).toBe('1')
    const { 'x-tollgate-mirror': _, connection: _c, ...copyHeaders } = copy.headers
    const { connection: _r, ...realHeaders } = got.headers
    expect(copyHeaders).toEqual(realHeaders)

    // A chunked body too: copied while it streams, sent once whole.
    const chunked = await gw.request('/api/stream', { method: 'PUT', body: (async function* () { yield Buffer.from('part1-'); yield Buffer.from('part2') })() as unknown as Buffer })
    expect(chunked.status).toBe(200)
    await copiesEnded(gw, 2)
    expect(shadow.requests[1]!.body.toString()).toBe('part1-part2')
    expect(real.requests[1]!.body.toString()).toBe('part1-part2')
  })

  it('copies about `percent` of the requests', async () => {
    const real = await startUpstream()
    const shadow = await startUpstream()
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow, percent: 25 }'))
    for (let i = 0; i < 2000; i++) await gw.get(`/api/${i}`)
    await until(async () => (await metric(gw, 'sent')) >= shadow.hits, 'the copies the mirror received to be counted')
    // Bernoulli(0.25) over 2,000: mean 500, sigma 19.4; +-100 is beyond 5 sigma.
    expect(real.hits).toBe(2000)
    expect(Math.abs(shadow.hits - 500)).toBeLessThan(100)
    expect(await metric(gw, 'sent')).toBe(shadow.hits)
  }, 60_000)

  it('answers the client while the mirror holds its copy unanswered, and counts the copy when the mirror answers', async () => {
    const real = await startUpstream({ body: 'real' })
    const shadow = await startHoldingUpstream('late')
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow }'))
    const r = await gw.get('/api/x')
    await shadow.arrived // the copy reached the mirror ...
    expect(r.body).toBe('real') // ... and the real answer came without waiting for the mirror's
    // A request with a body too, while the mirror still holds the first copy.
    const post = await gw.request('/api/y', { method: 'POST', body: 'payload' })
    expect(post.body).toBe('real')
    expect(await metric(gw, 'sent')).toBe(0)
    shadow.release()
    await copiesEnded(gw, 2)
    expect(await metric(gw, 'sent')).toBe(2)
  })

  it('answers the client when the mirror is down, counting the copy failed', async () => {
    const real = await startUpstream({ body: 'real' })
    const gw = await startGateway(config(real, `http://127.0.0.1:${await freePort()}`, '{ upstream: shadow }'))
    for (let i = 0; i < 3; i++) expect((await gw.get('/api/x')).body).toBe('real')
    await copiesEnded(gw, 3)
    expect(await metric(gw, 'failed')).toBe(3)
    expect(await metric(gw, 'sent')).toBe(0)
  })

  it('does not copy a body over maxBodySize, by Content-Length or while chunked, counting it dropped; the real request still gets it whole', async () => {
    const real = await startUpstream()
    const shadow = await startUpstream()
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow, maxBodySize: 1KiB }'))
    const big = Buffer.alloc(4096, 'a')
    expect((await gw.request('/api/a', { method: 'POST', body: big })).status).toBe(200)
    const chunks = (async function* () { yield big.subarray(0, 1000); yield big.subarray(1000) })()
    expect((await gw.request('/api/b', { method: 'POST', body: chunks as unknown as Buffer })).status).toBe(200)
    expect((await gw.request('/api/c', { method: 'POST', body: big.subarray(0, 1024) })).status).toBe(200)
    await copiesEnded(gw, 3)
    expect(await metric(gw, 'dropped')).toBe(2)
    expect(await metric(gw, 'sent')).toBe(1)
    expect(shadow.requests.map((q) => [q.url, q.body.length])).toEqual([['/api/c', 1024]])
    expect(real.requests.map((q) => q.body.length)).toEqual([4096, 4096, 1024])
  })

  it('drops copies past maxConcurrent while the mirror is slow, so the mirror cannot hold the gateway\'s memory', async () => {
    const real = await startUpstream()
    const shadow = await startHoldingUpstream()
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow, maxConcurrent: 2 }'))
    for (let i = 0; i < 5; i++) expect((await gw.get('/api/x')).status).toBe(200)
    await shadow.arrived
    expect(await metric(gw, 'dropped')).toBe(3)
    shadow.release()
    await copiesEnded(gw, 5)
    expect(await metric(gw, 'sent')).toBe(2)
    // Slots are free again.
    expect((await gw.get('/api/x')).status).toBe(200)
    await copiesEnded(gw, 6)
    expect(await metric(gw, 'sent')).toBe(3)
  })

  it('gives the copy up at the mirror upstream\'s timeouts.response, counting it failed', async () => {
    const real = await startUpstream()
    const shadow = await startHoldingUpstream()
    const gw = await startGateway(config(real, shadow.url, '{ upstream: shadow }', ', timeouts: { response: 200ms }'))
    expect((await gw.get('/api/x')).status).toBe(200)
    await shadow.arrived
    await copiesEnded(gw, 1)
    expect(await metric(gw, 'failed')).toBe(1)
  })
})
