// A route's access list and key auth, per call, on the real classes (src/policy/access/, src/policy/auth/):
// AccessStep.admits on a mix of client addresses, beside node:net's BlockList on the same lists (the
// library the own parser was measured against), and KeyAuthStep.consumerOf (the SHA-256 of a key and the
// lookup). Run by micro-bench.ts in its own process, timed by batches.ts with the other operations.
import { BlockList, isIPv6 } from 'node:net'
import { AccessStep } from '../../src/policy/access/access-step.js'
import { KeyAuthStep } from '../../src/policy/auth/key-auth-step.js'
import { operation, type Operation } from './batches.js'
import { CALL_KEYS } from './micro-report.js'

const ALLOW = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '2001:db8::/32']
const DENY = ['10.9.0.0/16', '2001:db8:bad::/48']
/** Admitted, refused by allow, refused by deny, IPv6, IPv4-mapped: 1024 addresses cycling through the kinds. */
const ADDRESSES = Array.from({ length: 1024 }, (_, i) => {
  switch (i % 5) {
    case 0: return `10.${i & 7}.${(i >> 3) & 255}.${i & 255}`
    case 1: return `8.8.${(i >> 3) & 255}.${i & 255}`
    case 2: return `10.9.${(i >> 3) & 255}.${i & 255}`
    case 3: return `2001:db8:${(i & 0xfff).toString(16)}::${(i & 0xff).toString(16)}`
    default: return `::ffff:192.168.${(i >> 3) & 255}.${i & 255}`
  }
})
const KEY = 'bench-key-0123456789abcdef' // 26 bytes, like scenario key-auth's
const KEY_HASH = 'sha256:05e0ac5de7c9e8a2d1a03c0ff1dd4d2fc6d3ae8b1c7d1f6f0d0f0e4fd3e0f3b1' // not KEY's: consumerOf misses, as an invalid key

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList()
  for (const cidr of cidrs) {
    const [address = '', bits = ''] = cidr.split('/')
    list.addSubnet(address, Number(bits), isIPv6(address) ? 'ipv6' : 'ipv4')
  }
  return list
}

export function accessAuthOperations(): Operation[] {
  const none = { inc: (): void => {} }
  const step = new AccessStep(ALLOW, DENY, none)
  const allow = blockList(ALLOW)
  const deny = blockList(DENY)
  const auth = new KeyAuthStep({ keyHeader: 'x-api-key', queryParam: null, forwardConsumer: 'x-consumer' },
    { acme: { keyHash: KEY_HASH } }, { missing: none, invalid: none })
  return [
    operation(CALL_KEYS.accessAdmits, 'AccessStep.admits, 4 allow + 2 deny CIDRs, IPv4/IPv6/mapped mix', (i) => (step.admits(ADDRESSES[i & 1023]!) ? 1 : 0), true),
    operation(CALL_KEYS.accessBlockList, 'node:net BlockList.check, the same lists and addresses (peer)', (i) => {
      const ip = ADDRESSES[i & 1023]!
      const family = ip.indexOf(':') >= 0 ? 'ipv6' : 'ipv4'
      return !deny.check(ip, family) && allow.check(ip, family) ? 1 : 0
    }, true),
    operation(CALL_KEYS.keyAuthLookup, 'KeyAuthStep.consumerOf, a 26-byte key: SHA-256 + lookup', () => (auth.consumerOf(KEY) === null ? 1 : 0), true),
  ]
}
