import { describe, expect, it } from 'vitest'
import { randomIds, requestIdFrom } from '../../src/http/ids.js'
import { RequestHeaderFacts } from '../../src/http/request-facts.js'
import { nextTraceparent } from '../../src/http/trace-context.js'

describe('request and trace ids', () => {
  it('makes UUID v4 request ids, all distinct across pool refills', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 5000; i++) {
      const id = requestIdFrom(randomIds())
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
      seen.add(id)
    }
    expect(seen.size).toBe(5000)
  })

  it('starts a new trace with distinct trace and span ids, not sampled', () => {
    const traces = new Set<string>()
    for (let i = 0; i < 2000; i++) {
      const tp = nextTraceparent(new RequestHeaderFacts(), randomIds())
      expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
      traces.add(tp.slice(3, 35))
    }
    expect(traces.size).toBe(2000)
  })

  it('keeps an incoming trace id and flags, with a new span id as the parent', () => {
    const facts = new RequestHeaderFacts()
    facts.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    facts.traceparentCount = 1
    const ids = randomIds()
    expect(nextTraceparent(facts, ids)).toBe(`00-4bf92f3577b34da6a3ce929d0e0e4736-${ids.slice(32, 48)}-01`)
  })
})
