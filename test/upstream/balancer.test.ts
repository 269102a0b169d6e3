import { describe, expect, it } from 'vitest'
import { createBalancer, hash32, type Balancer, type BalancerKind } from '../../src/upstream/balancer.js'
import { Target } from '../../src/upstream/target.js'

const NONE: readonly Target[] = []
const KINDS: readonly BalancerKind[] = ['round-robin', 'least-request', 'random', 'hash']

/** mulberry32: a small seeded generator, so every distribution below is reproducible. */
function seeded(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function makeTargets(...weights: number[]): Target[] {
  return weights.map((weight, i) => new Target(`http://127.0.0.1:${9001 + i}`, weight))
}

function names(targets: readonly Target[]): Map<Target, string> {
  return new Map(targets.map((t, i) => [t, String.fromCharCode(97 + i)]))
}

function sequence(balancer: Balancer, targets: readonly Target[], picks: number, hashValue: string | null = null): string {
  const label = names(targets)
  let out = ''
  for (let i = 0; i < picks; i++) {
    const t = balancer.pick(NONE, 0, hashValue)
    out += t === null ? '-' : label.get(t)
  }
  return out
}

function shares(balancer: Balancer, targets: readonly Target[], picks: number): number[] {
  const counts = new Map<Target, number>()
  for (let i = 0; i < picks; i++) {
    const t = balancer.pick(NONE, 0, null)
    if (t !== null) counts.set(t, (counts.get(t) ?? 0) + 1)
  }
  return targets.map((t) => (counts.get(t) ?? 0) / picks)
}

function keys(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `user-${i}`)
}

function assignment(balancer: Balancer, keyList: readonly string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const key of keyList) out.set(key, balancer.pick(NONE, 0, key)?.url ?? 'none')
  return out
}

describe.each(KINDS)('every balancer (%s)', (kind) => {
  it('returns null when there are no targets', () => {
    expect(createBalancer(kind, [], seeded(1)).pick(NONE, 0, 'k')).toBeNull()
  })

  it('never picks an unhealthy or closing target', () => {
    const targets = makeTargets(1, 1, 1)
    targets[0]!.healthy = false
    targets[2]!.closing = true
    const balancer = createBalancer(kind, targets, seeded(2))
    for (let i = 0; i < 200; i++) {
      expect(balancer.pick(NONE, 0, `key-${i}`)).toBe(targets[1])
      expect(balancer.pick(NONE, 0, null)).toBe(targets[1])
    }
  })

  it('skips the targets already tried and returns null once every healthy target was tried', () => {
    const targets = makeTargets(3, 1, 1)
    targets[2]!.healthy = false
    const balancer = createBalancer(kind, targets, seeded(3))
    const tried: Target[] = [targets[0]!, targets[1]!, targets[2]!]
    for (let i = 0; i < 100; i++) expect(balancer.pick(tried, 1, `key-${i}`)).toBe(targets[1])
    expect(balancer.pick(tried, 2, 'key')).toBeNull()
    expect(balancer.pick(tried, 2, null)).toBeNull()
  })

  it('reads only the first triedCount entries of the tried array', () => {
    const targets = makeTargets(1, 1)
    const balancer = createBalancer(kind, targets, seeded(4))
    const tried: Target[] = [targets[0]!, targets[1]!]
    for (let i = 0; i < 50; i++) expect(balancer.pick(tried, 1, `key-${i}`)).toBe(targets[1])
  })

  it('picks unhealthy targets when asked to ignore health, but still skips closing and tried ones', () => {
    const targets = makeTargets(1, 1, 1)
    for (const t of targets) t.healthy = false
    targets[0]!.closing = true
    const balancer = createBalancer(kind, targets, seeded(5))
    expect(balancer.pick(NONE, 0, 'k')).toBeNull()
    expect(balancer.pick([targets[1]!], 1, 'k', true)).toBe(targets[2])
  })
})

