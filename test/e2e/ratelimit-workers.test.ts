// --workers N with scope: local (README "Rate limiting", Scopes): each worker counts 1/N of rate and burst,
// so the total across the workers stays at the limit. Node's cluster hands new connections to the workers
// in turn, so requests on new connections reach all of them.
import { describe, expect, it } from 'vitest'
import { httpRequest } from '../helpers/gateway.js'
import { spawnGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

describe('local limits with --workers', () => {
  it('gives each of 2 workers half of burst: 4 admitted in all, not 4 per worker', async () => {
    const up = await startUpstream()
    const gw = await spawnGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit: [{ algorithm: token-bucket, rate: 4, period: 1h, burst: 4, key: route }]
`, ['--workers', '2'])
    const codes: number[] = []
    const limits = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const r = await httpRequest(`${gw.url}/a`, { headers: { connection: 'close' } })
      codes.push(r.status)
      limits.add(String(r.headers['ratelimit-limit']))
    }
    expect(codes.filter((c) => c === 200)).toHaveLength(4)
    expect(codes.filter((c) => c === 429)).toHaveLength(16)
    expect([...limits]).toEqual(['2']) // what each worker's bucket holds
    expect(up.hits).toBe(4)
  }, 30_000)
})
