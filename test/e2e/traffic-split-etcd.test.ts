// A weighted split whose weights change through etcd (README "Traffic splitting"; SPEC §3): the new weights
// are in force once the watch applies them, the route's limiter keeps its count, and an etcd route whose split
// names an undefined upstream is rejected with its key, keeping its previous version.
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createEtcdClient } from '../../src/etcd/client.js'
import { startEtcd, startEtcdGateway, type EtcdServer } from '../helpers/etcd.js'
import { startUpstream } from '../helpers/upstream.js'

let etcd: EtcdServer
let client: Etcd3

beforeAll(async () => {
  etcd = await startEtcd({ suite: true })
  client = await createEtcdClient({ endpoints: [etcd.endpoint] })
})
afterAll(async () => {
  client.close()
  await etcd.close()
})

describe('a split route in etcd', () => {
  it('changes weights live through etcd without resetting the route limiter, and rejects a split naming an undefined upstream', async () => {
    const v1 = await startUpstream({ body: 'v1' })
    const v2 = await startUpstream({ body: 'v2' })
    const prefix = '/split-1'
    const route = (w1: number, w2: number, second = 'v2'): string => JSON.stringify({
      match: { path: '/api/*' },
      upstream: [{ upstream: 'v1', weight: w1 }, { upstream: second, weight: w2 }],
      rateLimit: [{ algorithm: 'token-bucket', rate: 1, period: '1h', burst: 10, key: 'route' }],
    })
    await client.put(`${prefix}/routes/api`).value(route(1, 0))
    const gw = await startEtcdGateway(`etcd: { endpoints: ["${etcd.endpoint}"], prefix: "${prefix}", snapshotFile: "$DIR/snapshot.json" }
upstreams:
  v1: { targets: [{ url: ${v1.url} }] }
  v2: { targets: [{ url: ${v2.url} }] }
`)
    for (let i = 0; i < 4; i++) expect((await gw.get('/api/x')).body).toBe('v1')
    const limiter = gw.gateway.table.routes.get('api')!.parts.limiters[0]

    let applied = gw.nextEtcd()
    await client.put(`${prefix}/routes/api`).value(route(0, 1))
    await applied
    for (let i = 0; i < 4; i++) expect((await gw.get('/api/x')).body).toBe('v2')
    expect(gw.gateway.table.routes.get('api')!.parts.limiters[0]).toBe(limiter)
    // 10 tokens: 8 used across the change, 2 left.
    expect((await gw.get('/api/x')).status).toBe(200)
    expect((await gw.get('/api/x')).status).toBe(200)
    expect((await gw.get('/api/x')).status).toBe(429)

    applied = gw.nextEtcd((e) => e.rejected > 0)
    await client.put(`${prefix}/routes/api`).value(route(1, 1, 'v3'))
    await applied
    const line = await gw.log.next((l) => l['key'] === `${prefix}/routes/api` && l.level === 50)
    expect(line.msg).toMatch(new RegExp(`^etcd ${prefix}/routes/api \\(rev \\d+\\): upstream\\[1\\]\\.upstream: upstream "v3" is not defined; defined upstreams: v1, v2; keeping the previous version`))
  })
})
