// What the soak sends and what it accepts back: each scenario names its requests, its rate and every
// response it may get. Anything else (another status, another gateway error code, a body that is not the
// upstream's, a connection error, no answer) is a failure of the run, reported with the scenario.
import { BIG_BODY_BYTES } from './soak-upstreams.js'

/** One acceptable response. */
export interface Expectation {
  readonly status: number
  /** The gateway's x-tollgate-error code; null: the response must not carry one (it is the upstream's). */
  readonly code: string | null
  /** The body must match (upstream answers say who gave them); null: any body. */
  readonly body: RegExp | null
  readonly label: string
}

/**
 * How the request is made. `request`: a plain request on a keep-alive connection (undici); `fresh`: on a new
 * connection closed after the response; `slow`: headers and body trickled over ~1.5 s, within the
 * gateway's timeouts; `abort-upload`: half the announced body, then the connection is destroyed (no
 * response may come before); `abort-download`: the connection is destroyed after the first bytes of a
 * 256 KiB response.
 */
export type ScenarioKind = 'request' | 'fresh' | 'slow' | 'abort-upload' | 'abort-download'

export interface Scenario {
  readonly name: string
  readonly kind: ScenarioKind
  readonly method: 'GET' | 'POST'
  readonly path: string
  /** Bytes of request body (POST); 0: none. */
  readonly bodyBytes: number
  /** Requests started per second at --rate 1. */
  readonly ratePerSec: number
  readonly expected: readonly Expectation[]
}

const upstreamOk = (who = '\\S+'): Expectation => ({ status: 200, code: null, body: new RegExp(`^ok ${who}$`), label: '200 ok' })
const upstreamBoom: Expectation = { status: 500, code: null, body: /^boom \S+$/, label: '500 from the failing upstream' }
const gateway = (status: number, code: string): Expectation => ({ status, code, body: null, label: `${status} ${code}` })
const posted = (bytes: number): Expectation => ({ status: 200, code: null, body: new RegExp(`^ok \\S+ ${bytes}$`), label: `200 ok ${bytes} bytes` })

export const SLOW_BODY_BYTES = 8 * 1024
export const UPLOAD_BYTES = 16 * 1024

/** ~250 requests/s in all at --rate 1: a steady load that leaves most of a core to the rest of the machine. */
export const SCENARIOS: readonly Scenario[] = [
  { name: 'ok', kind: 'request', method: 'GET', path: '/ok/a', bodyBytes: 0, ratePerSec: 70, expected: [upstreamOk('steady-[ab]')] },
  { name: 'ok-post', kind: 'request', method: 'POST', path: '/ok/post', bodyBytes: UPLOAD_BYTES, ratePerSec: 10, expected: [posted(UPLOAD_BYTES)] },
  { name: 'ok-fresh-connection', kind: 'fresh', method: 'GET', path: '/ok/fresh', bodyBytes: 0, ratePerSec: 10, expected: [upstreamOk('steady-[ab]')] },
  { name: 'not-found', kind: 'request', method: 'GET', path: '/nope/x', bodyBytes: 0, ratePerSec: 15, expected: [gateway(404, 'ROUTE_NOT_FOUND')] },
  { name: 'rate-limited', kind: 'request', method: 'GET', path: '/limited', bodyBytes: 0, ratePerSec: 20,
    expected: [upstreamOk('steady-[ab]'), gateway(429, 'RATE_LIMITED')] },
  // One target of two fails in phases: passive health ejects it; until it does, its 500s reach the client.
  { name: 'ejection', kind: 'request', method: 'GET', path: '/flaky/x', bodyBytes: 0, ratePerSec: 30,
    expected: [upstreamOk('(steady-a|flaky)'), upstreamBoom] },
  // The route's only target fails in phases: the breaker opens, half-opens and closes again.
  { name: 'breaker', kind: 'request', method: 'GET', path: '/breaker/x', bodyBytes: 0, ratePerSec: 30,
    expected: [upstreamOk('broken'), upstreamBoom, gateway(503, 'CIRCUIT_OPEN')] },
  // The file's target plus instances registered in etcd under leases that come and go.
  { name: 'registered', kind: 'request', method: 'GET', path: '/reg/x', bodyBytes: 0, ratePerSec: 30,
    expected: [upstreamOk('(steady-b|instance-\\d)')] },
  { name: 'etcd-route', kind: 'request', method: 'GET', path: '/etcd-stable', bodyBytes: 0, ratePerSec: 10, expected: [upstreamOk('steady-[ab]')] },
  // Routes that the reloads add and remove.
  { name: 'file-toggled', kind: 'request', method: 'GET', path: '/file-extra', bodyBytes: 0, ratePerSec: 8,
    expected: [upstreamOk('steady-[ab]'), gateway(404, 'ROUTE_NOT_FOUND')] },
  { name: 'etcd-toggled', kind: 'request', method: 'GET', path: '/etcd-extra', bodyBytes: 0, ratePerSec: 8,
    expected: [upstreamOk('steady-[ab]'), gateway(404, 'ROUTE_NOT_FOUND')] },
  { name: 'slow-client', kind: 'slow', method: 'POST', path: '/ok/slow', bodyBytes: SLOW_BODY_BYTES, ratePerSec: 2, expected: [posted(SLOW_BODY_BYTES)] },
  { name: 'abort-upload', kind: 'abort-upload', method: 'POST', path: '/ok/abort', bodyBytes: UPLOAD_BYTES * 4, ratePerSec: 4, expected: [] },
  { name: 'abort-download', kind: 'abort-download', method: 'GET', path: '/ok/big', bodyBytes: 0, ratePerSec: 4,
    expected: [{ status: 200, code: null, body: null, label: `200 with a ${BIG_BODY_BYTES / 1024} KiB body (cut short)` }] },
]

/** The scenario with its expectation replaced by one that no response meets (--break). */
export function brokenScenario(scenario: Scenario): Scenario {
  return { ...scenario, expected: [{ status: 299, code: null, body: null, label: '299 (--break: nothing meets this)' }] }
}

/** What came back, as far as the classifier looks. */
export interface Answer {
  readonly status: number
  readonly code: string | null
  readonly body: string
}

const clip = (text: string, max = 200): string => (text.length > max ? `${text.slice(0, max)}…` : text)

/** Null when the answer is one the scenario expects, else the line that says what came and what was expected. */
export function unexpectedAnswer(scenario: Scenario, answer: Answer): string | null {
  for (const e of scenario.expected) {
    if (e.status === answer.status && e.code === answer.code && (e.body === null || e.body.test(answer.body))) return null
  }
  const code = answer.code === null ? '' : ` ${answer.code}`
  const wanted = scenario.expected.length === 0 ? 'no response' : scenario.expected.map((e) => e.label).join(' | ')
  return `scenario ${scenario.name}: ${scenario.method} ${scenario.path} got ${answer.status}${code} ${JSON.stringify(clip(answer.body))} (expected ${wanted})`
}

/** The line for a request that got no answer at all. */
export function failedRequest(scenario: Scenario, reason: string): string {
  return `scenario ${scenario.name}: ${scenario.method} ${scenario.path} failed: ${reason}`
}
