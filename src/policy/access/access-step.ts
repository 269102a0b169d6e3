// A route's `access: { allow, deny }` (README "Access lists") as the first step of its pipeline
// (src/proxy/pipeline.ts): the client address, as the rate limiter's client-ip key sees it (X-Forwarded-For
// past clientIp.trustedProxies), against lists compiled at config load. deny wins over allow; a non-empty
// allow list refuses everything it does not list. Refused: 403 FORBIDDEN, never forwarded, counted as an
// auth failure with reason "forbidden".
import { FORBIDDEN_ADDRESS } from '../../errors.js'
import { type Cidr, inPrefix, isMappedIPv4, parseCidr, parseIPv4, parseIPv6 } from '../../lib/ip-address.js'
import { Next, type RequestStep, type StepContext } from '../../http/request-step.js'

/** A counter cell bound at build time (tollgate_auth_failures_total{route, reason="forbidden"}). */
export interface FailureCounter {
  inc(): void
}

/**
 * One list (allow or deny). IPv4: sorted, merged, inclusive ranges of uint32, found by binary search.
 * IPv6: prefixes checked in turn (word compares on four uint32s); lists are short in practice.
 */
export class AddressSet {
  readonly #v4: Float64Array // [first0, last0, first1, last1, ...] sorted, disjoint
  readonly #v6: readonly { readonly words: Uint32Array; readonly bits: number }[]
  readonly size: number

  /** `cidrs` were checked by config/check.ts; one that does not parse here is a bug, so it throws. */
  constructor(cidrs: readonly string[]) {
    const v4: [number, number][] = []
    const v6: { words: Uint32Array; bits: number }[] = []
    for (const text of cidrs) {
      const c: Cidr | string = parseCidr(text)
      if (typeof c === 'string') throw new TypeError(`access list: ${c}`)
      if (c.family === 4) v4.push([c.first, c.last])
      else v6.push({ words: c.words, bits: c.bits })
    }
    v4.sort((a, b) => a[0] - b[0])
    const merged: number[] = []
    for (const [first, last] of v4) {
      const n = merged.length
      if (n > 0 && first <= merged[n - 1]! + 1) merged[n - 1] = Math.max(merged[n - 1]!, last)
      else merged.push(first, last)
    }
    this.#v4 = Float64Array.from(merged)
    this.#v6 = v6
    this.size = cidrs.length
  }

  hasV4(ip: number): boolean {
    const r = this.#v4
    let lo = 0
    let hi = r.length / 2 - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (ip < r[mid * 2]!) hi = mid - 1
      else if (ip > r[mid * 2 + 1]!) lo = mid + 1
      else return true
    }
    return false
  }

  hasV6(words: Uint32Array): boolean {
    const list = this.#v6
    for (let i = 0; i < list.length; i++) if (inPrefix(words, list[i]!.words, list[i]!.bits)) return true
    return false
  }
}

const words = new Uint32Array(4) // per-request scratch: steps run synchronously, one at a time

export class AccessStep implements RequestStep {
  readonly #allow: AddressSet
  readonly #deny: AddressSet
  readonly #forbidden: FailureCounter

  constructor(allow: readonly string[], deny: readonly string[], forbidden: FailureCounter) {
    this.#allow = new AddressSet(allow)
    this.#deny = new AddressSet(deny)
    this.#forbidden = forbidden
  }

  /** Hot path: one scan of the address string, then number compares. */
  admits(ip: string): boolean {
    const allow = this.#allow
    const deny = this.#deny
    if (ip.indexOf(':') >= 0) {
      // An address that does not parse (a trusted proxy's X-Forwarded-For held "unknown") is refused: on a
      // route with an access list, an address nobody can check is not let through.
      if (!parseIPv6(ip, words)) return false
      if (isMappedIPv4(words)) return this.#admitsV4(words[3]!)
      if (deny.hasV6(words)) return false
      return allow.size === 0 || allow.hasV6(words)
    }
    const v4 = parseIPv4(ip)
    return v4 >= 0 && this.#admitsV4(v4)
  }

  #admitsV4(v4: number): boolean {
    if (this.#deny.hasV4(v4)) return false
    return this.#allow.size === 0 || this.#allow.hasV4(v4)
  }

  run(ctx: StepContext): Next {
    if (this.admits(ctx.clientIp())) return Next.Continue
    this.#forbidden.inc()
    ctx.refuse(FORBIDDEN_ADDRESS, false)
    return Next.Done
  }
}
