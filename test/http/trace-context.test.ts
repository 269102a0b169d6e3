// W3C Trace Context Level 1 (https://www.w3.org/TR/trace-context/), re-expressed from the spec text as our
// own cases: the headers go through the real header scan (request-facts.ts) and readTraceContext, as a
// request's do. The W3C test harness itself runs through the gateway ad hoc (scripts/w3c-trace-context.sh).
import { describe, expect, it } from 'vitest'
import { randomIds } from '../../src/http/ids.js'
import { RequestHeaderFacts, scanRequestHeaders } from '../../src/http/request-facts.js'
import { TRACESTATE_MAX_MEMBERS, decideSampled, readTraceContext, traceparentValue, type TraceFields } from '../../src/http/trace-context.js'

const TRACE = '12345678901234567890123456789012'
const PARENT = '1234567890123456'
const VALID = `00-${TRACE}-${PARENT}-01`

class Fields extends RequestHeaderFacts implements TraceFields {
  traceId = ''
  parentSpanId: string | null = null
  sampled = -1
}

interface Read {
  /** The caller's sampled flag, -1 when the trace restarted. */
  readonly incoming: number
  readonly traceId: string
  readonly parentSpanId: string | null
  readonly tracestate: string | null
  readonly ids: string
}

/** Headers as a client sends them ([name, value] pairs, in order) -> what the gateway reads from them. */
function read(headers: ReadonlyArray<readonly [string, string]>): Read {
  const facts = new Fields()
  expect(scanRequestHeaders(headers.flat(), facts)).toBeNull()
  const ids = randomIds()
  const incoming = readTraceContext(facts, ids)
  return { incoming, traceId: facts.traceId, parentSpanId: facts.parentSpanId, tracestate: facts.tracestate, ids }
}

function continues(traceparent: string): boolean {
  const r = read([['traceparent', traceparent]])
  if (r.incoming === -1) {
    expect(r.traceId).toBe(r.ids.slice(0, 32)) // a new trace, from the request's own random ids
    expect(r.parentSpanId).toBeNull()
    return false
  }
  expect(r.traceId).toBe(TRACE)
  expect(r.parentSpanId).toBe(PARENT)
  return true
}

/** The tracestate sent on with a valid traceparent (null: dropped). */
function tracestateOf(...values: string[]): string | null {
  return read([['traceparent', `00-${TRACE}-${PARENT}-00`], ...values.map((v) => ['tracestate', v] as const)]).tracestate
}

