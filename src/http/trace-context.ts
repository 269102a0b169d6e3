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
  const m = validTraceparent(facts)
  if (m !== null) return '00-' + m[1] + '-' + ids.slice(32, 48) + '-' + m[3]
  facts.tracestate = null
  return '00-' + ids.slice(0, 32) + '-' + ids.slice(32, 48) + '-00'
}

/** The trace id of the request, as nextTraceparent() decides it: the valid incoming one, else a new one from `ids`. */
export function traceIdOf(facts: RequestHeaderFacts, ids: string): string {
  const m = validTraceparent(facts)
  return m === null ? ids.slice(0, 32) : m[1]!
}

function validTraceparent(facts: RequestHeaderFacts): RegExpExecArray | null {
  const incoming = facts.traceparentCount === 1 ? facts.traceparent : null
  if (incoming === null) return null
  const m = TRACEPARENT_RE.exec(incoming.trim())
  return m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN ? m : null
}
