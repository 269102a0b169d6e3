// W3C Trace Context (https://www.w3.org/TR/trace-context/): the traceparent sent upstream.
import type { RequestHeaderFacts } from './request-facts.js'

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/
const ZERO_TRACE = '00000000000000000000000000000000'
const ZERO_SPAN = '0000000000000000'

/**
 * W3C Trace Context: keep a valid incoming trace id and make the gateway the parent; an invalid or
 * duplicated traceparent starts a new trace (and its tracestate is dropped).
 */
export function nextTraceparent(facts: RequestHeaderFacts, ids: string): string {
  const incoming = facts.traceparentCount === 1 ? facts.traceparent : null
  if (incoming !== null) {
    const m = TRACEPARENT_RE.exec(incoming.trim())
    if (m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN) return '00-' + m[1] + '-' + ids.slice(32, 48) + '-' + m[3]
  }
  facts.tracestate = null
  return '00-' + ids.slice(0, 32) + '-' + ids.slice(32, 48) + '-00'
}
