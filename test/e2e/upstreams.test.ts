// Upstreams (README "Configuration"): static targets with weights, the four balancers and maxConcurrent, end to end.
import http, { type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startUpstream, type Upstream } from '../helpers/upstream.js'

/** An upstream that holds every response until release(); arrivals can be awaited. */
async function startHeldUpstream() {
  const held: ServerResponse[] = []
  let waiters: Array<{ count: number; resolve: () => void }> = []
  const server = http.createServer((req, res) => {
    req.resume()
    held.push(res)
    waiters = waiters.filter((w) => {
      if (held.length < w.count) return true
      w.resolve()
      return false
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  onTestFinished(async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get count() { return held.length },
    /** Resolves once `count` requests arrived in total. */
    arrived(count: number): Promise<void> {
      if (held.length >= count) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ count, resolve }))
    },
    releaseAll(): void {
      for (const res of held) if (!res.writableEnded) res.end('released')
    },
  }
}

function twoTargets(a: Upstream | { url: string }, b: Upstream | { url: string }, settings: string, weights: [number, number] = [1, 1]): string {
  return `
upstreams:
  api:
    targets: [{ url: ${a.url}, weight: ${weights[0]} }, { url: ${b.url}, weight: ${weights[1]} }]
${settings}
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`
}

describe('balancers', () => {
  it('round-robin follows the weights exactly: 2:1 over 30 requests is 20:10, interleaved', async () => {
    const a = await startUpstream({ body: 'a' })
    const b = await startUpstream({ body: 'b' })
    const gw = await startGateway(twoTargets(a, b, '    balancer: round-robin', [2, 1]))
    const order: string[] = []
    for (let i = 0; i < 30; i++) order.push((await gw.get('/api/x')).body)
    expect(a.hits).toBe(20)
    expect(b.hits).toBe(10)
    // Smooth: never three of the same in a row, b at every third position.
    expect(order.join('')).toBe('aba'.repeat(10))
  })

  it('hash on header:x-user-id keeps each user on one target and spreads users over both', async () => {
    const a = await startUpstream({ body: 'a' })
    const b = await startUpstream({ body: 'b' })
    const gw = await startGateway(twoTargets(a, b, '    balancer: hash\n    hashKey: header:x-user-id'))
    const placement = new Map<string, Set<string>>()
    for (let round = 0; round < 4; round++) {
      for (let u = 0; u < 20; u++) {
        const user = `user-${u}`
        const r = await gw.get('/api/x', { 'x-user-id': user })
        let set = placement.get(user)
        if (set === undefined) placement.set(user, set = new Set())
        set.add(r.body)
      }
    }
    for (const targets of placement.values()) expect(targets.size).toBe(1)
    const onA = [...placement.values()].filter((s) => s.has('a')).length
    expect(onA).toBeGreaterThan(0)
    expect(onA).toBeLessThan(20)
  })

  it('hash spreads requests without the key by round-robin', async () => {
    const a = await startUpstream()
    const b = await startUpstream()
    const gw = await startGateway(twoTargets(a, b, '    balancer: hash\n    hashKey: header:x-user-id'))
    for (let i = 0; i < 10; i++) expect((await gw.get('/api/x')).status).toBe(200)
    expect([a.hits, b.hits]).toEqual([5, 5])
  })

  it.each([
    // `username` first: only the exact parameter name counts.
    ['query:user', (u: string) => ({ path: `/api/x?username=same&user=${u}&b=2`, headers: {} })],
    ['path', (u: string) => ({ path: `/api/${u}?v=${Math.random()}`, headers: {} })],
    ['client-ip', (u: string) => ({ path: '/api/x', headers: { 'x-forwarded-for': `203.0.113.${u.slice(1)}` } })],
  ])('hash on %s keeps each key on one target', async (hashKey, requestFor) => {
    const a = await startUpstream({ body: 'a' })
    const b = await startUpstream({ body: 'b' })
    // client-ip: the test client is the trusted proxy, the address it forwards is the key.
    const gw = await startGateway(`clientIp: { trustedProxies: [127.0.0.1/32] }\n${twoTargets(a, b, `    balancer: hash\n    hashKey: ${hashKey}`)}`)
    const placement = new Map<string, Set<string>>()
    for (let round = 0; round < 3; round++) {
      for (let k = 0; k < 16; k++) {
        const { path, headers } = requestFor(`u${k}`)
        const body = (await gw.get(path, headers)).body
        placement.set(`u${k}`, (placement.get(`u${k}`) ?? new Set()).add(body))
      }
    }
    for (const targets of placement.values()) expect(targets.size).toBe(1)
    const onA = [...placement.values()].filter((t) => t.has('a')).length
    expect(onA).toBeGreaterThan(0)
    expect(onA).toBeLessThan(16)
  })

  it('hash keeps a user on its target across a reload that adds a target, unless the new one takes it', async () => {
    const a = await startUpstream({ body: 'a' })
    const b = await startUpstream({ body: 'b' })
    const c = await startUpstream({ body: 'c' })
    const gw = await startGateway(twoTargets(a, b, '    balancer: hash\n    hashKey: header:x-user-id'))
    const before = new Map<string, string>()
    for (let u = 0; u < 30; u++) before.set(`u${u}`, (await gw.get('/api/x', { 'x-user-id': `u${u}` })).body)
    expect(await gw.rewrite(`
upstreams:
  api:
    targets: [{ url: ${a.url} }, { url: ${b.url} }, { url: ${c.url} }]
    balancer: hash
    hashKey: header:x-user-id
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)).toBe('applied')
    let moved = 0
    for (const [user, was] of before) {
      const now = (await gw.get('/api/x', { 'x-user-id': user })).body
      if (now !== was) {
        moved++
        expect(now).toBe('c') // consistent hashing: keys only move to the new target
      }
    }
    expect(moved).toBeLessThan(20)
  })

  it('least-request keeps sending to the idle target while the other has requests in flight', async () => {
    const slow = await startHeldUpstream()
    const fast = await startUpstream()
    const gw = await startGateway(twoTargets(slow, fast, '    balancer: least-request'))
    onTestFinished(() => slow.releaseAll()) // runs before the gateway's drain (hooks run in reverse order)
    const pending = []
    for (let i = 0; i < 20; i++) {
      const r = gw.get('/api/x')
      pending.push(r)
      // Either the fast target answers, or the request is now held in flight on the slow one.
      await Promise.race([r, slow.arrived(slow.count + 1)])
    }
    // Power of two choices over two targets compares both: once the slow one holds a request, every
    // later pick goes to the fast one (random would put about half of them on the slow target).
    expect(slow.count).toBeLessThanOrEqual(1)
    expect(fast.hits).toBeGreaterThanOrEqual(19)
    slow.releaseAll()
    for (const r of await Promise.all(pending)) expect(r.status).toBe(200)
  })

  it('random spreads requests over every target', async () => {
    const a = await startUpstream()
    const b = await startUpstream()
    const gw = await startGateway(twoTargets(a, b, '    balancer: random'))
    for (let i = 0; i < 60; i++) expect((await gw.get('/api/x')).status).toBe(200)
    expect(a.hits + b.hits).toBe(60)
    // P(fewer than 10 of 60 on one side) ~ 1e-6.
    expect(a.hits).toBeGreaterThanOrEqual(10)
    expect(b.hits).toBeGreaterThanOrEqual(10)
  })
})

describe('maxConcurrent', () => {
  it('answers 503 OVERLOADED while slow requests hold every slot, then recovers', async () => {
    const held = await startHeldUpstream()
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${held.url} }], maxConcurrent: 2 }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    onTestFinished(() => held.releaseAll())
    const slow = [gw.get('/api/1'), gw.get('/api/2')]
    await held.arrived(2)
    const refused = await gw.get('/api/3')
    expect(refused.status).toBe(503)
    expect(refused.headers['x-tollgate-error']).toBe('OVERLOADED')
    expect(held.count).toBe(2)
    held.releaseAll()
    for (const r of await Promise.all(slow)) expect(r.status).toBe(200)
    const again = gw.get('/api/4')
    await held.arrived(3)
    held.releaseAll()
    expect((await again).status).toBe(200)
    const status = (await gw.admin('/status')).json() as { upstreams: Array<{ inflight: number }> }
    expect(status.upstreams[0]!.inflight).toBe(0)
  })

  it('frees the slot of a request whose client went away', async () => {
    const held = await startHeldUpstream()
    const gw = await startGateway(`
upstreams:
  api: { targets: [{ url: ${held.url} }], maxConcurrent: 1 }
routes:
  - { id: api, match: { path: /api/* }, upstream: api }
`)
    onTestFinished(() => held.releaseAll())
    const controller = new AbortController()
    const aborted = request(`${gw.url}/api/1`, { signal: controller.signal }).catch(() => 'aborted')
    await held.arrived(1)
    controller.abort()
    expect(await aborted).toBe('aborted')
    // The gateway sees the client's close asynchronously; /status shows when the slot is back.
    while (((await gw.admin('/status')).json() as { upstreams: Array<{ inflight: number }> }).upstreams[0]!.inflight !== 0) { /* next read */ }
    const next = gw.get('/api/2')
    await held.arrived(2)
    held.releaseAll()
    expect((await next).status).toBe(200)
  })
})