describe('round-robin', () => {
  it('spreads weights 5:1:1 smoothly as a a b a c a a, and repeats', () => {
    const targets = makeTargets(5, 1, 1)
    expect(sequence(createBalancer('round-robin', targets), targets, 21)).toBe('aabacaa'.repeat(3))
  })

  it('cycles through equal weights in order', () => {
    const targets = makeTargets(1, 1, 1)
    expect(sequence(createBalancer('round-robin', targets), targets, 9)).toBe('abcabcabc')
  })

  it('gives each target exactly its weight in every period of sum(weights) picks', () => {
    const targets = makeTargets(7, 3, 2, 1)
    const got = shares(createBalancer('round-robin', targets), targets, 13 * 100)
    expect(got.map((s) => Math.round(s * 13))).toEqual([7, 3, 2, 1])
  })

  it('keeps serving the remaining targets by weight while one is unhealthy', () => {
    const targets = makeTargets(2, 1, 1)
    const balancer = createBalancer('round-robin', targets)
    targets[1]!.healthy = false
    expect(sequence(balancer, targets, 6)).toBe('acaaca')
  })
})

describe('random', () => {
  it('follows the weights over 10k picks', () => {
    const targets = makeTargets(5, 3, 2)
    const got = shares(createBalancer('random', targets, seeded(42)), targets, 10_000)
    for (const [i, expected] of [0.5, 0.3, 0.2].entries()) expect(Math.abs(got[i]! - expected)).toBeLessThan(0.02)
  })
})

describe('least-request', () => {
  it('follows the weights over 10k picks when every target is idle', () => {
    const targets = makeTargets(5, 3, 2)
    const got = shares(createBalancer('least-request', targets, seeded(7)), targets, 10_000)
    for (const [i, expected] of [0.5, 0.3, 0.2].entries()) expect(Math.abs(got[i]! - expected)).toBeLessThan(0.02)
  })

  it('never picks the most loaded of three targets', () => {
    const targets = makeTargets(1, 1, 1)
    targets[0]!.inflight = 10
    targets[1]!.inflight = 1
    const got = shares(createBalancer('least-request', targets, seeded(8)), targets, 3000)
    expect(got[0]).toBe(0)
    // c is idle and wins every pairing it is in (2 of 3 pairs); b wins only the pair (a, b).
    expect(got[2]).toBeGreaterThan(0.6)
    expect(got[1]).toBeGreaterThan(0.25)
  })

  it('compares load relative to weight', () => {
    const targets = makeTargets(2, 1)
    const balancer = createBalancer('least-request', targets, seeded(9))
    targets[0]!.inflight = 3 // 1.5 per unit of weight
    targets[1]!.inflight = 1 // 1.0
    for (let i = 0; i < 50; i++) expect(balancer.pick(NONE, 0, null)).toBe(targets[1])
    targets[0]!.inflight = 1 // 0.5
    for (let i = 0; i < 50; i++) expect(balancer.pick(NONE, 0, null)).toBe(targets[0])
  })

  it('balances a simulated load: requests finish at the same rate, busier targets get fewer', () => {
    const targets = makeTargets(1, 1, 1, 1)
    const balancer = createBalancer('least-request', targets, seeded(10))
    targets[0]!.inflight = 20
    const counts = [0, 0, 0, 0]
    for (let i = 0; i < 400; i++) {
      const t = balancer.pick(NONE, 0, null)!
      t.inflight++
      counts[targets.indexOf(t)]!++
    }
    expect(counts[0]).toBeLessThan(counts[1]!)
    // After 400 picks the loads are nearly level.
    const loads = targets.map((t) => t.inflight)
    expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(3)
  })
})

