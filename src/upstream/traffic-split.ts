// A route's weighted split (README "Traffic splitting") as a step of its pipeline (src/proxy/pipeline.ts), in
// place of the admission step: after the route's limiters, it chooses which of the route's upstreams serves
// the request, then runs that upstream's admission (the route breaker's, then that upstream's bulkhead). The
// chosen upstream brings its own pool, health, retries and metrics. Hot path: nothing is allocated per request.
//
// The choice, in order:
//   1. splitRules: the first rule whose headers and cookies all match names the upstream.
//   2. sticky, when the request has the key: a 32-bit hash of the key is a point in [0, 1); the upstreams own
//      consecutive slices of [0, 1) in list order, each as wide as its share of the weights. A key keeps its
//      upstream while the weights stay. When they change, a slice boundary moves and only the keys between
//      its old and new place change sides: 95/5 -> 90/10 moves the keys in [0.90, 0.95) from the first
//      upstream to the second, and no other key (with more than two upstreams, the keys of every slice whose
//      boundaries moved).
//   3. otherwise by weight, without a key: a shuffled deck. The deck holds each upstream index `weight` times
//      (weights divided by their greatest common divisor); each request draws one card at random from the
//      cards not yet drawn, and the deck is reshuffled when empty. Every run of one deck's requests is split
//      exactly by the weights, in an order nobody can predict: 10,000 requests at 95/5 give 9,500 and 500 in
//      each process, where independent random picks would spread by +-0.22% (1 sigma) of the total. A deck
//      above MAX_DECK cards (odd weights such as 99991/9) falls back to independent picks on the cumulative
//      weights.
import { hash32 } from './balancer.js'
import type { IncomingMessage } from 'node:http'
import { Next, type RequestStep, type StepContext } from '../http/request-step.js'
import type { RequestKey } from '../http/request-key.js'
import { cookieValue } from '../http/cookie.js'

/** Largest deck kept (cards are bytes): past this the split picks independently on the cumulative weights. */
const MAX_DECK = 10_000

/** One splitRules entry, names lower-cased at build time. */
export interface SplitRuleSpec {
  readonly headers: readonly (readonly [string, string])[]
  readonly cookies: readonly (readonly [string, string])[]
  /** Index into the split's upstreams. */
  readonly choice: number
}

export class TrafficSplit implements RequestStep {
  /** Cumulative weights by choice (the choices past the weighted list, only reachable by rules, add 0). */
  readonly #cumulative: Float64Array
  readonly #total: number
  readonly #deck: Uint8Array | null
  #left = 0
  readonly #rules: readonly SplitRuleSpec[]
  readonly #sticky: RequestKey | null
  readonly #admissions: readonly RequestStep[]

  /**
   * `weights[i]` for choice i (0 for choices only rules name); `admissions[i]`: choice i's admission step.
   * check.ts made sure some weight is above 0.
   */
  constructor(weights: readonly number[], rules: readonly SplitRuleSpec[], sticky: RequestKey | null, admissions: readonly RequestStep[]) {
    this.#cumulative = new Float64Array(weights.length)
    let total = 0
    for (let i = 0; i < weights.length; i++) this.#cumulative[i] = total += weights[i]!
    this.#total = total
    this.#deck = buildDeck(weights)
    this.#rules = rules
    this.#sticky = sticky
    this.#admissions = admissions
  }

  /** Hot path. */
  run(ctx: StepContext): Next {
    const choice = this.choose(ctx)
    ctx.useSplitUpstream(choice)
    return this.#admissions[choice]!.run(ctx)
  }

  /** The index of the upstream that serves this request. */
  choose(ctx: StepContext): number {
    const rules = this.#rules
    for (let i = 0; i < rules.length; i++) if (matches(rules[i]!, ctx.req)) return rules[i]!.choice
    const sticky = this.#sticky
    if (sticky !== null) {
      const key = sticky.valueOf(ctx.req, ctx.canonicalPath, sticky.needsClientIp ? ctx.clientIp() : '', '', ctx.consumer)
      if (key !== null) return this.slice(hash32(key))
    }
    return this.draw()
  }

  /** The choice whose slice of [0, 1) holds the point hash / 2^32. */
  slice(hash: number): number {
    const point = (hash / 4294967296) * this.#total
    const cumulative = this.#cumulative
    for (let i = 0; i < cumulative.length; i++) if (point < cumulative[i]!) return i
    return cumulative.length - 1
  }

  /** The next card of the deck (or an independent pick when there is no deck). */
  draw(): number {
    const deck = this.#deck
    if (deck === null) return this.slice((Math.random() * 4294967296) >>> 0)
    if (this.#left === 0) this.#left = deck.length
    // Fisher-Yates, one step per request: swap a random undrawn card to the end of the undrawn part.
    const last = --this.#left
    const j = (Math.random() * (last + 1)) | 0
    const card = deck[j]!
    deck[j] = deck[last]!
    deck[last] = card
    return card
  }
}

function matches(rule: SplitRuleSpec, req: IncomingMessage): boolean {
  const headers = rule.headers
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i]!
    if (req.headers[name] !== value) return false
  }
  const cookies = rule.cookies
  if (cookies.length === 0) return true
  const header = req.headers.cookie
  for (let i = 0; i < cookies.length; i++) {
    const [name, value] = cookies[i]!
    if (cookieValue(header, name) !== value) return false
  }
  return true
}

function buildDeck(weights: readonly number[]): Uint8Array | null {
  let g = 0
  for (const w of weights) g = gcd(g, w)
  if (g === 0) return null
  let size = 0
  for (const w of weights) size += w / g
  if (size > MAX_DECK || weights.length > 256) return null
  const deck = new Uint8Array(size)
  let k = 0
  weights.forEach((w, i) => {
    for (let n = 0; n < w / g; n++) deck[k++] = i
  })
  return deck
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b]
  return a
}
