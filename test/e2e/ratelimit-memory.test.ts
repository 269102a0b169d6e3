// Bounded limiter memory (README "Rate limiting", Scopes): 500,000 distinct keys pass through a gateway
// process whose limiters may hold 100,000 (the default limits.maxLimiterKeys). RSS stops growing once the
// store is full, the key count stays at the cap, and a client that is limited stays limited throughout:
// its key is never evicted in favour of the idle ones.
import { readFileSync } from 'node:fs'
import { Pool } from 'undici'
import { describe, expect, it } from 'vitest'
import { spawnGateway } from '../helpers/gateway.js'
import { startUpstream } from '../helpers/upstream.js'

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (m === null) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1]) / 1024
}

const TOTAL_KEYS = 500_000
const MAX_KEYS = 100_000
/**
 * The gateway's old space is capped, so that garbage the flood leaves cannot hide in a growing heap. The keys'
 * state is off the heap (key-store.ts: one table of 64-byte records, 16 MiB at 100,000 keys, and two small
 * arrays beside it): RSS at 0/100k/.../500k keys 75.7 / 125.3 / 125.5 / 125.5 / 125.6 / 125.7 MiB, heap used
 * at the end 18 MiB. (With a Map of objects before: 76 / 114 / 127 / 124 / 130 / 128, heap 48 MiB.) A store
 * that did not stop at the cap would add its records for every further 100,000 keys.
 */
const OLD_SPACE_MIB = 112
/** RSS growth allowed from the store full (100k keys) to 500k keys: eviction reuses records. */
const FULL_GROWTH_MIB = 30

describe('limiter memory', () => {
  it(`holds at most maxLimiterKeys keys and stops growing: ${TOTAL_KEYS.toLocaleString('en')} distinct keys, an active key limited throughout`, async () => {
    const up = await startUpstream()
    // Flood requests carry a new x-k each and the one x-flood value: per-key admits (a new key, a full
    // bucket, so it holds state) and flood-gate refuses, so the request is counted by neither and costs
    // a 429, not an upstream round trip. The active client sends x-k: active with a new x-flood each time:
    // flood-gate admits, so only per-key can refuse it.
    const gw = await spawnGateway(`
upstreams: { api: { targets: [{ url: ${up.url} }] } }
routes:
  - id: r
    match: { path: /a }
    upstream: api
    rateLimit:
      - { name: per-key, algorithm: token-bucket, rate: 1, period: 1h, burst: 2, key: "header:x-k" }
      - { name: flood-gate, algorithm: token-bucket, rate: 1, period: 1h, burst: 1, key: "header:x-flood" }
`, [], { TOLLGATE_LOG_LEVEL: 'warn', NODE_OPTIONS: `--max-old-space-size=${OLD_SPACE_MIB}` })
    const pool = new Pool(gw.url, { connections: 8, pipelining: 8 })
    try {
      const send = async (headers: Record<string, string>): Promise<number> => {
        const r = await pool.request({ path: '/a', method: 'GET', headers })
        await r.body.dump()
        return r.statusCode
      }
      let activeSent = 0
      const active = async (): Promise<number> => send({ 'x-k': 'active', 'x-flood': `a${activeSent++}` })
      expect([await active(), await active(), await active()]).toEqual([200, 200, 429])
      expect(await send({ 'x-k': 'first-flood', 'x-flood': 'flood' })).toBe(200) // empties flood-gate's bucket

      const rss: number[] = [rssMiB(gw.pid)]
      const activeCodes = new Set<number>()
      const BATCH = 2000
      for (let sent = 0; sent < TOTAL_KEYS; sent += BATCH) {
        const batch: Array<Promise<number>> = []
        for (let i = 0; i < BATCH; i++) batch.push(send({ 'x-k': `k${sent + i}`, 'x-flood': 'flood' }))
        const codes = await Promise.all(batch)
        expect(codes.every((c) => c === 429)).toBe(true)
        activeCodes.add(await active())
        if ((sent + BATCH) % 100_000 === 0) rss.push(rssMiB(gw.pid))
      }
      expect([...activeCodes]).toEqual([429])
      expect(up.hits).toBe(3) // two of the active client, one first-flood

      // rss[1] is after 100k keys (the store just full), rss[5] after 500k: the last 400k keys cost
      // evictions and garbage, not held state.
      const metrics = await fetch(`${gw.adminUrl}/metrics`).then((r) => r.text())
      const heapMiB = Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1]) / 2 ** 20
      console.log(`limiter memory: RSS MiB at 0/100k/200k/300k/400k/500k keys: ${rss.map((r) => r.toFixed(1)).join(' / ')}; heap used at the end ${heapMiB.toFixed(1)} MiB (old space capped at ${OLD_SPACE_MIB} MiB)`)
      expect(rss).toHaveLength(6)
      expect(rss[5]! - rss[0]!).toBeLessThan(120)
      expect(rss[5]! - rss[1]!).toBeLessThan(FULL_GROWTH_MIB)
      expect(metrics).toMatch(new RegExp(`^tollgate_ratelimit_keys ${MAX_KEYS}$`, 'm'))
    } finally {
      await pool.close()
      await gw.stop()
    }
  }, 240_000)
})