describe('hash', () => {
  const keyList = keys(10_000)

  it('sends the same key to the same target every time', () => {
    const targets = makeTargets(1, 1, 1)
    const balancer = createBalancer('hash', targets)
    const first = balancer.pick(NONE, 0, 'user-42')
    for (let i = 0; i < 100; i++) expect(balancer.pick(NONE, 0, 'user-42')).toBe(first)
    // A balancer built again from equal targets, listed in another order, agrees.
    const again = makeTargets(1, 1, 1).reverse()
    const rebuilt = assignment(createBalancer('hash', again), keyList)
    expect(rebuilt).toEqual(assignment(balancer, keyList))
  })

  it('spreads 10k keys over the targets by weight', () => {
    const targets = makeTargets(1, 1, 2)
    const got = assignment(createBalancer('hash', targets), keyList)
    const count = (url: string) => [...got.values()].filter((u) => u === url).length / keyList.length
    expect(count(targets[0]!.url)).toBeGreaterThan(0.18)
    expect(count(targets[0]!.url)).toBeLessThan(0.32)
    expect(count(targets[1]!.url)).toBeGreaterThan(0.18)
    expect(count(targets[1]!.url)).toBeLessThan(0.32)
    expect(count(targets[2]!.url)).toBeGreaterThan(0.42)
    expect(count(targets[2]!.url)).toBeLessThan(0.58)
  })

  it('moves about 1/N of 10k keys, all to the new target, when a fifth target is added', () => {
    const four = makeTargets(1, 1, 1, 1)
    const five = makeTargets(1, 1, 1, 1, 1)
    const before = assignment(createBalancer('hash', four), keyList)
    const after = assignment(createBalancer('hash', five), keyList)
    const moved = keyList.filter((k) => before.get(k) !== after.get(k))
    expect(moved.length / keyList.length).toBeGreaterThan(0.14)
    expect(moved.length / keyList.length).toBeLessThan(0.26)
    for (const k of moved) expect(after.get(k)).toBe(five[4]!.url)
  })

  it('moves only the keys of a removed target, about 1/N of 10k keys', () => {
    const five = makeTargets(1, 1, 1, 1, 1)
    const four = five.filter((_, i) => i !== 2)
    const before = assignment(createBalancer('hash', five), keyList)
    const after = assignment(createBalancer('hash', four), keyList)
    const moved = keyList.filter((k) => before.get(k) !== after.get(k))
    expect(moved.length / keyList.length).toBeGreaterThan(0.14)
    expect(moved.length / keyList.length).toBeLessThan(0.26)
    for (const k of moved) expect(before.get(k)).toBe(five[2]!.url)
  })

  it('moves the keys of an unhealthy target to the others and leaves every other key in place', () => {
    const targets = makeTargets(1, 1, 1)
    const balancer = createBalancer('hash', targets)
    const before = assignment(balancer, keyList)
    targets[1]!.healthy = false
    const during = assignment(balancer, keyList)
    for (const k of keyList) {
      if (before.get(k) === targets[1]!.url) expect(during.get(k)).not.toBe(targets[1]!.url)
      else expect(during.get(k)).toBe(before.get(k))
    }
    const movedTo = new Set(keyList.filter((k) => before.get(k) === targets[1]!.url).map((k) => during.get(k)))
    expect(movedTo).toEqual(new Set([targets[0]!.url, targets[2]!.url]))
    targets[1]!.healthy = true
    expect(assignment(balancer, keyList)).toEqual(before)
  })

  it('retries a key on the target it would move to if the first one were down', () => {
    const targets = makeTargets(1, 1, 1)
    const balancer = createBalancer('hash', targets)
    const first = balancer.pick(NONE, 0, 'user-7')!
    const retry = balancer.pick([first], 1, 'user-7')
    first.healthy = false
    expect(retry).not.toBe(first)
    expect(balancer.pick(NONE, 0, 'user-7')).toBe(retry)
  })

  it('falls back to smooth weighted round-robin when the request has no hash key', () => {
    const targets = makeTargets(5, 1, 1)
    expect(sequence(createBalancer('hash', targets), targets, 7, null)).toBe('aabacaa')
  })

  it('keeps a ring of many heavy targets bounded and still spread', () => {
    const targets = Array.from({ length: 50 }, (_, i) => new Target(`http://10.0.0.${i + 1}:80`, 1000))
    const got = assignment(createBalancer('hash', targets), keyList)
    expect(new Set(got.values()).size).toBe(50)
  })
})

describe('hash32', () => {
  it('is stable and spreads neighbouring inputs', () => {
    expect(hash32('a')).toBe(hash32('a'))
    expect(hash32('x#1')).not.toBe(hash32('x#2'))
    // The top 4 bits vary across consecutive vnode names (plain FNV-1a keeps them evenly spaced).
    const tops = new Set(Array.from({ length: 16 }, (_, i) => hash32(`http://h:80#${i}`) >>> 28))
    expect(tops.size).toBeGreaterThan(6)
  })
})
