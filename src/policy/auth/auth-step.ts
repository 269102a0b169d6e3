// What every auth step of a route (README "Authentication") shares with the rest of the gateway: the
// credential forward.ts strips and the consumer header it sets (CredentialStrip), the failure counters
// (tollgate_auth_failures_total{route, reason}), and the step's shape. key-auth-step.ts, jwt-auth-step.ts and
// basic-auth-step.ts implement it; the table builder (src/table/compiled-route.ts) picks one per route.
import type { RequestStep } from '../../http/request-step.js'

/** Counter cells bound at build time: tollgate_auth_failures_total{route, reason}. */
export interface AuthFailureCounters {
  readonly missing: { inc(): void }
  readonly invalid: { inc(): void }
  /** JWT only: a token past its exp (and the leeway). */
  readonly expired: { inc(): void }
}

/** What forward.ts removes from, and adds to, an authenticated route's request (README "Authentication"). */
export interface CredentialStrip {
  /** The header carrying the credential, lower case (`authorization` for jwt and basic): never forwarded. */
  readonly keyHeader: string
  /** The key's query parameter (raw name), or null: removed from the forwarded query. */
  readonly queryParam: string | null
  /** The header carrying the consumer name, lower case: a client-sent one is dropped, the gateway's added. */
  readonly forwardConsumer: string
}

/** A route's auth step: sets ctx.consumer or refuses with 401 and a WWW-Authenticate challenge. */
export interface AuthStep extends RequestStep {
  readonly strip: CredentialStrip
}
