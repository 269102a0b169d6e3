// One upstream target: its parsed address plus the mutable state shared by everyone who routes to it.
// A Target survives reloads while its URL is unchanged (UpstreamPool.withTargets), so its connection
// pool, in-flight count and health carry over; it is never copied.
import type { TargetHealth } from './health/upstream-health.js'
import type { Pool } from './undici-pool.js'

/** One upstream target, parsed once at build time. */
export class Target {
  /** Normalised `http://host:port` (port always explicit, no trailing slash): the identity across reloads. */
  readonly url: string
  /** WHATWG origin (`http://host` when the port is the default): what an undici Pool is given. */
  readonly origin: string
  /** `host:port` (IPv6 in brackets): the `target` metrics label. */
  readonly hostPort: string
  /** Requests in flight to this target; the proxy increments it on dispatch and decrements it at the end. */
  inflight: number
  /**
   * Eligible for traffic: set from `health` (health/upstream-health.ts); only healthy targets are picked
   * unless the pool is in panic mode.
   */
  healthy: boolean
  /** Its active and passive health state, bound by the table builder; null until then. */
  health: TargetHealth | null
  /** Set when the target is leaving (removed on reload, lease expired): never picked again. */
  closing: boolean
  /** Its keep-alive connection pool, opened by the table builder (src/table/) when the target joins. */
  dispatcher: Pool | null
  #weight: number

  constructor(url: string, weight: number) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch (cause) {
      throw new TypeError(`target url: expected http://host:port, got ${JSON.stringify(url)}.`, { cause })
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new TypeError(`target url: expected scheme http or https, got ${JSON.stringify(url)}.`)
    }
    if (parsed.username !== '' || parsed.password !== '' || parsed.pathname !== '/' || parsed.search !== '' || parsed.hash !== '') {
      throw new TypeError(`target url: expected only scheme, host and port, got ${JSON.stringify(url)}. Remove credentials, path and query.`)
    }
    checkWeight(weight)
    const port = parsed.port !== '' ? parsed.port : parsed.protocol === 'https:' ? '443' : '80'
    // URL.hostname keeps the brackets of an IPv6 literal, so `[::1]:8080` comes out right.
    this.hostPort = `${parsed.hostname}:${port}`
    this.url = `${parsed.protocol}//${this.hostPort}`
    this.origin = parsed.origin
    this.inflight = 0
    this.healthy = true
    this.health = null
    this.closing = false
    this.dispatcher = null
    this.#weight = weight
  }

  /** Relative share of traffic (>= 1 in config). Balancers copy it when they are built. */
  get weight(): number {
    return this.#weight
  }

  /**
   * For UpstreamPool.withTargets: a reload kept this URL with another weight. Balancers already built
   * keep the weight they copied; the next one built sees the new value.
   */
  reweight(weight: number): void {
    checkWeight(weight)
    this.#weight = weight
  }
}

function checkWeight(weight: number): void {
  if (!Number.isFinite(weight) || weight <= 0) {
    throw new RangeError(`target weight: must be a positive number, got ${weight}. Use 1 for an equal share.`)
  }
}