describe('traceparent: continue or restart (W3C §3.2, "Versioning of traceparent")', () => {
  it.each([
    ['a valid version 00 header', VALID],
    ['leading space (OWS)', ` ${VALID}`],
    ['leading tab', `\t${VALID}`],
    ['trailing space', `${VALID} `],
    ['trailing tab', `${VALID}\t`],
    ['OWS on both sides', `\t ${VALID} \t`],
    ['a future version (cc)', `cc-${TRACE}-${PARENT}-01`],
    ['a future version with more fields after a dash', `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`],
    ['flags other than sampled', `00-${TRACE}-${PARENT}-09`],
  ])('continues %s', (_what, value) => {
    expect(continues(value)).toBe(true)
  })

  it.each([
    ['version 00 with a trailing character', `${VALID}.`],
    ['version 00 with more fields', `${VALID}-what-the-future-will-be-like`],
    ['a future version followed by anything but a dash', `cc-${TRACE}-${PARENT}-01.what-the-future-will-be-like`],
    ['version ff (forbidden)', `ff-${TRACE}-${PARENT}-01`],
    ['illegal characters in the version', `.0-${TRACE}-${PARENT}-01`],
    ['illegal characters in the version (second)', `0.-${TRACE}-${PARENT}-01`],
    ['a 3-digit version', `000-${TRACE}-${PARENT}-01`],
    ['a 4-digit version', `0000-${TRACE}-${PARENT}-01`],
    ['a 1-digit version', `0-${TRACE}-${PARENT}-01`],
    ['an upper-case version', `CC-${TRACE}-${PARENT}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['an illegal first character in the trace id', `00-.${TRACE.slice(1)}-${PARENT}-01`],
    ['an illegal last character in the trace id', `00-${TRACE.slice(0, 31)}.-${PARENT}-01`],
    ['upper-case hex in the trace id', `00-${TRACE.slice(0, 31)}A-${PARENT}-01`],
    ['a 33-digit trace id', `00-${TRACE}3-${PARENT}-01`],
    ['a 31-digit trace id', `00-${TRACE.slice(1)}-${PARENT}-01`],
    ['an all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['an illegal first character in the parent id', `00-${TRACE}-.${PARENT.slice(1)}-01`],
    ['an illegal last character in the parent id', `00-${TRACE}-${PARENT.slice(0, 15)}.-01`],
    ['a 17-digit parent id', `00-${TRACE}-${PARENT}7-01`],
    ['a 15-digit parent id', `00-${TRACE}-${PARENT.slice(1)}-01`],
    ['illegal characters in the flags', `00-${TRACE}-${PARENT}-.0`],
    ['illegal characters in the flags (second)', `00-${TRACE}-${PARENT}-0.`],
    ['3-digit flags', `00-${TRACE}-${PARENT}-001`],
    ['1-digit flags', `00-${TRACE}-${PARENT}-1`],
    ['an empty value', ''],
  ])('restarts the trace on %s', (_what, value) => {
    expect(continues(value)).toBe(false)
  })

  it('restarts the trace when traceparent comes twice, even with equal values', () => {
    expect(read([['traceparent', VALID], ['traceparent', `00-${TRACE.slice(0, 31)}1-${PARENT}-01`]]).incoming).toBe(-1)
    expect(read([['traceparent', VALID], ['traceparent', VALID]]).incoming).toBe(-1)
  })

  it('reads the header name in any case and ignores look-alike names', () => {
    for (const name of ['TraceParent', 'TrAcEpArEnT', 'TRACEPARENT']) expect(read([[name, VALID]]).traceId).toBe(TRACE)
    for (const name of ['trace-parent', 'trace.parent']) expect(read([[name, VALID]]).incoming).toBe(-1)
  })

  it("returns the caller's sampled flag: bit 0 of the flags", () => {
    expect(read([['traceparent', `00-${TRACE}-${PARENT}-01`]]).incoming).toBe(1)
    expect(read([['traceparent', `00-${TRACE}-${PARENT}-00`]]).incoming).toBe(0)
    expect(read([['traceparent', `00-${TRACE}-${PARENT}-02`]]).incoming).toBe(0)
    expect(read([['traceparent', `00-${TRACE}-${PARENT}-ff`]]).incoming).toBe(1)
  })

  it('starts distinct traces from distinct request ids', () => {
    const traces = new Set<string>()
    for (let i = 0; i < 2000; i++) traces.add(read([]).traceId)
    expect(traces.size).toBe(2000)
  })
})

describe('traceparent sent upstream', () => {
  it('is version 00 with only the sampled flag of the decision', () => {
    expect(traceparentValue(TRACE, 'abcdefabcdefabcd', 1)).toBe(`00-${TRACE}-abcdefabcdefabcd-01`)
    expect(traceparentValue(TRACE, 'abcdefabcdefabcd', 0)).toBe(`00-${TRACE}-abcdefabcdefabcd-00`)
  })
})

describe('tracestate (W3C §3.3)', () => {
  it('is dropped when the trace restarts, whatever it holds', () => {
    expect(read([['tracestate', 'foo=1']]).tracestate).toBeNull()
    expect(read([['traceparent', 'ff-bad'], ['tracestate', 'foo=1']]).tracestate).toBeNull()
  })

  it('travels on with a continued trace, several headers combined in order', () => {
    expect(tracestateOf('foo=1,bar=2')).toBe('foo=1,bar=2')
    expect(tracestateOf('foo=1,bar=2', 'rojo=1,congo=2', 'baz=3')).toBe('foo=1,bar=2,rojo=1,congo=2,baz=3')
  })

  it('reads the header name in any case and ignores look-alike names', () => {
    for (const name of ['TraceState', 'TrAcEsTaTe', 'TRACESTATE']) {
      expect(read([['traceparent', VALID], [name, 'foo=1']]).tracestate).toBe('foo=1')
    }
    for (const name of ['trace-state', 'trace.state']) expect(read([['traceparent', VALID], [name, 'foo=1']]).tracestate).toBeNull()
  })

  it.each([
    ['an empty header', ['']],
    ['an empty header after a member', ['foo=1', '']],
    ['an empty header before a member', ['', 'foo=1']],
    ['OWS around the commas', ['foo=1 \t , \t bar=2, \t baz=3']],
    ['tabs and spaces around the commas', ['foo=1\t \t,\t \tbar=2,\t \tbaz=3']],
    ['a leading space', [' foo=1']],
    ['a trailing tab', ['foo=1\t']],
    ['duplicated keys (kept as they are)', ['foo=1,foo=2']],
    ['duplicated keys across headers', ['foo=1', 'foo=1']],
    ['every allowed key character', ['abcdefghijklmnopqrstuvwxyz0123456789_-*/=1']],
    ['a key with a vendor part', ['abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=1']],
    ['at signs anywhere after the first character', ['foo@=1,bar=2', 'foo@@bar=1', 'foo@bar@baz=1']],
    ['every allowed value character', [`foo=${allowedValue()}`]],
    ['a key of 256 characters', ['foo=1', `${'z'.repeat(256)}=1`]],
    ['a value of 256 characters', [`foo=${'v'.repeat(256)}`]],
    ['a value starting with spaces', ['foo=  1']],
    [`${TRACESTATE_MAX_MEMBERS} members`, [members(1, 10), members(11, 20), members(21, 30), members(31, 32)]],
  ])('keeps %s', (_what, values) => {
    expect(tracestateOf(...values)).toBe(values.join(','))
  })

  it.each([
    ['a space inside the key', ['foo =1']],
    ['an upper-case key', ['FOO=1']],
    ['a dot in the key', ['foo.bar=1']],
    ['a key starting with an at sign', ['@foo=1,bar=2']],
    ['a key of 257 characters', ['foo=1', `${'z'.repeat(257)}=1`]],
    ['an equals sign in the value', ['foo=bar=baz']],
    ['an empty value', ['foo=,bar=3']],
    ['a value of 257 characters', [`foo=${'v'.repeat(257)}`]],
    ['a tab inside the value', ['foo=a\tb']],
    ['a member without a value', ['foo']],
    ['a member without a key', ['=1']],
    ['non-ASCII in the value', ['foo=\u00e9']],
    [`${TRACESTATE_MAX_MEMBERS + 1} members`, [members(1, 10), members(11, 20), members(21, 30), members(31, 33)]],
  ])('drops the whole header for %s', (_what, values) => {
    expect(tracestateOf(...values)).toBeNull()
  })
})

describe('the sampling decision', () => {
  it("follows the caller's flag when parentBased, whatever the ratio", () => {
    expect(decideSampled(1, true, 0)).toBe(1)
    expect(decideSampled(0, true, 1)).toBe(0)
  })

  it('uses the ratio for a trace that starts here, and for every trace when parentBased is off', () => {
    expect(decideSampled(-1, true, 1)).toBe(1)
    expect(decideSampled(-1, true, 0)).toBe(0)
    expect(decideSampled(1, false, 0)).toBe(0)
    expect(decideSampled(0, false, 1)).toBe(1)
  })

  it('samples about the given share of requests', () => {
    let sampled = 0
    const n = 20_000
    for (let i = 0; i < n; i++) sampled += decideSampled(-1, true, 0.25)
    // Binomial(20000, 0.25): sd ~61, so +-0.02 (400) is over 6 sd.
    expect(sampled / n).toBeGreaterThan(0.23)
    expect(sampled / n).toBeLessThan(0.27)
  })
})

function members(from: number, to: number): string {
  const out: string[] = []
  for (let i = from; i <= to; i++) out.push(`bar${String(i).padStart(2, '0')}=${String(i).padStart(2, '0')}`)
  return out.join(',')
}

/** W3C value characters: 0x20-0x7E except ',' and '=', ending in a non-space. */
function allowedValue(): string {
  let s = ''
  for (let c = 0x20; c <= 0x7e; c++) if (c !== 0x2c && c !== 0x3d) s += String.fromCharCode(c)
  return s
}
