// IP addresses and CIDRs as numbers: an IPv4 address is one uint32, an IPv6 address four (most significant
// first). Used at config load (route `access` lists, checked by config/check.ts) and per request (the client
// address against a route's compiled access list, src/policy/access/), so parsing is a char-code scan that
// allocates nothing: node:net's BlockList parses the address string into a new SocketAddress on every
// check(). Measured (bench/micro/access-auth-bench.ts, 4 allow + 2 deny CIDRs, an IPv4/IPv6/mapped mix, on
// the shared 2-core VM under load): AccessStep.admits 70 ns per address, BlockList.check 8.4 us.

/** An IPv4 dotted quad (no leading zeros beyond one digit, as inet_pton) -> uint32, or -1. */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let value = 0
  let octet = 0
  let digits = 0
  let dots = 0
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x2e) { // '.'
      if (digits === 0 || dots === 3) return -1
      value = value * 256 + octet
      octet = 0
      digits = 0
      dots++
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && octet === 0) return -1 // a leading zero ("01"): octal in some parsers, refused
      octet = octet * 10 + (c - 0x30)
      if (octet > 255) return -1
      digits++
    } else {
      return -1
    }
  }
  if (digits === 0 || dots !== 3) return -1
  return value * 256 + octet
}

/**
 * An IPv6 address (`::` compression, an embedded IPv4 tail, a `%zone` suffix ignored) into out[0..3].
 * False when `s` is no IPv6 address (out is then garbage).
 */
export function parseIPv6(s: string, out: Uint32Array): boolean {
  let end = s.indexOf('%')
  if (end < 0) end = s.length
  if (end < 2) return false
  // Groups before the gap fill from the front, groups after it are collected and shifted to the back.
  let groups = 0
  let gapAt = -1
  let i = 0
  out[0] = 0; out[1] = 0; out[2] = 0; out[3] = 0
  if (s.charCodeAt(0) === 0x3a) { // leading "::"
    if (s.charCodeAt(1) !== 0x3a) return false
    gapAt = 0
    i = 2
    if (i === end) return true // "::"
  }
  const words = scratchGroups
  while (i < end) {
    // One group: up to 4 hex digits, or an IPv4 tail in the last two groups.
    let value = 0
    let digits = 0
    let j = i
    for (; j < end; j++) {
      const c = s.charCodeAt(j)
      const h = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1
      if (h < 0) break
      value = value * 16 + h
      digits++
    }
    if (j < end && s.charCodeAt(j) === 0x2e) { // '.': the rest is an IPv4 address
      const v4 = parseIPv4(s, i, end)
      if (v4 < 0 || groups > 6) return false
      words[groups++] = v4 >>> 16
      words[groups++] = v4 & 0xffff
      i = end
      break
    }
    if (digits === 0 || digits > 4 || groups === 8) return false
    words[groups++] = value
    if (j === end) { i = end; break }
    if (s.charCodeAt(j) !== 0x3a) return false
    if (j + 1 < end && s.charCodeAt(j + 1) === 0x3a) {
      if (gapAt >= 0) return false // a second "::"
      gapAt = groups
      i = j + 2
    } else {
      if (j + 1 === end) return false // a trailing single ':'
      i = j + 1
    }
  }
  if (gapAt < 0 ? groups !== 8 : groups > 7) return false
  // Lay the groups out: the ones after the gap go to the end.
  const after = gapAt < 0 ? 0 : groups - gapAt
  for (let g = 0; g < 8; g++) {
    let v = 0
    if (gapAt < 0 || g < gapAt) v = words[g]!
    else if (g >= 8 - after) v = words[gapAt + g - (8 - after)]!
    if ((g & 1) === 0) out[g >> 1] = v << 16
    else out[g >> 1] = (out[g >> 1]! | v) >>> 0
  }
  return true
}

const scratchGroups = new Uint32Array(8)

/** True when out[] (from parseIPv6) is an IPv4-mapped address (::ffff:a.b.c.d); out[3] is then its IPv4 value. */
export function isMappedIPv4(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff
}

/** A parsed CIDR: IPv4 as an inclusive range of uint32, IPv6 as prefix words and a prefix length. */
export type Cidr =
  | { readonly family: 4; readonly first: number; readonly last: number }
  | { readonly family: 6; readonly words: Uint32Array; readonly bits: number }

/**
 * `10.0.0.0/8`, `2001:db8::/32`, or a bare address (/32 or /128). An IPv4-mapped IPv6 CIDR of /96 or longer
 * is its IPv4 CIDR, since mapped clients are matched as IPv4. Host bits set (`10.0.0.1/8`) are a mistake
 * people make when they mean the network: refused, with the network named. Returns the reason as a string.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/')
  const address = slash < 0 ? text : text.slice(0, slash)
  const bitsText = slash < 0 ? null : text.slice(slash + 1)
  if (bitsText !== null && !/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) return `prefix length "${bitsText}" is not a number`
  if (address.indexOf(':') < 0) {
    const v4 = parseIPv4(address)
    if (v4 < 0) return `"${address}" is not an IPv4 address (a.b.c.d, each 0-255)`
    const bits = bitsText === null ? 32 : Number(bitsText)
    if (bits > 32) return `prefix length /${bits} is longer than 32 (IPv4)`
    return v4Range(v4, bits, text)
  }
  const words = new Uint32Array(4)
  if (address.includes('%') || !parseIPv6(address, words)) return `"${address}" is not an IPv6 address`
  const bits = bitsText === null ? 128 : Number(bitsText)
  if (bits > 128) return `prefix length /${bits} is longer than 128 (IPv6)`
  if (isMappedIPv4(words) && bits >= 96) return v4Range(words[3]!, bits - 96, text)
  for (let w = 0; w < 4; w++) {
    const hostBits = Math.max(0, Math.min(32, (w + 1) * 32 - bits))
    const mask = hostBits === 32 ? 0 : (0xffffffff << hostBits) >>> 0
    if ((words[w]! & ~mask) !== 0) return `"${text}" has bits set after the /${bits} prefix (host bits): write the network address`
  }
  return { family: 6, words, bits }
}

function v4Range(v4: number, bits: number, text: string): Cidr | string {
  const size = 2 ** (32 - bits)
  const first = Math.floor(v4 / size) * size
  if (first !== v4) return `"${text}" has bits set after the /${bits} prefix (host bits): the network is ${ipv4Text(first)}/${bits}`
  return { family: 4, first, last: first + size - 1 }
}

function ipv4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
}

/** True when the IPv6 words start with the cidr's prefix. */
export function inPrefix(words: Uint32Array, prefix: Uint32Array, bits: number): boolean {
  for (let w = 0; w < 4 && bits > 0; w++, bits -= 32) {
    const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0
    if (((words[w]! ^ prefix[w]!) & mask) >>> 0 !== 0) return false
  }
  return true
}
