// A route's breaker admission as a step of its pipeline (src/proxy/pipeline.ts), in place of the upstream's
// bulkhead step, which it runs itself: admitted requests go on through the route upstream's bulkhead; while
// the breaker is open a request gets the fallback: 503 CIRCUIT_OPEN, a fixed response, or the fallback
// upstream (through that upstream's own bulkhead). The request's ctx.breakerAdmission tells the
// end-of-request record (src/proxy/record.ts) what the breaker admitted it as.
import { CIRCUIT_OPEN } from '../../errors.js'
import { Next, type RequestStep, type StepContext } from '../../http/request-step.js'
import { Admit, type Breaker } from './breaker.js'

/** What an open breaker answers (circuitBreaker.fallback), built once. */
export type Fallback =
  | { readonly kind: 'refuse' }
  | { readonly kind: 'respond'; readonly status: number; readonly headers: readonly string[]; readonly body: Buffer }
  /** `bulkhead`: the fallback upstream's own admission step. */
  | { readonly kind: 'upstream'; readonly bulkhead: RequestStep }

export const REFUSE: Fallback = Object.freeze({ kind: 'refuse' })

export class BreakerStep implements RequestStep {
  constructor(
    readonly breaker: Breaker,
    /** The route upstream's bulkhead: admitted requests go on through it. */
    readonly next: RequestStep,
    readonly fallback: Fallback,
  ) {}

  /** Hot path. */
  run(ctx: StepContext): Next {
    const admission = this.breaker.admit(ctx.startMs)
    ctx.breakerAdmission = admission
    if (admission !== Admit.Refused) return this.next.run(ctx)
    const fallback = this.fallback
    switch (fallback.kind) {
      case 'refuse':
        ctx.refuse(CIRCUIT_OPEN, false)
        return Next.Done
      case 'respond':
        ctx.respond(fallback.status, fallback.headers, fallback.body)
        return Next.Done
      case 'upstream':
        ctx.useFallbackUpstream()
        return fallback.bulkhead.run(ctx)
    }
  }
}
