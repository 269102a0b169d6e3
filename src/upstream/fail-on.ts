// `circuitBreaker.failOn` of a route (README "Circuit breakers"), compiled once: which final outcomes of a
// request (after retries) count against its breaker, in the one failure taxonomy of outcome.ts.
//   5xx              an upstream response 500-599, or a response that broke (reset, broken framing: the
//                    502 UPSTREAM_UNAVAILABLE the gateway answers for them)
//   <status>         an upstream response with that status
//   timeout          timeouts.response passed (504)
//   connect-failure  no connection (refused, unreachable, timeouts.connect)
//   grpc-<code>      a gRPC response (protocol: grpc upstreams) that ended with that grpc-status
// Never counted either way (no verdict): what the client caused (README "Circuit breakers": it left, its body was too large)
// and requests the gateway answered without forwarding (attempts 0: a refusal, 503 OVERLOADED...).
// Everything else is a success, an upstream 4xx included.
import { PLUGIN_FAILED } from '../errors.js'
import { GRPC_FAIL_ON } from './grpc-status.js'
import { FailureKind, type Outcome } from './outcome.js'

export const Verdict = { None: 0, Success: 1, Failure: 2 } as const
export type Verdict = (typeof Verdict)[keyof typeof Verdict]

export type FailOnWord = '5xx' | 'timeout' | 'connect-failure' | `grpc-${string}` | number

export class FailOn {
  readonly #kinds: number // bit per FailureKind
  readonly #statuses: Uint8Array // index status - 500
  readonly #grpcCodes: number // bit per gRPC status code

  constructor(words: readonly FailOnWord[]) {
    let kinds = 0
    let grpcCodes = 0
    const statuses = new Uint8Array(100)
    for (const word of words) {
      if (typeof word === 'string' && word.startsWith('grpc-')) {
        const code = GRPC_FAIL_ON[word]
        if (code === undefined) throw new TypeError(`failOn: unknown gRPC status ${JSON.stringify(word)}`)
        grpcCodes |= 1 << code
      } else if (word === '5xx') {
        statuses.fill(1)
        kinds |= (1 << FailureKind.Reset) | (1 << FailureKind.Other)
      } else if (word === 'timeout') kinds |= 1 << FailureKind.Timeout
      else if (word === 'connect-failure') kinds |= 1 << FailureKind.ConnectFailure
      else if (typeof word === 'number') statuses[word - 500] = 1
    }
    this.#kinds = kinds
    this.#statuses = statuses
    this.#grpcCodes = grpcCodes
  }

  /** Hot path. */
  verdict(outcome: Outcome): Verdict {
    const failure = outcome.failure
    if (outcome.causedByClient || failure === FailureKind.ClientCaused || outcome.attempts === 0) return Verdict.None
    // An onResponse plugin failed after the upstream answered (README "Plugins"): the 500 is not the upstream's.
    if (outcome.refusal === PLUGIN_FAILED) return Verdict.Success
    if (failure !== FailureKind.None) return (this.#kinds & (1 << failure)) !== 0 ? Verdict.Failure : Verdict.Success
    const status = outcome.status
    if (status >= 500 && status < 600) return this.#statuses[status - 500] === 1 ? Verdict.Failure : Verdict.Success
    const grpc = outcome.grpcStatus
    return grpc > 0 && grpc < 31 && (this.#grpcCodes & (1 << grpc)) !== 0 ? Verdict.Failure : Verdict.Success
  }
}
