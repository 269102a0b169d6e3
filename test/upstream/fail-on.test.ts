// circuitBreaker.failOn over the one failure taxonomy (src/upstream/fail-on.ts): what counts against a
// breaker, what is a success, and what is no verdict at all (README "Circuit breakers").
import { describe, expect, it } from 'vitest'
import { FailOn, Verdict, type FailOnWord } from '../../src/upstream/fail-on.js'
import { FailureKind, type Outcome } from '../../src/upstream/outcome.js'

function outcome(fields: Partial<Outcome>): Outcome {
  return {
    status: 200, failure: FailureKind.None, causedByClient: false, attempts: 1, lastTarget: '127.0.0.1:1',
    bytesIn: 0, bytesOut: 0, durationMs: 1, breakerAdmission: 0, requestId: 'r', refusal: null,
    traceId: '0af7651916cd43dd8448eb211c80319c', canonicalPath: '/', upstreamName: 'u', grpcStatus: -1, consumer: null, httpVersion: '1.1',
    ids: '', incomingRequestId: null, parentSpanId: null, ...fields,
  }
}

const F = Verdict.Failure
const S = Verdict.Success
const N = Verdict.None

const CASES: ReadonlyArray<readonly [string, Partial<Outcome>, Verdict, Verdict, Verdict, Verdict]> = [
  //  outcome                                                        default  [5xx]  [503]  [timeout]
  ['upstream 200', { status: 200 }, S, S, S, S],
  ['upstream 404 (a 4xx is a success)', { status: 404 }, S, S, S, S],
  ['upstream 500', { status: 500 }, F, F, S, S],
  ['upstream 503', { status: 503 }, F, F, F, S],
  ['timeout (504)', { status: 504, failure: FailureKind.Timeout }, F, S, S, F],
  ['connect failure (502)', { status: 502, failure: FailureKind.ConnectFailure }, F, S, S, S],
  ['reset (502)', { status: 502, failure: FailureKind.Reset }, F, F, S, S],
  ['broken framing (502)', { status: 502, failure: FailureKind.Other }, F, F, S, S],
  ['client went away (499)', { status: 499, causedByClient: true, failure: FailureKind.ClientCaused }, N, N, N, N],
  ['client went away during a 500', { status: 500, causedByClient: true }, N, N, N, N],
  ['body too large, refused before forwarding', { status: 413, attempts: 0 }, N, N, N, N],
  ['503 OVERLOADED from the gateway (not forwarded)', { status: 503, attempts: 0 }, N, N, N, N],
]

const LISTS: readonly (readonly FailOnWord[])[] = [['5xx', 'timeout', 'connect-failure'], ['5xx'], [503], ['timeout']]

describe('FailOn', () => {
  it.each(CASES)('%s', (_name, fields, ...expected) => {
    expect(LISTS.map((list) => new FailOn(list).verdict(outcome(fields)))).toEqual(expected)
  })
})

describe('FailOn with gRPC statuses', () => {
  const grpc = new FailOn(['5xx', 'grpc-unavailable', 'grpc-deadline-exceeded'])
  it.each([
    ['OK', 0, S], ['NOT_FOUND (the caller\'s)', 5, S], ['UNAVAILABLE', 14, F], ['DEADLINE_EXCEEDED', 4, F], ['INTERNAL (not listed)', 13, S], ['no grpc-status', -1, S],
  ] as const)('a gRPC call that ended %s', (_name, code, verdict) => {
    expect(grpc.verdict(outcome({ status: 200, grpcStatus: code }))).toBe(verdict)
  })
  it('5xx alone never counts a gRPC status', () => {
    expect(new FailOn(['5xx']).verdict(outcome({ status: 200, grpcStatus: 14 }))).toBe(S)
  })
  it('a gateway refusal on a gRPC route is still no verdict', () => {
    expect(grpc.verdict(outcome({ status: 429, grpcStatus: -1, attempts: 0 }))).toBe(N)
  })
  it('refuses an unknown gRPC word', () => {
    expect(() => new FailOn(['grpc-sleepy'])).toThrow(/unknown gRPC status "grpc-sleepy"/)
  })
})
