// IP addresses and CIDRs as numbers (src/lib/ip-address.ts): what inet_pton accepts, nothing else.
import { isIPv6 } from 'node:net'
import { describe, expect, it } from 'vitest'
import { parseCidr, parseIPv4, parseIPv6 } from '../../src/lib/ip-address.js'

function v6(text: string): string | null {
  const out = new Uint32Array(4)
  if (!parseIPv6(text, out)) return null
  return [...out].map((w) => w.toString(16).padStart(8, '0')).join('')
}

describe('IP address parsing', () => {
  it('reads IPv4 dotted quads and refuses anything else', () => {
    expect(parseIPv4('0.0.0.0')).toBe(0)
    expect(parseIPv4('10.1.2.3')).toBe(0x0a010203)
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff)
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1..2.3', '1.2.3.4 ', 'a.b.c.d', 'unknown']) expect(parseIPv4(bad), bad).toBe(-1)
  })

  it('reads IPv6 with ::, an IPv4 tail and a zone, as node:net does', () => {
    expect(v6('::')).toBe('0'.repeat(32))
    expect(v6('::1')).toBe('0'.repeat(31) + '1')
    expect(v6('2001:db8::')).toBe('20010db8' + '0'.repeat(24))
    expect(v6('2001:DB8:0:0:1:2:3:4')).toBe('20010db8000000000001000200030004')
    expect(v6('::ffff:10.1.2.3')).toBe('00000000000000000000ffff0a010203')
    expect(v6('fe80::1%eth0')).toBe('fe800000000000000000000000000001')
    expect(v6('1::2:3')).toBe('00010000000000000000000000020003')
    const bad = ['1', ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1:', '::1.2.3', '1:2:3:4:5:6:7:1.2.3.4', 'unknown']
    for (const text of bad) {
      expect(v6(text), text).toBeNull()
      expect(isIPv6(text), text).toBe(false)
    }
  })

  it('reads CIDRs, refuses host bits and long prefixes, and turns mapped IPv6 CIDRs into IPv4 ones', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ family: 4, first: 0x0a000000, last: 0x0affffff })
    expect(parseCidr('192.0.2.7')).toEqual({ family: 4, first: 0xc0000207, last: 0xc0000207 })
    expect(parseCidr('0.0.0.0/0')).toEqual({ family: 4, first: 0, last: 0xffffffff })
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ family: 4, first: 0x0a000000, last: 0x0affffff })
    expect(parseCidr('2001:db8::/32')).toMatchObject({ family: 6, bits: 32 })
    expect(parseCidr('10.0.0.1/8')).toBe('"10.0.0.1/8" has bits set after the /8 prefix (host bits): the network is 10.0.0.0/8')
    expect(parseCidr('10.0.0.0/33')).toBe('prefix length /33 is longer than 32 (IPv4)')
    expect(parseCidr('2001:db8::1/32')).toMatch(/host bits/)
    expect(parseCidr('::/129')).toBe('prefix length /129 is longer than 128 (IPv6)')
    expect(parseCidr('300.0.0.0/8')).toMatch(/is not an IPv4 address/)
    expect(parseCidr('1::2::3')).toMatch(/is not an IPv6 address/)
  })
})
