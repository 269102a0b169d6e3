// What a route does with the consumer its auth step identified (README "Authentication"), as the step right
// after it: `auth.allow` (Kong's ACL plugin, APISIX's consumer-restriction, in one line) refuses a consumer
// it does not list with 403 FORBIDDEN, counted as tollgate_auth_failures_total{reason="forbidden"} and never
// forwarded; a consumer that passes is counted in tollgate_consumer_requests_total{route, consumer}.
//
// A separate step rather than a few lines in each auth step: the JWT and basic steps resume asynchronously
// after a verification, and the pipeline runs the next step either way, so the check sits in one place.
//
// The consumer label is bounded by config: key and basic consumers are named under consumers:, a JWT
// route's only with auth.allow (its subjects are otherwise whatever an identity provider signs, an
// unbounded label set). The cells are bound at build time: per request one Set.has and one Map.get.
import { FORBIDDEN_CONSUMER } from '../../errors.js'
import { Next, type RequestStep, type StepContext } from '../../http/request-step.js'

export class ConsumerStep implements RequestStep {
  /** auth.allow, or null: every authenticated consumer passes. */
  readonly #allow: ReadonlySet<string> | null
  /** Consumer name -> its tollgate_consumer_requests_total cell; a name without one is not counted. */
  readonly #cells: ReadonlyMap<string, { inc(): void }>
  readonly #forbidden: { inc(): void }

  /** `forbidden` is bound only with an allow list: a route that cannot refuse shows no forbidden series. */
  constructor(allow: { readonly names: readonly string[]; readonly forbidden: { inc(): void } } | null, cells: ReadonlyMap<string, { inc(): void }>) {
    this.#allow = allow === null ? null : new Set(allow.names)
    this.#forbidden = allow === null ? { inc: () => undefined } : allow.forbidden
    this.#cells = cells
  }

  run(ctx: StepContext): Next {
    // The auth step before this one either set ctx.consumer or refused the request.
    const consumer = ctx.consumer!
    if (this.#allow !== null && !this.#allow.has(consumer)) {
      this.#forbidden.inc()
      ctx.refuse(FORBIDDEN_CONSUMER, false)
      return Next.Done
    }
    this.#cells.get(consumer)?.inc()
    return Next.Continue
  }
}
