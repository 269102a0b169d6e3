// The key's query parameter leaves the forwarded query; everything else stays byte for byte, in order.
import { describe, expect, it } from 'vitest'
import { stripQueryParam } from '../../../src/policy/auth/key-auth-step.js'

describe('stripQueryParam', () => {
  it('removes every occurrence of the parameter and keeps the rest as sent', () => {
    expect(stripQueryParam('', 'k')).toBe('')
    expect(stripQueryParam('?k=1', 'k')).toBe('')
    expect(stripQueryParam('?k', 'k')).toBe('')
    expect(stripQueryParam('?a=1&k=2&b=%20+x&k=3', 'k')).toBe('?a=1&b=%20+x')
    expect(stripQueryParam('?k=1&a&&b=', 'k')).toBe('?a&&b=')
    expect(stripQueryParam('?kk=1&xk=2&k2', 'k')).toBe('?kk=1&xk=2&k2')
    expect(stripQueryParam('?a=k', 'k')).toBe('?a=k')
  })
})
