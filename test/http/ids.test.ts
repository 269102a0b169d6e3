import { describe, expect, it } from 'vitest'
import { randomIds, requestIdFrom } from '../../src/http/ids.js'

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
})
