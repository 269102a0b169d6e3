import { describe, expect, it } from 'vitest'
import { flatTraceparent, randomIds, requestIdFrom } from '../../src/http/ids.js'

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

  it('takes the request id\'s digits from hex digits 48-80 of the ids, and keeps each one as it was made', () => {
    const ids = '0123456789abcdef'.repeat(5)
    const first = requestIdFrom(ids)
    // Digits 48-55, 56-59, the version 4, 61-63, the variant from digit 64's low bits (0 -> 8), 65-67, 68-79.
    expect(first).toBe('01234567-89ab-4def-8123-456789abcdef')
    requestIdFrom('f'.repeat(80))
    expect(first).toBe('01234567-89ab-4def-8123-456789abcdef')
  })

  it('writes the traceparent sent upstream, and joins ids that are not 32 and 16 ASCII characters as strings', () => {
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736'
    expect(flatTraceparent(trace, '00f067aa0ba902b7', true)).toBe(`00-${trace}-00f067aa0ba902b7-01`)
    expect(flatTraceparent(trace, '00f067aa0ba902b7', false)).toBe(`00-${trace}-00f067aa0ba902b7-00`)
    expect(flatTraceparent('abc', 'def', false)).toBe('00-abc-def-00')
    const wide = 'é'.repeat(32)
    expect(flatTraceparent(wide, '00f067aa0ba902b7', true)).toBe(`00-${wide}-00f067aa0ba902b7-01`)
    const wider = '漢'.repeat(32)
    expect(flatTraceparent(wider, '00f067aa0ba902b7', true)).toBe(`00-${wider}-00f067aa0ba902b7-01`)
  })
})
