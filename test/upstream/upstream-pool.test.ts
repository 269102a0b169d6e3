import { describe, expect, it, onTestFinished } from 'vitest'
import { Target } from '../../src/upstream/target.js'
import { UpstreamPool, type TargetSpec } from '../../src/upstream/upstream-pool.js'
import { createTargetPool } from '../../src/upstream/undici-pool.js'

const NONE: readonly Target[] = []

function specs(count: number): TargetSpec[] {
  return Array.from({ length: count }, (_, i) => ({ url: `http://127.0.0.1:${9001 + i}`, weight: 1 }))
}

describe('maxConcurrent', () => {
  it('admits up to maxConcurrent requests and one more after a release', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(1), 'round-robin', 2, 'fail')
    expect(pool.tryAcquire()).toBe(true)
    expect(pool.tryAcquire()).toBe(true)
    expect(pool.tryAcquire()).toBe(false)
    expect(pool.inflight).toBe(2)
    pool.release()
    expect(pool.tryAcquire()).toBe(true)
    expect(pool.tryAcquire()).toBe(false)
  })

  it('counts but never refuses without maxConcurrent', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(1), 'round-robin', null, 'fail')
    for (let i = 0; i < 10_000; i++) expect(pool.tryAcquire()).toBe(true)
    expect(pool.inflight).toBe(10_000)
  })

  it('does not go below zero on an unmatched release', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(1), 'round-robin', 1, 'fail')
    pool.release()
    expect(pool.inflight).toBe(0)
    expect(pool.tryAcquire()).toBe(true)
    expect(pool.tryAcquire()).toBe(false)
  })

  it('shares the count across reloads: requests admitted by the old pool release into the new one', () => {
    const old = UpstreamPool.fromSpecs('users', specs(2), 'round-robin', 2, 'fail')
    expect(old.tryAcquire()).toBe(true)
    expect(old.tryAcquire()).toBe(true)
    const { pool } = old.withTargets(specs(3), { maxConcurrent: 3 })
    expect(pool.inflight).toBe(2)
    expect(pool.tryAcquire()).toBe(true)
    expect(pool.tryAcquire()).toBe(false)
    old.release()
    expect(pool.inflight).toBe(2)
    expect(pool.tryAcquire()).toBe(true)
  })
})

describe('picking', () => {
  it('picks through the configured balancer and skips tried targets', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(3), 'round-robin', null, 'fail')
    const [a, b, c] = pool.targets
    expect([pool.pick(NONE, 0, null), pool.pick(NONE, 0, null), pool.pick(NONE, 0, null)]).toEqual([a, b, c])
    const tried: Target[] = [a!, c!, b!]
    expect(pool.pick(tried, 2, null)).toBe(b)
    expect(pool.pick(tried, 3, null)).toBeNull()
  })

  it('with onAllUnhealthy route-all, picks among all targets not closing and not tried when none is healthy', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(3), 'round-robin', null, 'route-all')
    const [a, b, c] = pool.targets
    for (const t of pool.targets) t.healthy = false
    a!.closing = true
    expect(pool.isPanicking).toBe(true)
    const picked = new Set([pool.pick(NONE, 0, null), pool.pick(NONE, 0, null), pool.pick(NONE, 0, null)])
    expect(picked).toEqual(new Set([b, c]))
    expect(pool.pick([b!], 1, null)).toBe(c)
    expect(pool.pick([b!, c!], 2, null)).toBeNull()
  })

  it('with onAllUnhealthy fail, returns null when no target is healthy', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(2), 'least-request', null, 'fail')
    for (const t of pool.targets) t.healthy = false
    expect(pool.isPanicking).toBe(true)
    expect(pool.pick(NONE, 0, null)).toBeNull()
  })

  it('counts a closing healthy target as gone when deciding to panic', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(2), 'random', null, 'route-all')
    const [a, b] = pool.targets
    a!.closing = true
    b!.healthy = false
    expect(pool.isPanicking).toBe(true)
    expect(pool.pick(NONE, 0, null)).toBe(b)
  })

  it('does not panic when healthy targets exist but were all tried', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(2), 'round-robin', null, 'route-all')
    const [a, b] = pool.targets
    b!.healthy = false
    expect(pool.isPanicking).toBe(false)
    expect(pool.pick([a!], 1, null)).toBeNull()
  })

  it('keeps hashing a key to one target in panic mode', () => {
    const pool = UpstreamPool.fromSpecs('users', specs(3), 'hash', null, 'route-all')
    const first = pool.pick(NONE, 0, 'user-1')
    for (const t of pool.targets) t.healthy = false
    expect(pool.pick(NONE, 0, 'user-1')).toBe(first)
  })
})

