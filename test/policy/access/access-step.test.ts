// A route's access list (src/policy/access/access-step.ts): deny wins, a non-empty allow list refuses the
// rest, IPv4-mapped clients are IPv4, and an address that does not parse is refused.
import { describe, expect, it } from 'vitest'
import { AccessStep } from '../../../src/policy/access/access-step.js'

const none = { inc: (): void => {} }

describe('access lists', () => {
  it('admits only what allow lists, minus what deny lists, for IPv4, IPv6 and mapped addresses', () => {
    const step = new AccessStep(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '10.1.0.0/16'], ['10.9.0.0/16', '2001:db8:bad::/48'], none)
    const admitted = (ip: string): boolean => step.admits(ip)
    expect(admitted('10.0.0.1')).toBe(true)
    expect(admitted('10.255.255.255')).toBe(true)
    expect(admitted('11.0.0.0')).toBe(false)
    expect(admitted('9.255.255.255')).toBe(false)
    expect(admitted('10.9.1.1')).toBe(false) // deny wins
    expect(admitted('192.168.1.7')).toBe(true)
    expect(admitted('192.168.1.8')).toBe(false)
    expect(admitted('::ffff:10.2.3.4')).toBe(true)
    expect(admitted('::ffff:a02:304')).toBe(true) // the same address, hex-written
    expect(admitted('::ffff:10.9.3.4')).toBe(false)
    expect(admitted('2001:db8:1::5')).toBe(true)
    expect(admitted('2001:db8:bad::5')).toBe(false)
    expect(admitted('2001:db9::1')).toBe(false)
    expect(admitted('::1')).toBe(false)
    expect(admitted('unknown')).toBe(false)
    expect(admitted('')).toBe(false)
  })

  it('admits everything but deny when allow is empty, and refuses what does not parse', () => {
    const step = new AccessStep([], ['203.0.113.0/24', '::1'], none)
    expect(step.admits('203.0.113.9')).toBe(false)
    expect(step.admits('::ffff:203.0.113.9')).toBe(false)
    expect(step.admits('203.0.114.9')).toBe(true)
    expect(step.admits('::1')).toBe(false)
    expect(step.admits('::2')).toBe(true)
    expect(step.admits('not-an-address')).toBe(false)
  })

  it('finds an address among many merged IPv4 ranges', () => {
    const cidrs: string[] = []
    for (let i = 0; i < 200; i++) cidrs.push(`10.${i}.0.0/16`)
    cidrs.push('10.0.0.0/12') // overlaps the first 16
    const step = new AccessStep(cidrs, [], none)
    for (let i = 0; i < 200; i++) expect(step.admits(`10.${i}.3.4`), `10.${i}.3.4`).toBe(true)
    expect(step.admits('10.200.0.0')).toBe(false)
    expect(step.admits('9.0.0.0')).toBe(false)
  })
})
