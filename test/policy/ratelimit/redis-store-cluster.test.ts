// RedisStore on a real Redis Cluster of 3 masters: decisions grouped by slot, exact counts across two
// clients for keys on different masters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keySlot } from '../../../src/policy/ratelimit/redis-key-slot.js'
import { startRedisCluster, type RedisCluster } from '../../helpers/redis.js'
import { decide, openStore, slidingWindow, tokenBucket } from './redis-decisions.js'

describe('RedisStore on a Redis Cluster (3 masters)', () => {
  let cluster: RedisCluster
  beforeAll(async () => { cluster = await startRedisCluster({ suite: true }) })
  afterAll(async () => { await cluster?.close() })

  it('computes the same slot as CLUSTER KEYSLOT', async () => {
    const keys = ['plain', 'tollgate:rl:{users|per-client|10.0.0.1}', 'a{}b', '{}{x}', 'x{y}z{w}', 'tollgate:rl:{r|l|ünïcødé ✓}', 'tollgate:rl:{r|l|a}b}']
    for (const key of keys) expect(keySlot(key), key).toBe(Number(await cluster.nodes[0]!.cli(['CLUSTER', 'KEYSLOT', key])))
  })

  it('two stores on the cluster admit exactly the limit for each of several keys on different masters', async () => {
    const a = await openStore({ cluster: cluster.urls })
    const b = await openStore({ cluster: [...cluster.urls].reverse() })
    const bucket = tokenBucket(1e-9, 20)
    const window = slidingWindow(20, 3_600_000)
    const keyValues = Array.from({ length: 8 }, (_, i) => `client-${i}`)
    const results = await Promise.all(keyValues.flatMap((k) => [bucket, window].flatMap((limit) => [
      decide(a.store, limit, k, 70), decide(b.store, limit, k, 70), // over 64 a slot: a full batch and the rest
    ])))
    expect(results.flat().filter((r) => !r.ok)).toEqual([])
    for (let i = 0; i < results.length; i += 2) {
      expect([...results[i]!, ...results[i + 1]!].filter((r) => r.allowed).length).toBe(20)
    }
    // The keys really were spread: more than one master holds some.
    const sizes = await Promise.all(cluster.nodes.map(async (n) => Number(await n.cli(['DBSIZE']))))
    expect(sizes.filter((s) => s > 0).length).toBeGreaterThan(1)
    expect(sizes.reduce((x, y) => x + y, 0)).toBe(16)
  })
})