describe('withTargets (reload)', () => {
  it('keeps the objects of unchanged targets, with their dispatcher, load and health, and reports the rest', () => {
    const old = UpstreamPool.fromSpecs('users', specs(3), 'round-robin', null, 'route-all')
    const [a, b, c] = old.targets
    const dispatcherA = createTargetPool(a!.origin, 1000)
    onTestFinished(() => dispatcherA.destroy())
    a!.dispatcher = dispatcherA
    a!.inflight = 4
    b!.healthy = false
    const { pool, added, removed } = old.withTargets([
      { url: 'http://127.0.0.1:9001/', weight: 1 }, // same target, written differently
      { url: 'http://127.0.0.1:9002', weight: 1 },
      { url: 'http://127.0.0.1:9010', weight: 2 },
    ])
    expect(pool.targets[0]).toBe(a)
    expect(pool.targets[1]).toBe(b)
    expect(a!.dispatcher).toBe(dispatcherA)
    expect(a!.inflight).toBe(4)
    expect(b!.healthy).toBe(false)
    expect(added.map((t) => t.url)).toEqual(['http://127.0.0.1:9010'])
    expect(pool.targets[2]).toBe(added[0])
    expect(removed).toEqual([c])
    // Nothing is closed by building: the old pool still serves c until the caller switches over.
    expect(c!.closing).toBe(false)
    expect(old.targets).toEqual([a, b, c])
  })

  it('applies a new weight to a kept target without replacing it', () => {
    const old = UpstreamPool.fromSpecs('users', specs(2), 'round-robin', null, 'fail')
    const [a, b] = old.targets
    const { pool, added, removed } = old.withTargets([{ url: a!.url, weight: 5 }, { url: b!.url, weight: 1 }])
    expect(pool.targets).toEqual([a, b])
    expect(added).toEqual([])
    expect(removed).toEqual([])
    expect(a!.weight).toBe(5)
    const seq = Array.from({ length: 6 }, () => (pool.pick(NONE, 0, null) === a ? 'a' : 'b')).join('')
    expect(seq).toBe('aaabaa')
  })

  it('keeps the settings unless told otherwise', () => {
    const old = UpstreamPool.fromSpecs('users', specs(1), 'hash', 10, 'fail')
    const same = old.withTargets(specs(1)).pool
    expect([same.name, same.balancerKind, same.maxConcurrent, same.onAllUnhealthy]).toEqual(['users', 'hash', 10, 'fail'])
    const changed = old.withTargets(specs(1), { balancer: 'random', maxConcurrent: null, onAllUnhealthy: 'route-all' }).pool
    expect([changed.balancerKind, changed.maxConcurrent, changed.onAllUnhealthy]).toEqual(['random', null, 'route-all'])
  })

  it('keeps the first of two specs with the same url', () => {
    const pool = UpstreamPool.fromSpecs('users', [
      { url: 'http://127.0.0.1:9001', weight: 2 },
      { url: 'http://127.0.0.1:9001/', weight: 7 },
    ], 'round-robin', null, 'fail')
    expect(pool.targets.map((t) => [t.url, t.weight])).toEqual([['http://127.0.0.1:9001', 2]])
  })

  it('refuses to be built from two Target objects with the same url', () => {
    const targets = [new Target('http://127.0.0.1:9001', 1), new Target('http://127.0.0.1:9001', 1)]
    expect(() => new UpstreamPool('users', 'round-robin', targets, null, 'fail')).toThrow(/listed twice/)
  })

  it('removes every target when reloaded with none, and then picks nothing', () => {
    const old = UpstreamPool.fromSpecs('users', specs(2), 'round-robin', null, 'route-all')
    const { pool, removed } = old.withTargets([])
    expect(removed).toEqual(old.targets)
    expect(pool.pick(NONE, 0, null)).toBeNull()
  })
})
