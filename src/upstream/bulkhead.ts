// `maxConcurrent` of an upstream (the bulkhead) as a pipeline step: admits a request into the upstream's
// in-flight count or answers 503 OVERLOADED. The count is the pool's, shared by every generation of it
// (upstream-pool.ts), so requests admitted before a reload release into the same count.
import { OVERLOADED } from '../errors.js'
import { Next, type RequestStep, type StepContext } from '../http/request-step.js'
import type { UpstreamPool } from './upstream-pool.js'

export class Bulkhead implements RequestStep {
  readonly #pool: UpstreamPool

  constructor(pool: UpstreamPool) {
    this.#pool = pool
  }

  run(ctx: StepContext): Next {
    if (!this.#pool.tryAcquire()) {
      ctx.refuse(OVERLOADED, false)
      return Next.Done
    }
    ctx.hold(this.#pool)
    return Next.Continue
  }
}
