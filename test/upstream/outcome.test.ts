// One failure taxonomy: what undici and the socket layer report, classified once, and read by retry.on.
import { describe, expect, it } from 'vitest'
import { FAILURE_NAMES, FailureKind, classifyError } from '../../src/upstream/outcome.js'
import { RetryPolicy } from '../../src/upstream/retry-policy.js'

const withCode = (code: string): Error => Object.assign(new Error(code), { code })

describe('classifyError', () => {
  it.each([
    ['ECONNREFUSED', FailureKind.ConnectFailure],
    ['UND_ERR_CONNECT_TIMEOUT', FailureKind.ConnectFailure],
    ['EHOSTUNREACH', FailureKind.ConnectFailure],
    ['ECONNRESET', FailureKind.Reset],
    ['UND_ERR_SOCKET', FailureKind.Reset],
    ['EPIPE', FailureKind.Reset],
    ['TOLLGATE_RESPONSE_TIMEOUT', FailureKind.Timeout],
    ['UND_ERR_HEADERS_TIMEOUT', FailureKind.Timeout],
    ['TOLLGATE_CLIENT_GONE', FailureKind.ClientCaused],
    ['TOLLGATE_BODY_TOO_LARGE', FailureKind.ClientCaused],
    ['UND_ERR_INVALID_ARG', FailureKind.Other],
  ])('%s is %s', (code, kind) => {
    expect(classifyError(withCode(code))).toBe(kind)
  })
})

describe('retry.on reads the same taxonomy', () => {
  it.each(Object.entries(FAILURE_NAMES))('retry.on [%s] retries that kind and no other', (word, kind) => {
    const policy = new RetryPolicy({ attempts: 1, on: [word as 'reset'], backoff: 0, budget: 20 })
    for (const other of Object.values(FailureKind)) expect(policy.onFailure(other)).toBe(other === kind)
  })

  it('never retries a failure the client caused, whatever retry.on says', () => {
    const policy = new RetryPolicy({ attempts: 3, on: ['connect-failure', 'reset', 'timeout', '5xx'], backoff: 0, budget: 20 })
    expect(policy.onFailure(classifyError(withCode('TOLLGATE_CLIENT_GONE')))).toBe(false)
    expect(policy.onFailure(classifyError(withCode('ECONNRESET')))).toBe(true)
  })
})
