// The client's address: the socket peer, or X-Forwarded-For read right to left past trusted proxies
// (`clientIp.trustedProxies`). Used by forwarding headers, hashKey and (next) limiter keys.
import { BlockList, isIPv6, type Socket } from 'node:net'

/** Which peers may set forwarding headers: `clientIp.trustedProxies` (README "Headers"), built once per config. */
export class TrustedProxies {
  readonly #list: BlockList | null

  constructor(cidrs: readonly string[]) {
    if (cidrs.length === 0) {
      this.#list = null
      return
    }
    const list = new BlockList()
    for (const cidr of cidrs) {
      const [address = '', bits] = cidr.split('/')
      const family = isIPv6(address) ? 'ipv6' : 'ipv4'
      if (bits === undefined) list.addAddress(address, family)
      else list.addSubnet(address, Number(bits), family)
    }
    this.#list = list
  }

  isTrusted(peer: string): boolean {
    if (this.#list === null) return false
    return isIPv6(peer) ? this.#list.check(peer, 'ipv6') : this.#list.check(peer, 'ipv4')
  }

  /** Client address: X-Forwarded-For read right to left, skipping trusted proxies (the rightmost untrusted address is the one no client can forge). */
  clientIp(peer: string, forwardedFor: string | null): string {
    if (forwardedFor === null || !this.isTrusted(peer)) return peer
    const parts = forwardedFor.split(',')
    for (let i = parts.length - 1; i >= 0; i--) {
      const ip = parts[i]!.trim()
      if (ip !== '' && !this.isTrusted(ip)) return ip
    }
    return parts[0]!.trim() || peer
  }
}

/** `::ffff:127.0.0.1` -> `127.0.0.1`, so IPv4 CIDRs and logs see the address people expect. */
export function peerAddress(remote: string | undefined): string {
  if (remote === undefined) return ''
  return remote.startsWith('::ffff:') && remote.indexOf('.') > 0 ? remote.slice(7) : remote
}

const kPeer = Symbol('tollgate.peer')

/**
 * The client address of a connection, worked out on its first request and kept on the socket: the
 * remoteAddress getter goes through Socket._getpeername on every call (~0.1 us per request in the CPU
 * profile of bench scenario small), and a keep-alive connection carries many requests.
 */
export function socketPeer(socket: Socket & { [kPeer]?: string }): string {
  return socket[kPeer] ??= samePeer(peerAddress(socket.remoteAddress))
}

/**
 * The last connection's address string, handed out again for a new connection from the same address: each
 * connection's remoteAddress is a string of its own, and a limiter keyed by client-ip compares the key with
 * the one before (LocalLimiter.entryFor). One string object makes that a pointer compare, where strings of
 * different connections need their characters compared (perf record of bench scenario limits, 32 keep-alive
 * connections from one address: 23 of run()'s 95 samples were on reading those two strings).
 */
let lastPeer = ''

function samePeer(peer: string): string {
  if (peer === lastPeer) return lastPeer
  lastPeer = peer
  return peer
}

/**
 * The client address as a rate-limit key (README "Rate limiting"): an IPv6 client is keyed by its /64, since
 * one host owns a whole /64 and could otherwise rotate through 2^64 addresses, each with a fresh quota;
 * an IPv4-mapped IPv6 address is its IPv4 address. Anything else (IPv4, or a value that is no address) is
 * returned as it is.
 */
export function limiterAddress(ip: string): string {
  // Small, so that the rate-limit step's optimised code takes it in whole and calls out only for IPv6.
  return ip.indexOf(':') < 0 ? ip : ipv6LimiterAddress(ip)
}

function ipv6LimiterAddress(ip: string): string {
  if (!isIPv6(ip)) return ip
  const lower = ip.toLowerCase()
  if (lower.startsWith('::ffff:') && lower.indexOf('.') > 0) return lower.slice(7)
  const zone = lower.indexOf('%')
  const address = zone < 0 ? lower : lower.slice(0, zone)
  const gap = address.indexOf('::')
  const head = gap < 0 ? address.split(':') : address.slice(0, gap).split(':').filter((g) => g !== '')
  const tail = gap < 0 ? [] : address.slice(gap + 2).split(':').filter((g) => g !== '')
  // An embedded IPv4 tail (::1.2.3.4) stands for two groups.
  const tailGroups = tail.length > 0 && tail[tail.length - 1]!.includes('.') ? tail.length + 1 : tail.length
  const groups: string[] = []
  for (let i = 0; i < 4; i++) {
    let group: string
    if (i < head.length) group = head[i]!
    else if (i >= 8 - tailGroups) group = tail[i - (8 - tailGroups)] ?? '0'
    else group = '0'
    groups.push(group.includes('.') ? '0' : parseInt(group, 16).toString(16))
  }
  return `${groups.join(':')}::/64`
}
