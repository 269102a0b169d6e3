// The drill's steady load (bench/drill.ts): for each gateway, `concurrency` loops, each paced so that the
// gateway gets `ratePerGateway` requests a second in all, over the load's paths in turn. Every request
// carries x-drill-sent (its send time, for the limit check at the counting upstream). Outcomes go to the
// phase in progress: a count of each, and the errors (5xx, no response) kept for the classifier.
// A gateway the drill takes down is skipped until it is marked up again.
import { Pool } from 'undici'
import type { DrillOutcome } from './drill-checks.js'
import { isError } from './drill-checks.js'

export interface PhaseTally {
  requests: number
  /** Responses by status (0: no response). */
  readonly byStatus: Map<number, number>
  readonly errors: DrillOutcome[]
}

export const newTally = (): PhaseTally => ({ requests: 0, byStatus: new Map(), errors: [] })

/** Generous: a request to a gateway that is SIGSTOPped waits for it rather than failing. */
const REQUEST_TIMEOUT_MS = 30_000

export class DrillLoad {
  #tally: PhaseTally = newTally()
  #running = true
  readonly #pools: Pool[]
  readonly #isUp: boolean[]
  readonly #loops: Promise<void>[] = []

  constructor(readonly urls: readonly string[], readonly paths: readonly string[], readonly ratePerGateway: number, readonly concurrency: number) {
    this.#pools = urls.map((u) => new Pool(u, { connections: concurrency, keepAliveTimeout: 10_000, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS }))
    this.#isUp = urls.map(() => true)
  }

  start(): void {
    for (let g = 0; g < this.urls.length; g++) {
      for (let c = 0; c < this.concurrency; c++) this.#loops.push(this.#loop(g, c))
    }
  }

  /** Hands back the tally of the phase that ends and starts a new one. */
  swapTally(): PhaseTally {
    const ended = this.#tally
    this.#tally = newTally()
    return ended
  }

  /** Stop sending to gateway g (the drill is about to stop it), or start again. */
  setUp(g: number, isUp: boolean): void { this.#isUp[g] = isUp }

  async #loop(g: number, c: number): Promise<void> {
    const intervalMs = (1000 * this.concurrency) / this.ratePerGateway
    let nextMs = performance.now() + (intervalMs * c) / this.concurrency
    let turn = c
    while (this.#running) {
      const waitMs = nextMs - performance.now()
      if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs))
      nextMs = Math.max(nextMs + intervalMs, performance.now())
      if (!this.#running) break
      if (!this.#isUp[g]) continue
      const path = this.paths[turn++ % this.paths.length]!
      await this.#one(g, path)
    }
  }

  async #one(g: number, path: string): Promise<void> {
    const startMs = Date.now()
    let status = 0
    let code: string | null = null
    let error: string | null = null
    try {
      const r = await this.#pools[g]!.request({ path, method: 'GET', headers: { 'x-drill-sent': String(startMs) } })
      status = r.statusCode
      const header = r.headers['x-tollgate-error']
      code = typeof header === 'string' ? header : null
      await r.body.dump()
    } catch (err) {
      error = (err as Error).message
    }
    const tally = this.#tally
    tally.requests++
    tally.byStatus.set(status, (tally.byStatus.get(status) ?? 0) + 1)
    const outcome: DrillOutcome = { gateway: g, path, status, code, startMs, endMs: Date.now(), error }
    if (isError(outcome)) tally.errors.push(outcome)
  }

  async stop(): Promise<void> {
    this.#running = false
    await Promise.all(this.#loops)
    await Promise.all(this.#pools.map((p) => p.close()))
  }
}
